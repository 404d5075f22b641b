"""Devices: which device a ``device=`` setting resolves to, where a loaded model and its
predictions live. A GPU machine is simulated by patching torch.cuda's checks; the ``meta``
device stands in for "not the CPU" where tensors must really move."""

from __future__ import annotations

import pytest
import torch

from segnet.device import resolve_device
from segnet.predict.predictor import Predictor
from segnet.runtime import checkpoint as checkpoint_module
from segnet.runtime.checkpoint import load_model
from segnet.runtime.eager import PixelFCN


@pytest.fixture
def gpus(monkeypatch):
    """``gpus(n)``: make this process believe it has ``n`` CUDA GPUs (0: none)."""

    def simulate(count: int) -> None:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: count > 0)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: count)

    return simulate


@pytest.mark.parametrize(
    ("count", "name", "expected"),
    [
        (0, "auto", "cpu"),
        (2, "auto", "cuda"),
        (0, "cpu", "cpu"),
        (2, "cpu", "cpu"),
        (1, "cuda", "cuda"),
        (2, "cuda:1", "cuda:1"),
        (2, torch.device("cuda", 0), "cuda:0"),
    ],
)
def test_resolve_device_picks_what_was_asked_for_if_the_machine_has_it(gpus, count, name, expected):
    gpus(count)
    assert resolve_device(name) == torch.device(expected)


@pytest.mark.parametrize(
    ("count", "name", "message"),
    [
        (0, "cuda", r"device='cuda': this machine has no CUDA GPU; use one of: auto, cpu$"),
        (0, "cuda:0", "this machine has no CUDA GPU"),
        (
            2,
            "cuda:7",
            r"device='cuda:7': this machine has 2 CUDA GPU\(s\); use auto, cpu, cuda:0, ",
        ),
        (1, "gpu", r"device='gpu' is not a device; use one of: auto, cpu, cuda:0 \(cuda means"),
        (0, "", "is not a device"),
    ],
)
def test_resolve_device_names_the_setting_and_what_the_machine_has(gpus, count, name, message):
    gpus(count)
    with pytest.raises(ValueError, match=message):
        resolve_device(name)


def test_load_model_puts_every_parameter_and_buffer_on_the_requested_device(
    checkpoint, monkeypatch
):
    asked = []

    def to_meta(name):  # the device check passes; "meta" plays the GPU
        asked.append(name)
        return torch.device("meta")

    monkeypatch.setattr(checkpoint_module, "resolve_device", to_meta)
    model = load_model(checkpoint, "cuda:1")[0]
    assert asked == ["cuda:1"]
    tensors = list(model.parameters()) + list(model.buffers())
    assert tensors and {t.device.type for t in tensors} == {"meta"}
    assert not model.training


def test_load_model_checks_the_device_before_reading_the_checkpoint(gpus, tmp_path):
    gpus(0)
    with pytest.raises(ValueError, match="no CUDA GPU"):
        load_model(tmp_path / "missing.ckpt", "cuda")


@pytest.fixture(scope="module")
def meta_model(checkpoint):
    model = load_model(checkpoint, "cpu")[0]
    return model.to("meta")


@pytest.mark.parametrize("window", [None, 16])
def test_predictions_live_on_the_models_device(meta_model, window):
    """uint8 CPU images in (as infer decodes them), outputs on the model's device, windows
    included (their blend weights are made where the scores are)."""
    predictor = Predictor(PixelFCN(meta_model).to("meta"), window=window, max_pixels=0)
    images = torch.zeros(1, 3, 40, 24, dtype=torch.uint8)
    probs = predictor.probabilities(images)
    labels = predictor.predict(images)
    assert probs.device.type == "meta" and probs.shape == (1, meta_model.num_classes, 40, 24)
    assert labels.device.type == "meta" and labels.shape == (1, 40, 24)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("window", [None, 32])
def test_on_a_gpu_the_model_and_predictions_are_on_it_and_match_the_cpu(checkpoint, window):
    model = load_model(checkpoint, "cuda")[0]
    assert {p.device.type for p in model.parameters()} == {"cuda"}
    images = torch.randint(0, 256, (1, 3, 70, 50), dtype=torch.uint8)
    probs = Predictor(PixelFCN(model), window=window, max_pixels=0).probabilities(images)
    assert probs.device.type == "cuda"
    cpu_model = load_model(checkpoint, "cpu")[0]
    expected = Predictor(PixelFCN(cpu_model), window=window, max_pixels=0).probabilities(images)
    torch.testing.assert_close(probs.cpu(), expected, atol=1e-3, rtol=0)
