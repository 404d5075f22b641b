"""Shared fixtures: a small generated dataset in Pascal VOC's layout."""

from __future__ import annotations

import pytest

from segnet.data.demo import generate_demo_dataset


@pytest.fixture(scope="session")
def tiny_voc_root(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Folder holding ``VOCdevkit/VOC2012`` with 16 train and 8 val demo images (seed 0)."""
    root = tmp_path_factory.mktemp("tiny_voc")
    generate_demo_dataset(root, num_train=16, num_val=8, seed=0)
    return str(root)
