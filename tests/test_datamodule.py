"""VOCDataModule on generated VOC-format data, and the unpadded distributed eval sampler."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from omegaconf import OmegaConf
from torch.utils.data import DistributedSampler, SequentialSampler

from segnet.data.classes import IGNORE_INDEX, VOC_CLASSES
from segnet.data.datamodule import VOCDataModule, whole_image_collate
from segnet.data.demo import demo_dataset_ready
from segnet.data.images import DataError
from segnet.data.resumable import ResumableShuffle
from segnet.data.sampler import UnpaddedDistributedSampler, eval_sampler

REPO = Path(__file__).resolve().parents[1]


def small_module(root, **kwargs) -> VOCDataModule:
    options = {"crop_size": [48, 64], "batch_size": 2, "eval_batch_size": 3, "num_workers": 0}
    return VOCDataModule(str(root), **(options | kwargs))


def test_setup_gives_train_and_val_batches(tiny_voc_root):
    torch.manual_seed(0)
    dm = small_module(tiny_voc_root)
    dm.setup("fit")
    assert dm.num_classes == 21 and dm.class_names == list(VOC_CLASSES)

    images, masks = next(iter(dm.train_dataloader()))
    assert images.shape == (2, 3, 48, 64) and images.dtype == torch.float32
    assert masks.shape == (2, 48, 64) and masks.dtype == torch.int64
    assert set(masks.unique().tolist()) <= set(range(21)) | {IGNORE_INDEX}
    assert -3 < images.min() < images.max() < 3  # ImageNet-normalised

    # Validation: lists of whole images, each at its own size, nothing padded.
    images, masks = next(iter(dm.val_dataloader()))
    items = [dm.val_dataset[i] for i in range(3)]
    assert len({tuple(mask.shape) for _, mask in items}) == 3  # three different sizes
    assert len(images) == len(masks) == 3
    for image, mask, (expected_image, expected_mask) in zip(images, masks, items, strict=True):
        assert torch.equal(image, expected_image) and torch.equal(mask, expected_mask)


def test_loader_options(tiny_voc_root):
    dm = small_module(tiny_voc_root, num_workers=2)
    dm.setup("fit")
    train, val = dm.train_dataloader(), dm.val_dataloader()
    assert isinstance(train.sampler, ResumableShuffle) and train.drop_last
    assert len(train) == len(dm.train_dataset) // 2
    assert isinstance(val.sampler, SequentialSampler) and not val.drop_last
    assert val.collate_fn is whole_image_collate and val.batch_size == 3
    assert train.persistent_workers and val.persistent_workers
    assert train.pin_memory == val.pin_memory == torch.cuda.is_available()
    in_process = small_module(tiny_voc_root)
    in_process.setup("validate")
    assert not in_process.val_dataloader().persistent_workers  # not allowed without workers


def test_eval_dataloader_covers_any_split(tiny_voc_root):
    dm = small_module(tiny_voc_root)
    dm.setup("validate")
    assert dm.train_dataset is None
    assert dm.eval_dataloader("val").dataset is dm.val_dataset
    sizes = {s: len(dm.eval_dataloader(s).dataset) for s in ("train", "val", "trainval")}
    assert sizes["trainval"] == sizes["train"] + sizes["val"] > 0
    assert dm.eval_dataloader("train").collate_fn is whole_image_collate
    with pytest.raises(DataError, match="missing.txt"):
        dm.eval_dataloader("missing")


def test_custom_class_names(tiny_voc_root):
    names = list(VOC_CLASSES) + ["extra_a", "extra_b"]
    dm = small_module(tiny_voc_root, class_names=names)
    assert dm.num_classes == 23 and dm.class_names == names
    dm.setup("validate")
    assert dm.val_dataset.num_classes == 23
    # Too few classes for the labels on disk is an error naming the mask, not silent.
    dm = small_module(tiny_voc_root, class_names=["background", "thing"])
    dm.setup("validate")
    with pytest.raises(DataError, match=r"SegmentationClass.*\.png"):
        for i in range(len(dm.val_dataset)):
            dm.val_dataset[i]


def test_demo_dataset_is_generated_once(tmp_path, caplog):
    root = tmp_path / "demo"
    dm = small_module(root, demo=True, demo_num_train=3, demo_num_val=2, demo_seed=5)
    with caplog.at_level(logging.INFO, logger="segnet.data.datamodule"):
        dm.prepare_data()
    assert demo_dataset_ready(root, 3, 2, 5)
    assert f"into {root / 'VOCdevkit' / 'VOC2012'}" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="segnet.data.datamodule"):
        dm.prepare_data()
    assert "generating" not in caplog.text
    dm.setup("fit")
    assert (len(dm.train_dataset), len(dm.val_dataset)) == (3, 2)
    images, masks = next(iter(dm.train_dataloader()))
    assert images.shape == (2, 3, 48, 64) and masks.dtype == torch.int64


def test_missing_root_says_where_and_what_to_set(tmp_path):
    dm = small_module(tmp_path / "nowhere")
    dm.prepare_data()  # neither download nor demo: nothing to do
    with pytest.raises(DataError) as err:
        dm.setup("fit")
    message = str(err.value)
    assert str(tmp_path / "nowhere") in message and "VOCdevkit" in message
    assert "root" in message and "download=true" in message and "demo=true" in message


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"crop_size": [320]}, "crop_size"),
        ({"crop_size": [0, 480]}, "crop_size"),
        ({"scale_range": [2.0, 0.5]}, "scale_range"),
        ({"scale_range": [-1.0, 2.0]}, "scale_range"),
        ({"batch_size": 0}, "batch_size"),
        ({"eval_batch_size": 0}, "eval_batch_size"),
        ({"num_workers": -1}, "num_workers"),
        ({"year": "2013"}, "year"),
        ({"val_split": ""}, "val_split"),
        ({"class_names": ["background"]}, "class_names"),
        ({"class_names": ["a", "b", "a"]}, "distinct"),
        ({"demo": True, "download": True}, "demo"),
        ({"demo": True, "class_names": ["a", "b"]}, "demo"),
        ({"demo": True, "year": "2011"}, "VOC2012"),
        ({"trainaug": True, "train_split": "trainval"}, "trainaug"),
        ({"root": ""}, "root"),
    ],
)
def test_bad_arguments_raise_early(tmp_path, kwargs, message):
    root = kwargs.pop("root", tmp_path)
    with pytest.raises(ValueError, match=message):
        VOCDataModule(str(root), **kwargs)


def test_train_loader_refuses_a_set_smaller_than_the_batch(tiny_voc_root):
    dm = small_module(tiny_voc_root, batch_size=10_000)
    dm.setup("fit")
    with pytest.raises(ValueError, match="fewer than batch_size=10000"):
        dm.train_dataloader()


@pytest.mark.parametrize(("size", "replicas"), [(10, 3), (7, 7), (8, 2), (5, 4)])
def test_unpadded_sampler_sees_every_index_exactly_once(size, replicas):
    dataset = list(range(size))
    shards = [list(UnpaddedDistributedSampler(dataset, replicas, rank)) for rank in range(replicas)]
    assert sorted(i for shard in shards for i in shard) == dataset
    assert [len(UnpaddedDistributedSampler(dataset, replicas, r)) for r in range(replicas)] == [
        len(s) for s in shards
    ]
    assert max(map(len, shards)) - min(map(len, shards)) <= 1
    # torch's sampler pads with repeats whenever size % replicas != 0; ours never does.
    padded = sum(len(DistributedSampler(dataset, replicas, r)) for r in range(replicas))
    assert padded == size + (-size) % replicas


def test_unpadded_sampler_is_a_distributed_sampler_lightning_leaves_alone():
    sampler = UnpaddedDistributedSampler(list(range(4)), num_replicas=2, rank=1)
    assert isinstance(sampler, DistributedSampler)
    assert list(sampler) == [1, 3]
    with pytest.raises(ValueError, match="fewer than the 5 processes"):
        UnpaddedDistributedSampler(list(range(3)), num_replicas=5, rank=4)


def test_eval_loaders_shard_under_torch_distributed(tiny_voc_root, tmp_path):
    assert eval_sampler([1, 2]) is None
    dist.init_process_group(
        "gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1
    )
    try:
        dm = small_module(tiny_voc_root)
        dm.setup("validate")
        for loader in (dm.val_dataloader(), dm.eval_dataloader("train")):
            assert isinstance(loader.sampler, UnpaddedDistributedSampler)
            assert list(loader.sampler) == list(range(len(loader.dataset)))
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize(("cpus", "expected"), [(1, 1), (2, 2), (16, 4)])
def test_num_workers_default_follows_the_cpus_this_process_may_use(
    tiny_voc_root, monkeypatch, cpus, expected
):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(cpus)), raising=False)
    assert VOCDataModule(tiny_voc_root).num_workers == expected
    assert VOCDataModule(tiny_voc_root, num_workers=None).num_workers == expected
    assert VOCDataModule(tiny_voc_root, num_workers=3).num_workers == 3  # as given
    assert VOCDataModule(tiny_voc_root, num_workers=0).num_workers == 0
    # Without affinity masks (macOS, Windows), the machine's CPU count.
    monkeypatch.delattr(os, "sched_getaffinity", raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: cpus)
    assert VOCDataModule(tiny_voc_root).num_workers == expected


def test_data_configs_leave_num_workers_to_the_machine():
    for name in ("voc", "demo"):
        assert OmegaConf.load(REPO / "configs" / "data" / f"{name}.yaml").num_workers is None


def test_trainaug_trains_on_sbd_and_voc_train_minus_voc_val(tmp_path):
    from test_voc import TRAIN, VAL, make_sbd, make_voc

    make_voc(tmp_path)
    sbd_only = ["2008_000100", "2010_000005"]
    make_sbd(tmp_path / "SBD", [sbd_only[0], TRAIN[1], VAL[0]], [sbd_only[1], VAL[1]], label=8)
    dm = small_module(tmp_path, trainaug=True, crop_size=[16, 16])
    dm.setup("fit")
    assert dm.train_dataset.ids == sorted([*TRAIN, *sbd_only])
    assert dm.val_dataset.ids == VAL
    images, masks = next(iter(dm.train_dataloader()))
    assert images.shape == (2, 3, 16, 16) and masks.shape == (2, 16, 16)
