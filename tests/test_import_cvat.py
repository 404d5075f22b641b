"""segnet.data.importers.import_cvat: tiny exports in CVAT's "Segmentation mask 1.1" on-disk
format (datumaro's voc_segmentation writer: labelmap.txt with its header comment,
ImageSets/Segmentation/<subset>.txt, RGB SegmentationClass masks painted in the labelmap's
colours, SegmentationObject, JPEGImages) -> the folder layout, checked pixel by pixel."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from helpers import compose_config
from PIL import Image

from segnet.data.class_file import read_class_file
from segnet.data.classes import flat_palette
from segnet.data.folder_datamodule import FolderDataModule
from segnet.data.images import DataError
from segnet.data.importers import import_cvat
from segnet.tasks.cli import EXIT_PARTIAL
from segnet.tasks.import_data import import_command

NAMES = ["background", "cat", "traffic light"]
COLOURS = [(0, 0, 0), (250, 50, 83), (128, 64, 128)]
# As datumaro's write_label_map writes it: the header comment, then name:r,g,b:parts:actions.
LABELMAP = (
    "# label:color_rgb:parts:actions\n"
    "background:0,0,0::\n"
    "cat:250,50,83::\n"
    "traffic light:128,64,128::\n"
)
H, W = 6, 8


def scene(seed: int) -> np.ndarray:
    """(H, W) class indices with every class present."""
    labels = np.zeros((H, W), dtype=np.uint8)
    labels[1:4, 1 + seed % 3 : 5] = 1
    labels[4:, seed % 4 :] = 2
    return labels


def paint(labels: np.ndarray) -> np.ndarray:
    return np.asarray(COLOURS, dtype=np.uint8)[labels]


def write_export(root: Path, subsets: dict[str, list[str]]) -> dict[str, np.ndarray]:
    """A CVAT export of ``subsets`` (each item fully annotated, image + RGB mask); returns
    item id -> its class indices."""
    (root / "ImageSets" / "Segmentation").mkdir(parents=True)
    (root / "labelmap.txt").write_text(LABELMAP)
    expected = {}
    for subset, ids in subsets.items():
        (root / "ImageSets" / "Segmentation" / f"{subset}.txt").write_text(
            "".join(f"{i}\n" for i in ids)
        )
        for item_id in ids:
            labels = scene(len(expected))
            expected[item_id] = labels
            for folder in ("SegmentationClass", "SegmentationObject", "JPEGImages"):
                (root / folder / item_id).parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(paint(labels)).save(root / "SegmentationClass" / f"{item_id}.png")
            # Instance masks are not read: all one colour here, so reading them would show.
            Image.new("RGB", (W, H), (128, 0, 0)).save(
                root / "SegmentationObject" / f"{item_id}.png"
            )
            Image.new("RGB", (W, H), (90, 90, 90)).save(root / "JPEGImages" / f"{item_id}.jpg")
    return expected


def read_mask(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        assert image.mode == "P"
        assert image.getpalette()[: 3 * len(COLOURS)] == flat_palette(COLOURS)[: 3 * len(COLOURS)]
        return np.asarray(image)


@pytest.fixture
def subset_export(tmp_path: Path) -> tuple[Path, dict[str, np.ndarray]]:
    root = tmp_path / "cvat"
    expected = write_export(root, {"train": ["a", "frames/b", "c"], "val": ["d"]})
    # A P-mode mask (a re-saved export, or datumaro with another palette): its colours count,
    # not its indices, which are shuffled here on purpose.
    indices = np.array([2, 0, 1], dtype=np.uint8)[expected["c"]]
    shuffled = Image.fromarray(indices, mode="P")
    shuffled.putpalette([*COLOURS[1], *COLOURS[2], *COLOURS[0]])
    shuffled.save(root / "SegmentationClass" / "c.png")
    return root, expected


def test_masks_classes_and_splits_follow_the_labelmap(subset_export, tmp_path: Path):
    root, expected = subset_export
    out = tmp_path / "out"
    summary = import_cvat(root, out)

    assert summary.images == {"train": 3, "val": 1}
    assert summary.classes == NAMES
    assert summary.skipped == []
    assert read_class_file(out / "classes.txt") == (NAMES, COLOURS)
    for split, item_id in (("train", "a"), ("train", "frames/b"), ("train", "c"), ("val", "d")):
        mask = read_mask(out / "masks" / split / f"{item_id}.png")
        np.testing.assert_array_equal(mask, expected[item_id], err_msg=item_id)
    assert os.path.samefile(
        out / "images" / "train" / "frames" / "b.jpg", root / "JPEGImages/frames/b.jpg"
    )
    assert sorted(p.name for p in (out / "images" / "train").iterdir()) == [
        "a.jpg",
        "c.jpg",
        "frames",
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cvat", "out"]

    datamodule = FolderDataModule(str(out), num_workers=0)
    datamodule.setup("fit")
    assert datamodule.class_names == NAMES
    assert datamodule.class_colours == [list(c) for c in COLOURS]
    _, mask = datamodule.val_dataset[0]
    np.testing.assert_array_equal(mask.numpy(), expected["d"])


def test_the_default_subset_is_written_without_split_folders(tmp_path: Path):
    ids = [f"frame_{i:06d}" for i in range(12)]
    expected = write_export(tmp_path / "cvat", {"default": ids})
    out = tmp_path / "out"
    summary = import_cvat(tmp_path / "cvat", out)

    assert summary.images == {"default": 12}
    assert sorted(p.name for p in (out / "images").iterdir()) == [f"{i}.jpg" for i in ids]
    for item_id in ids:
        np.testing.assert_array_equal(
            read_mask(out / "masks" / f"{item_id}.png"), expected[item_id]
        )
    listing = FolderDataModule(str(out), val_fraction=0.3).listing()
    assert listing.hashed and not listing.problems
    assert sum(len(pairs) for pairs in listing.splits.values()) == 12
    assert all(listing.splits.values())


def test_items_that_cannot_be_imported_are_skipped_with_their_reason(tmp_path: Path):
    root = tmp_path / "cvat"
    write_export(root, {"default": ["good", "stray", "small", "unlabelled", "gone"]})
    stray = paint(scene(1))
    stray[0, :3] = (224, 224, 192)  # VOC's void colour: CVAT has no such label
    stray[5, 7] = (1, 2, 3)
    Image.fromarray(stray).save(root / "SegmentationClass" / "stray.png")
    Image.new("RGB", (W - 1, H), 0).save(root / "SegmentationClass" / "small.png")
    (root / "SegmentationClass" / "unlabelled.png").unlink()
    (root / "JPEGImages" / "gone.jpg").unlink()

    summary = import_cvat(root, tmp_path / "out")
    assert summary.images == {"default": 1}
    reasons = {item.path.name: item.reason for item in summary.skipped}
    assert reasons["stray.png"] == (
        "colours of no label in labelmap.txt: #010203 (1 px), #e0e0c0 (3 px)"
    )
    assert "is 8x6 but its mask" in reasons["small.png"] and "is 7x6" in reasons["small.png"]
    assert reasons["unlabelled.jpg"].startswith("no mask SegmentationClass/unlabelled.png")
    assert reasons["gone"] == "listed in ImageSets/Segmentation, no image in JPEGImages/"
    assert sorted(p.name for p in (tmp_path / "out" / "masks").iterdir()) == ["good.png"]


@pytest.mark.parametrize(
    "labelmap, message",
    [
        (
            "background:0,0,0::\ncat:0,0,0::\n",
            r"labelmap.txt:2: 'cat' repeats the colour of 'background'",
        ),
        ("background:0,0,0::\ncat:::\n", r"labelmap.txt:2: expected 'name:r,g,b::'"),
        ("background:0,0,0::\ncat:1,2,300::\n", r"labelmap.txt:2: expected"),
        ("# label:color_rgb:parts:actions\nbackground:0,0,0::\n", "1 labels"),
        (None, "labelmap.txt: missing; a CVAT Segmentation mask export has it"),
    ],
)
def test_a_bad_labelmap_is_one_clear_error_and_leaves_nothing(tmp_path: Path, labelmap, message):
    write_export(tmp_path / "cvat", {"default": ["a"]})
    if labelmap is None:
        (tmp_path / "cvat" / "labelmap.txt").unlink()
    else:
        (tmp_path / "cvat" / "labelmap.txt").write_text(labelmap)
    with pytest.raises(DataError, match=message):
        import_cvat(tmp_path / "cvat", tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cvat"]


def test_an_export_without_images_says_how_to_export_them(tmp_path: Path):
    write_export(tmp_path / "cvat", {"default": ["a"]})
    for image in (tmp_path / "cvat" / "JPEGImages").iterdir():
        image.unlink()
    with pytest.raises(DataError, match="'Save images' checked"):
        import_cvat(tmp_path / "cvat", tmp_path / "out")


def test_the_import_command_runs_format_cvat(subset_export, tmp_path: Path, capsys):
    root, expected = subset_export
    (root / "JPEGImages" / "a.jpg").unlink()
    cfg = compose_config(
        "import_data",
        ["format=cvat", f"input={root}", f"output={tmp_path / 'out'}", "progress=false"],
    )

    assert import_command(cfg) == EXIT_PARTIAL
    printed = capsys.readouterr().out
    assert "  train: 2 images" in printed and "  2 traffic light" in printed
    assert "no image in JPEGImages/" in printed
    np.testing.assert_array_equal(
        read_mask(tmp_path / "out" / "masks" / "val" / "d.png"), expected["d"]
    )
