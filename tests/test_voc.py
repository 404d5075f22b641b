"""VOC datasets on tiny trees written in VOC's exact layout; SBD trainaug on a fake SBD tree."""

from __future__ import annotations

import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image
from scipy.io import savemat
from torchvision import tv_tensors

from segnet.data.classes import IGNORE_INDEX, voc_palette
from segnet.data.images import DataError
from segnet.data.sbd import VOCTrainAugDataset
from segnet.data.voc import VOCSegmentationDataset

H, W = 20, 30
TRAIN = ["2007_000032", "2007_000039", "2008_000002"]
VAL = ["2007_000033", "2009_000001"]


def _labels(index: int) -> np.ndarray:
    """A distinct mask per image: class (index % 20) + 1 in a block, a void border, background."""
    labels = np.zeros((H, W), np.uint8)
    labels[4:14, 6 + index : 20 + index] = index % 20 + 1
    labels[3, 5:21] = IGNORE_INDEX
    return labels


def _image(index: int) -> np.ndarray:
    y, x = np.mgrid[0:H, 0:W]
    return np.stack([x * 8, y * 12, np.full_like(x, 40 * index)], axis=-1).astype(np.uint8)


def _write_mask(path: Path, labels: np.ndarray) -> None:
    mask = Image.fromarray(labels, mode="P")
    mask.putpalette(voc_palette())
    mask.save(path)


def make_voc(root: Path, train=TRAIN, val=VAL) -> Path:
    """Write root/VOCdevkit/VOC2012 with JPEG images, palette masks and the three split files."""
    voc = root / "VOCdevkit" / "VOC2012"
    for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (voc / sub).mkdir(parents=True, exist_ok=True)
    for index, image_id in enumerate([*train, *val]):
        Image.fromarray(_image(index)).save(voc / "JPEGImages" / f"{image_id}.jpg", quality=95)
        _write_mask(voc / "SegmentationClass" / f"{image_id}.png", _labels(index))
    splits = {"train": train, "val": val, "trainval": [*train, *val]}
    for name, ids in splits.items():
        (voc / "ImageSets" / "Segmentation" / f"{name}.txt").write_text("\n".join(ids) + "\n")
    return voc


def test_torchvision_reads_the_tree(tmp_path):
    make_voc(tmp_path)
    tv = torchvision.datasets.VOCSegmentation(str(tmp_path), year="2012", image_set="val")
    image, mask = tv[1]
    assert len(tv) == 2 and image.size == (W, H) and mask.mode == "P"
    np.testing.assert_array_equal(np.asarray(mask), _labels(len(TRAIN) + 1))


def test_items_are_uint8_image_and_mask_with_the_stored_values(tmp_path):
    make_voc(tmp_path)
    ds = VOCSegmentationDataset(str(tmp_path), image_set="train")
    assert len(ds) == 3 and ds.ids == TRAIN
    for index in range(len(ds)):
        image, mask = ds[index]
        assert isinstance(image, tv_tensors.Image) and isinstance(mask, tv_tensors.Mask)
        assert image.dtype == torch.uint8 and image.shape == (3, H, W)
        assert mask.dtype == torch.uint8 and mask.shape == (H, W)
        np.testing.assert_array_equal(mask.numpy(), _labels(index))
        jpeg_error = (image.permute(1, 2, 0).int() - torch.from_numpy(_image(index)).int()).abs()
        assert jpeg_error.float().mean() < 3
    assert len(VOCSegmentationDataset(str(tmp_path), image_set="trainval")) == 5


def test_transforms_get_image_and_mask(tmp_path):
    make_voc(tmp_path)

    def flip(image, mask):
        return image.flip(-1), mask.flip(-1)

    _, mask = VOCSegmentationDataset(str(tmp_path), "val", transforms=flip)[0]
    np.testing.assert_array_equal(mask.numpy(), _labels(len(TRAIN))[:, ::-1])


def test_other_class_count(tmp_path):
    """Any VOC-layout dataset works: labels are checked against its own num_classes."""
    make_voc(tmp_path)
    with pytest.raises(DataError, match=r"outside 0\.\.2 and 255"):
        VOCSegmentationDataset(str(tmp_path), "train", num_classes=3)[2]  # label 3
    assert VOCSegmentationDataset(str(tmp_path), "train", num_classes=4)[2][1].max() == 255


def test_missing_root_and_devkit_say_where_voc_goes(tmp_path):
    with pytest.raises(DataError, match="nowhere does not exist.*nowhere/VOCdevkit/VOC2012 holds"):
        VOCSegmentationDataset(str(tmp_path / "nowhere"))
    with pytest.raises(DataError, match="VOCdevkit/VOC2012 does not exist.*JPEGImages"):
        VOCSegmentationDataset(str(tmp_path))


def test_missing_split_file(tmp_path):
    voc = make_voc(tmp_path)
    (voc / "ImageSets/Segmentation/val.txt").unlink()
    with pytest.raises(DataError, match=r"split file .*Segmentation/val\.txt does not exist"):
        VOCSegmentationDataset(str(tmp_path), "val")


def test_empty_split_file_is_an_error_for_training_and_evaluation(tmp_path):
    voc = make_voc(tmp_path)
    (voc / "ImageSets/Segmentation/val.txt").write_text("\n  \n")
    with pytest.raises(DataError, match=r"split file .*Segmentation/val\.txt lists no images"):
        VOCSegmentationDataset(str(tmp_path), "val")


def test_any_split_name_works(tmp_path):
    """torchvision's reader refuses splits other than train/val/trainval; ours reads any."""
    voc = make_voc(tmp_path)
    splits = voc / "ImageSets" / "Segmentation"
    (splits / "test.txt").write_text(f"{VAL[1]}\n\n  {VAL[0]}  \n")  # blank line, spaces
    (splits / "my_split.txt").write_text("\n".join(TRAIN[:2]))  # no final newline
    test = VOCSegmentationDataset(str(tmp_path), "test")
    assert test.ids == [VAL[1], VAL[0]]
    np.testing.assert_array_equal(test[1][1].numpy(), _labels(len(TRAIN)))
    assert VOCSegmentationDataset(str(tmp_path), "my_split").ids == TRAIN[:2]
    with pytest.raises(DataError, match=r"split file .*Segmentation/other\.txt does not exist"):
        VOCSegmentationDataset(str(tmp_path), "other")


def test_missing_image_and_mask_are_all_named(tmp_path):
    voc = make_voc(tmp_path)
    (voc / "JPEGImages" / f"{TRAIN[0]}.jpg").unlink()
    (voc / "SegmentationClass" / f"{TRAIN[2]}.png").unlink()
    with pytest.raises(DataError, match=r"2 files listed in .*train\.txt are missing") as info:
        VOCSegmentationDataset(str(tmp_path), "train")
    assert f"JPEGImages/{TRAIN[0]}.jpg" in str(info.value)
    assert f"SegmentationClass/{TRAIN[2]}.png" in str(info.value)


@pytest.mark.parametrize("case", ["size", "rgb", "labels", "truncated", "corrupt", "empty"])
def test_bad_item_raises_naming_the_file(tmp_path, case):
    voc = make_voc(tmp_path)
    image = voc / "JPEGImages" / f"{VAL[0]}.jpg"
    mask = voc / "SegmentationClass" / f"{VAL[0]}.png"
    if case == "size":
        _write_mask(mask, np.zeros((H + 1, W), np.uint8))
        expected = f"{image} is 30x20 but its mask {mask} is 30x21"
    elif case == "rgb":
        Image.open(mask).convert("RGB").save(mask)
        expected = f"{mask}: mask is a colour image (mode RGB)"
    elif case == "labels":
        _write_mask(mask, np.full((H, W), 99, np.uint8))
        expected = f"{mask}: labels outside 0..20 and 255 (ignore): [99]"
    elif case == "truncated":
        image.write_bytes(image.read_bytes()[:300])
        expected = f"{image}: cannot decode image"
    elif case == "corrupt":
        image.write_bytes(b"\xff\xd8\xff\xe0" + bytes(1000))
        expected = f"{image}: cannot decode image"
    else:
        image.write_bytes(b"")
        expected = f"{image}: file is empty"
    ds = VOCSegmentationDataset(str(tmp_path), "val")
    with pytest.raises(DataError) as info:
        ds[0]
    assert expected in str(info.value)
    assert ds[1][1].shape == (H, W)  # the other items still load


def _offline(monkeypatch):
    """No network: every URL torchvision opens fails as it does without a connection."""

    def refuse(*args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)


def test_download_offline_says_where_to_put_vocdevkit(tmp_path, monkeypatch):
    _offline(monkeypatch)
    with pytest.raises(DataError, match="could not download VOC2012 .*URLError") as info:
        VOCSegmentationDataset(str(tmp_path), download=True)
    assert f"so that {tmp_path}/VOCdevkit/VOC2012 holds JPEGImages/" in str(info.value)


def test_download_skipped_when_already_extracted(tmp_path, monkeypatch):
    make_voc(tmp_path)
    _offline(monkeypatch)
    assert len(VOCSegmentationDataset(str(tmp_path), "val", download=True)) == 2


def make_sbd(sbd: Path, train: list[str], val: list[str], label: int) -> None:
    """SBD's layout: img/*.jpg, cls/*.mat (GTcls.Segmentation), train.txt, val.txt."""
    (sbd / "img").mkdir(parents=True)
    (sbd / "cls").mkdir()
    for image_id in [*train, *val]:
        Image.fromarray(_image(7)).save(sbd / "img" / f"{image_id}.jpg")
        labels = np.zeros((H, W), np.uint8)
        labels[:5] = label
        savemat(sbd / "cls" / f"{image_id}.mat", {"GTcls": {"Segmentation": labels}})
    (sbd / "train.txt").write_text("\n".join(train) + "\n")
    (sbd / "val.txt").write_text("\n".join(val) + "\n")


def test_trainaug_is_sbd_plus_voc_train_minus_voc_val(tmp_path):
    make_voc(tmp_path)
    sbd_only = ["2008_000100", "2008_000200", "2010_000005"]
    # SBD's own splits contain VOC train and VOC val images, as the real ones do.
    sbd_train, sbd_val = [sbd_only[0], TRAIN[1], VAL[0]], [sbd_only[1], VAL[1], sbd_only[2]]
    make_sbd(tmp_path / "SBD", sbd_train, sbd_val, label=8)
    sbd = torchvision.datasets.SBDataset(str(tmp_path / "SBD"), "val", mode="segmentation")
    assert np.asarray(sbd[0][1])[0, 0] == 8  # torchvision reads the fake .mat files
    ds = VOCTrainAugDataset(str(tmp_path))
    assert ds.ids == sorted([*TRAIN, *sbd_only])
    assert not set(ds.ids) & set(VAL)
    for image_id in TRAIN:  # VOC's masks (with their void band) win over SBD's
        mask = ds[ds.ids.index(image_id)][1]
        np.testing.assert_array_equal(mask.numpy(), _labels(TRAIN.index(image_id)))
    image, mask = ds[ds.ids.index(sbd_only[2])]
    assert image.shape == (3, H, W) and mask.dtype == torch.uint8
    assert mask[:5].eq(8).all() and mask[5:].eq(0).all()


def test_trainaug_missing_sbd_says_where_it_goes(tmp_path, monkeypatch):
    make_voc(tmp_path)
    with pytest.raises(DataError, match=r"SBD/train\.txt does not exist; extract SBD .*img,cls"):
        VOCTrainAugDataset(str(tmp_path))
    _offline(monkeypatch)
    with pytest.raises(DataError, match=f"could not download SBD .*into {tmp_path}/elsewhere"):
        VOCTrainAugDataset(str(tmp_path), sbd_root=str(tmp_path / "elsewhere"), download=True)
