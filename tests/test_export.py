"""scripts/export.py: a verified, self-contained .onnx that reproduces PyTorch at every size."""

from __future__ import annotations

import copy
import hashlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import REPO, compose_config
from omegaconf import DictConfig

import segnet.runtime.onnx_writer
import segnet.tasks.export
from segnet import Segmenter
from segnet.data.classes import voc_palette
from segnet.runtime.checkpoint import load_model
from segnet.runtime.eager import EagerBackend, PixelFCN
from segnet.runtime.onnx_writer import ATOL, ExportError, verification_images, verify_onnx
from segnet.runtime.onnxrt import OnnxBackend
from segnet.tasks.cli import guarded
from segnet.tasks.export import export_command


def config(checkpoint: Path, output: Path, *overrides: str) -> DictConfig:
    """The export config for ``checkpoint`` into ``output``, then ``overrides``."""
    return compose_config("export", [f"ckpt_path={checkpoint}", f"output={output}", *overrides])


def test_overwrite_true_replaces_an_existing_output(checkpoint, onnx_model, tmp_path, monkeypatch):
    """The output is replaced whole (export stubbed with the session's export: one per run)."""
    checked = {"max_abs_diff": 0.0, "label_mismatch": 0.0, "shapes": []}
    report = {"seconds": 0.0, "verification": checked}
    monkeypatch.setattr(
        segnet.tasks.export, "export_onnx", lambda *args: (onnx_model.read_bytes(), report)
    )
    output = tmp_path / "model.onnx"
    output.write_bytes(b"an older export")
    assert export_command(config(checkpoint, output, "overwrite=true")) == 0
    assert output.read_bytes() == onnx_model.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]


@pytest.mark.parametrize("shape", [(3, 45, 2), (2, 97, 131), (1, 1, 1), (1, 33, 257)])
def test_onnx_matches_pytorch_at_unseen_sizes(onnx_model, checkpoint, shape):
    """Sizes neither traced nor verified at export, 1 px to non-multiples of 32, batches > 1."""
    model, names, _ = load_model(checkpoint, "cpu")
    images = verification_images(*shape, seed=11)
    expected = EagerBackend(model, names)(images)
    got = OnnxBackend(onnx_model, threads=1)(images)
    assert got.shape == expected.shape == (shape[0], model.num_classes, *shape[1:])
    assert (got - expected).abs().max().item() <= ATOL
    assert torch.equal(got.argmax(1), expected.argmax(1))
    assert len(expected.argmax(1).unique()) > 1 or shape[1] * shape[2] < 100  # labels vary


def test_metadata_round_trip(onnx_model, checkpoint):
    model, names, palette = load_model(checkpoint, "cpu")
    backend = OnnxBackend(onnx_model)
    assert backend.class_names == names and backend.num_classes == model.num_classes
    flat = voc_palette()
    assert backend.palette == [tuple(flat[3 * i : 3 * i + 3]) for i in range(len(names))]
    info = backend.info
    assert (info["backbone"], info["variant"]) == ("resnet18", "fcn8s")
    assert info["source_sha256"] == hashlib.sha256(checkpoint.read_bytes()).hexdigest()
    assert info["source_checkpoint"] == checkpoint.name
    assert info["mean"] == [0.485, 0.456, 0.406] and info["std"] == [0.229, 0.224, 0.225]
    assert "uint8 RGB" in info["input_convention"]
    assert (
        info["export"]["atol"] == ATOL
        and info["export"]["opset"] == segnet.runtime.onnx_writer.OPSET
    )
    seg = Segmenter.from_onnx(onnx_model)
    assert seg.class_names == names and seg.palette == backend.palette


def test_segmenter_on_onnx_predicts_as_on_the_checkpoint(onnx_model, checkpoint):
    image = verification_images(1, 75, 53, seed=3)[0].permute(1, 2, 0).numpy()
    onnx_labels = Segmenter.from_onnx(onnx_model, threads=1).predict(image)
    torch_labels = Segmenter.from_checkpoint(checkpoint, device="cpu").predict(image)
    assert onnx_labels.shape == (75, 53) and np.array_equal(onnx_labels, torch_labels)


def test_export_refuses_a_graph_that_does_not_reproduce_pytorch(checkpoint, tmp_path, monkeypatch):
    """A graph 0.01 off on one class (as a wrong mean/std or frozen pad would be): no file."""
    trace = segnet.runtime.onnx_writer.trace_to_onnx

    def drifted(pixel_model, opset=segnet.runtime.onnx_writer.OPSET):
        wrong = copy.deepcopy(pixel_model)
        with torch.no_grad():
            wrong.model.score32.bias[0] += 0.01
        return trace(wrong, opset)

    monkeypatch.setattr(segnet.runtime.onnx_writer, "trace_to_onnx", drifted)
    output = tmp_path / "model.onnx"
    with pytest.raises(ExportError, match=r"does not reproduce PyTorch .*nothing was written"):
        export_command(config(checkpoint, output))
    assert list(tmp_path.iterdir()) == []


class _ClassesReversed(torch.nn.Module):
    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images):
        return self.model(images).flip(1)


def test_verification_refuses_changed_labels_within_the_logit_tolerance(checkpoint):
    model = load_model(checkpoint, "cpu")[0]
    reference = PixelFCN(model).eval()
    proto = segnet.runtime.onnx_writer.trace_to_onnx(_ClassesReversed(reference).eval())
    data = segnet.runtime.onnx_writer.with_metadata(proto, {}).SerializeToString()
    with pytest.raises(ExportError, match=r"labels differ on [1-9]"):
        verify_onnx(data, reference, shapes=[(1, 40, 24)], atol=float("inf"))


class _WidthFrozen(torch.nn.Module):
    """The traced width (96) written into the graph, as a size-dependent branch would."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images):
        logits = self.model(images)
        return logits.reshape(logits.shape[0], logits.shape[1], logits.shape[2], 96)


def test_verification_turns_an_onnx_runtime_failure_into_a_refusal(checkpoint):
    model = load_model(checkpoint, "cpu")[0]
    reference = PixelFCN(model).eval()
    proto = segnet.runtime.onnx_writer.trace_to_onnx(_WidthFrozen(reference).eval())
    data = segnet.runtime.onnx_writer.with_metadata(proto, {}).SerializeToString()
    with pytest.raises(ExportError, match=r"ONNX Runtime cannot run .* at 1x3x40x24 \("):
        verify_onnx(data, reference, shapes=[(1, 40, 24)])


def test_existing_output_and_bad_checkpoint_exit_2_with_one_line(checkpoint, tmp_path, capsys):
    output = tmp_path / "model.onnx"
    output.write_bytes(b"keep me")
    assert guarded(export_command, config(checkpoint, output)) == 2
    assert output.read_bytes() == b"keep me"
    assert guarded(export_command, config(tmp_path / "missing.ckpt", tmp_path / "b.onnx")) == 2
    assert guarded(export_command, config(checkpoint, tmp_path / "model.pt")) == 2
    lines = capsys.readouterr().err.splitlines()
    assert lines == [
        f"error: output={str(output)!r} exists; overwrite=true replaces it",
        f"error: checkpoint {tmp_path / 'missing.ckpt'} does not exist",
        f"error: output={str(tmp_path / 'model.pt')!r} must end in .onnx",
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]


def test_export_script_refuses_an_existing_output(checkpoint, tmp_path):
    output = tmp_path / "model.onnx"
    output.write_bytes(b"keep me")
    command = [sys.executable, str(REPO / "scripts" / "export.py"), f"ckpt_path={checkpoint}"]
    done = subprocess.run([*command, f"output={output}"], capture_output=True, text=True)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines()[-1].endswith("exists; overwrite=true replaces it")
    assert output.read_bytes() == b"keep me"
