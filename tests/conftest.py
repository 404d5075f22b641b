"""Shared test settings and fixtures: one thread per process, a small VOC-layout dataset."""

from __future__ import annotations

import os

# The tests' tensors are tiny and several processes (pytest, the entry points it starts, their
# DataLoader workers) share two cores: with more than one intra-op thread each, OpenMP threads
# spin against each other (one overfitting test measured 106 s with 2 threads, 9 s with 1).
# Set before torch is imported so subprocesses inherit it too.
os.environ["OMP_NUM_THREADS"] = "1"

import pytest  # noqa: E402
import torch  # noqa: E402

from segnet.data.demo import generate_demo_dataset  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_voc_root(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Folder holding ``VOCdevkit/VOC2012`` with 16 train and 8 val demo images (seed 0)."""
    root = tmp_path_factory.mktemp("tiny_voc")
    generate_demo_dataset(root, num_train=16, num_val=8, seed=0)
    return str(root)
