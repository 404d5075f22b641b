"""Shared test settings and fixtures: one thread per process, tiny VOC-layout data, a checkpoint."""

from __future__ import annotations

import os
import signal
import urllib.error
from pathlib import Path

# The tests' tensors are tiny and several processes (pytest, the entry points it starts, their
# DataLoader workers) share two cores: with more than one intra-op thread each, OpenMP threads
# spin against each other (one overfitting test measured 106 s with 2 threads, 9 s with 1).
# Set before torch is imported so subprocesses inherit it too.
os.environ["OMP_NUM_THREADS"] = "1"

import pytest  # noqa: E402
import torch  # noqa: E402
from helpers import quiet_trainer  # noqa: E402

from segnet.data.datamodule import VOCDataModule  # noqa: E402
from segnet.data.demo import generate_demo_dataset  # noqa: E402
from segnet.training.system import SegmentationSystem  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture(scope="session", autouse=True)
def private_cache(tmp_path_factory):
    """The mask scans of data=folder are cached under $SEGNET_CACHE: a fresh folder per test
    session (and the processes it starts), never the user's ~/.cache."""
    os.environ["SEGNET_CACHE"] = str(tmp_path_factory.mktemp("segnet_cache"))


@pytest.fixture(autouse=True)
def default_ctrl_c():
    """Each test starts with Python's own SIGINT handler. Code run in process (Lightning's
    interrupt handling, servers) can leave SIGINT ignored, and an ignored signal is inherited by
    every process a later test starts: its Ctrl-C then never arrives (a train.py meant to stop
    trained on until the test's timeout)."""
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(scope="session")
def tiny_voc_root(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Folder holding ``VOCdevkit/VOC2012`` with 16 train and 8 val demo images (seed 0)."""
    root = tmp_path_factory.mktemp("tiny_voc")
    generate_demo_dataset(root, num_train=16, num_val=8, seed=0)
    return str(root)


@pytest.fixture(scope="session")
def checkpoint(tiny_voc_root, tmp_path_factory) -> Path:
    """A real Lightning checkpoint of an FCN-8s trained for a few steps on the tiny dataset."""
    torch.manual_seed(0)
    data = VOCDataModule(str(tiny_voc_root), crop_size=[64, 64], batch_size=2, num_workers=0)
    trainer = quiet_trainer(max_steps=1, limit_val_batches=0, num_sanity_val_steps=0)
    trainer.fit(SegmentationSystem(backbone="resnet18", variant="fcn8s", lr=1e-3), data)
    path = tmp_path_factory.mktemp("ckpt") / "tiny.ckpt"
    trainer.save_checkpoint(path)
    return path


@pytest.fixture
def offline(monkeypatch, tmp_path) -> list[str]:
    """An empty torch hub cache and a download that fails the way it does without a network;
    returns the URLs a download was attempted from."""
    calls: list[str] = []

    def no_network(url, dst, *args, **kwargs):
        calls.append(url)
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)
    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    return calls


@pytest.fixture(scope="session")
def onnx_model(checkpoint, tmp_path_factory) -> Path:
    """The ``checkpoint`` exported to ONNX (verified against PyTorch by the export itself)."""
    from segnet.runtime.checkpoint import load_model
    from segnet.runtime.onnx_writer import export_onnx

    model, names, palette = load_model(checkpoint, "cpu")
    data, _ = export_onnx(model, names, palette, checkpoint)
    path = tmp_path_factory.mktemp("onnx") / "tiny.onnx"
    path.write_bytes(data)
    return path
