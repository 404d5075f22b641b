"""data=folder's mask check: each trap is one line naming the files and the fix, training is
refused until it is fixed, and a second check reads no mask again."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from segnet.data import mask_scan
from segnet.data.class_file import write_class_file
from segnet.data.folder_datamodule import FolderDataModule
from segnet.data.images import DataError

W, H = 6, 4


def write_image(path: Path, size: tuple[int, int] = (W, H), orientation: int = 1) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    exif = Image.Exif()
    if orientation != 1:
        exif[0x0112] = orientation
    Image.new("RGB", size, (90, 120, 30)).save(path, exif=exif)
    return path


def write_mask(path: Path, labels: np.ndarray) -> Path:
    """``labels`` (H, W) as a grayscale PNG, (H, W, 3) as an RGB PNG."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(labels, dtype=np.uint8)).save(path)
    return path


def pair(root: Path, split: str, name: str, labels: np.ndarray, **image) -> tuple[Path, Path]:
    image_path = write_image(root / f"images/{split}/{name}.png", **image)
    return image_path, write_mask(root / f"masks/{split}/{name}.png", labels)


def binary(foreground: int) -> np.ndarray:
    """(H, W): 16 pixels of ``foreground``, 8 of background."""
    labels = np.full((H, W), foreground, dtype=np.uint8)
    labels[:, :2] = 0
    return labels


def dataset(root: Path, names: list[str], train: dict, val: dict | None = None) -> Path:
    """Pairs ``{name: labels}`` in train (and val; default one mask of background and class 1)."""
    root.mkdir(parents=True, exist_ok=True)
    write_class_file(root / "classes.txt", names)
    for split, masks in (("train", train), ("val", val or {"v": binary(1)})):
        for name, labels in masks.items():
            pair(root, split, name, labels)
    return root


def problems(root: Path, **options) -> list[str]:
    """The lines of the DataError that setup("fit") raises (after the count line)."""
    with pytest.raises(DataError) as caught:
        FolderDataModule(str(root), num_workers=0, **options).setup("fit")
    lines = str(caught.value).splitlines()
    assert lines[0] == f"{len(lines) - 1} problems with the dataset:"
    return [line.removeprefix("  - ") for line in lines[1:]]


def test_binary_masks_stored_0_255_are_refused_with_the_label_map_that_fixes_them(tmp_path):
    root = dataset(tmp_path, ["background", "building"], {"a": binary(255), "b": binary(255)})
    fix = '"data.label_map={255:1}" (or data.label_map={255:255} if 255 does mean ignore)'
    assert problems(root) == [
        "split 'train': class 1 'building' never occurs, while 255 (ignore) covers 100.0% of the "
        "non-zero pixels: binary masks stored 0/255, whose 255 is the foreground and would be "
        f"ignored; set {fix}"
    ]
    fixed = FolderDataModule(str(root), label_map={"255": 1}, num_workers=0)
    fixed.setup("fit")
    assert fixed.train_dataset.untransformed()[0][1].numpy().tolist() == binary(1).tolist()
    assert fixed.check_report(["train"]).splits[0].histogram[[0, 1, 255]].tolist() == [16, 32, 0]
    # Saying that 255 means ignore is a choice, not a trap.
    FolderDataModule(str(root), label_map={255: 255}, num_workers=0).setup("fit")


def test_a_class_missing_while_255_covers_most_pixels_names_the_class(tmp_path):
    mostly_void = binary(255)
    mostly_void[0, 2:4] = 1  # 2 pixels of class 1 against 14 of 255
    root = dataset(tmp_path, ["background", "car", "road"], {"a": mostly_void})
    assert problems(root) == [
        "split 'train': class 2 'road' never occurs, while 255 (ignore) covers 87.5% of the "
        "non-zero pixels: 255 probably marks a class, and would be ignored; set "
        '"data.label_map={255:2}" (or data.label_map={255:255} if 255 does mean ignore)'
    ]
    # 255 as a void border (a quarter of the non-zero pixels) is what it should be, even
    # where a class never occurs.
    border = binary(1)
    border[0, 2:6] = 255
    ok = dataset(tmp_path / "ok", ["background", "car", "road"], {"a": border})
    FolderDataModule(str(ok), num_workers=0).setup("fit")


def test_values_outside_the_classes_are_summed_up_with_pixels_files_and_the_map(tmp_path):
    seven = binary(1)
    seven[0, :3] = 7
    both = binary(1)
    both[1, :1] = 7
    both[2, :2] = 200
    root = dataset(tmp_path, ["bg", "car"], {"a": seven, "b": both, "c": binary(1)})
    assert problems(root) == [
        "split 'train': 2 masks hold mask values 7 (4 px in 2 files), 200 (2 px in 1 file) are "
        "not among the classes 0..1, 255 (ignore): masks/train/a.png, masks/train/b.png; map "
        'them with "data.label_map={7:CLASS,200:CLASS}" (CLASS: a class index, or 255 to '
        "ignore), or correct the masks"
    ]
    FolderDataModule(str(root), label_map={7: 1, 200: 255}, num_workers=0).setup("fit")


def test_rgb_masks_without_colours_say_which_colours_to_map(tmp_path):
    rgb = np.zeros((H, W, 3), np.uint8)
    rgb[:, 4:] = (128, 0, 0)
    grey = np.repeat(binary(255)[..., None], 3, axis=2)
    root = dataset(tmp_path, ["bg", "car"], {"a": rgb}, {"v": grey})
    assert problems(root) == [
        "split 'train': 1 masks are RGB colour images (masks/train/a.png), but no class has a "
        "colour; the colours found: #000000 (16 px), #800000 (8 px); give each class its colour "
        f"in {root}/classes.txt (line i: 'NAME #rrggbb'), or map the colours in a data config of "
        "your own (Hydra's command line cannot spell '#'): label_map: {'#000000': 0, "
        "'#800000': 1}",
        "split 'val': 1 masks are RGB colour images (masks/val/v.png), but no class has a "
        "colour; the colours found: #ffffff (16 px), #000000 (8 px); give each class its colour "
        f"in {root}/classes.txt (line i: 'NAME #rrggbb'), or map the colours in a data config of "
        "your own (Hydra's command line cannot spell '#'): label_map: {'#000000': 0, "
        "'#ffffff': 1}; every colour is a grey (r = g = b): these are probably grayscale masks "
        "saved as RGB, save them as single-channel (L) PNG",
    ]
    write_class_file(root / "classes.txt", ["bg", "car"], [(0, 0, 0), (128, 0, 0)])
    assert problems(root) == [
        "split 'val': 1 masks hold mask colours #ffffff (16 px in 1 file) are not among "
        "classes.txt's colours and data.label_map's colour keys: masks/val/v.png; give them a "
        "class in classes.txt or data.label_map, or correct the masks"
    ]


def test_swapped_sizes_name_exif_orientation(tmp_path):
    root = dataset(tmp_path, ["bg", "car"], {})
    image, mask = pair(root, "train", "turned", binary(1), size=(H, W))
    assert problems(root) == [
        f"image {image} is {H}x{W} but its mask {mask} is {W}x{H}: width and height are swapped, "
        "probably EXIF orientation: the image is stored rotated (its orientation tag lost, or "
        "the mask saved from a rotated view); rotate one of the two by 90 degrees so they match"
    ]


def test_an_exif_turned_image_must_have_an_upright_mask(tmp_path):
    root = dataset(tmp_path, ["bg", "car"], {})
    image, mask = pair(root, "train", "tagged", binary(1), orientation=6)
    assert problems(root) == [
        f"image {image} is stored {W}x{H} with EXIF orientation 6 (turned by 90 degrees: segnet "
        f"reads it upright, {H}x{W}, as viewers show it), but its mask {mask} is {W}x{H}: the "
        "mask was drawn on the stored, unturned pixels; remove the image's orientation tag "
        "without turning its pixels (exiftool -Orientation= IMAGE), or turn the mask as the tag "
        "says"
    ]
    write_mask(mask, binary(1).T)  # the mask of the picture as it is shown: it fits
    module = FolderDataModule(str(root), num_workers=0)
    module.setup("fit")
    image_tensor, mask_tensor = module.train_dataset.untransformed()[0]
    assert image_tensor.shape[-2:] == mask_tensor.shape == (W, H)


def test_other_size_mismatches_and_unreadable_files_are_named_one_line_each(tmp_path):
    root = dataset(tmp_path, ["bg", "car"], {})
    small_image, small_mask = pair(root, "train", "small", binary(1)[:3])
    _, truncated = pair(root, "train", "truncated", binary(1))
    truncated.write_bytes(truncated.read_bytes()[:40])
    garbage, _ = pair(root, "train", "garbage", binary(1))
    garbage.write_bytes(b"not an image")
    lines = problems(root)
    assert lines[0] == (
        f"{garbage}: cannot read image (UnidentifiedImageError: cannot identify image file "
        f"'{garbage}')"
    )
    assert lines[1].startswith(f"{truncated}: cannot decode image (")
    assert lines[2] == (
        f"image {small_image} is {W}x{H} but its mask {small_mask} is {W}x3 (width x height): a "
        "mask must cover its image pixel for pixel; save it at the image's size (resized with "
        "nearest, never interpolated)"
    )
    assert len(lines) == 3


def test_many_files_with_one_problem_are_capped_with_a_count(tmp_path):
    root = dataset(tmp_path, ["bg", "car"], {})
    for i in range(13):
        pair(root, "train", f"s{i:02d}", binary(1)[:3])
    lines = problems(root)
    assert len(lines) == 11 and lines[-1] == (
        "split 'train': 3 more images whose mask differs in size"
    )
    assert [line.split("/")[-1].split(".")[0] for line in lines[:10]] == [
        f"s{i:02d}" for i in range(10)
    ]


def test_a_jpeg_mask_is_named_in_the_line_of_its_unpaired_image(tmp_path):
    root = dataset(tmp_path, ["bg", "car"], {"ok": binary(1)})
    write_image(root / "images/train/lossy.png")
    Image.fromarray(binary(1)).save(root / "masks/train/lossy.jpg")
    lines = problems(root)
    assert lines[1] == (
        f"1 images in {root}/images/train have no mask NAME.png in {root}/masks/train: "
        "lossy.png; 1 of them have only a JPEG mask NAME.jpg, which is refused (lossy; save it "
        "as PNG): lossy.png"
    )


def test_a_second_check_reads_no_mask_and_a_changed_mask_is_read_again(tmp_path, monkeypatch):
    root = dataset(tmp_path / "data", ["bg", "car"], {"a": binary(1), "b": binary(1)})
    monkeypatch.setenv("SEGNET_CACHE", str(tmp_path / "cache"))
    opened: list[str] = []

    def counting(path):
        opened.append(Path(path).name)
        return read_raw_mask(path)

    read_raw_mask = mask_scan.read_raw_mask
    monkeypatch.setattr(mask_scan, "read_raw_mask", counting)
    FolderDataModule(str(root), num_workers=0).setup("fit")
    assert sorted(opened) == ["a.png", "b.png", "v.png"]
    assert not any((root / "masks").rglob("*.json")) and any((tmp_path / "cache").rglob("*.json"))
    opened.clear()
    # Another label map judges the same facts: nothing is read again.
    FolderDataModule(str(root), label_map={7: 1}, num_workers=0).setup("fit")
    assert opened == []
    mask = root / "masks/train/b.png"
    stat = mask.stat()
    write_mask(mask, binary(7))
    os.utime(mask, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    with pytest.raises(DataError, match=r"1 masks hold mask values 7 \(16 px in 1 file\)"):
        FolderDataModule(str(root), num_workers=0).setup("fit")
    assert opened == ["b.png"]
