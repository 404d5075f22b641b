"""segnet.data.importers.import_roboflow: tiny exports in Roboflow's "Semantic Segmentation
Masks" on-disk format (train/ valid/ test/ folders, files renamed NAME_jpg.rf.<hash>.jpg with
NAME_jpg.rf.<hash>_mask.png, a ``_classes.csv`` per split with the header "Pixel Value, Class")
-> the folder layout, checked pixel by pixel."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from helpers import compose_config
from PIL import Image

from segnet.data.class_file import read_class_file
from segnet.data.classes import class_colours, flat_palette
from segnet.data.folder_datamodule import FolderDataModule
from segnet.data.images import DataError
from segnet.data.importers import import_roboflow
from segnet.tasks.cli import EXIT_PARTIAL
from segnet.tasks.import_data import import_command

# Sparse pixel values, listed out of order: classes are the values in ascending order.
CSV = "Pixel Value, Class\n0, background\n5, road sign\n1, car\n"
NAMES = ["background", "car", "road sign"]
CLASS_OF_VALUE = {0: 0, 1: 1, 5: 2}
H, W = 6, 8


def raw_scene(seed: int) -> np.ndarray:
    """(H, W) Roboflow pixel values 0, 1 and 5."""
    values = np.zeros((H, W), dtype=np.uint8)
    values[1:4, seed % 3 : 5] = 1
    values[4:, seed % 4 :] = 5
    return values


def expected_classes(values: np.ndarray) -> np.ndarray:
    lookup = np.zeros(256, dtype=np.uint8)
    for value, label in CLASS_OF_VALUE.items():
        lookup[value] = label
    return lookup[values]


def rf_name(original: str, seed: int) -> str:
    """Roboflow's renaming: img1.jpg -> img1_jpg.rf.<32 hex digits>."""
    return f"{original.replace('.', '_')}.rf.{seed:032x}"


def write_export(root: Path, splits: dict[str, list[str]]) -> dict[str, np.ndarray]:
    """An export of ``splits`` (Roboflow folder -> original file names); returns Roboflow's
    stem -> its raw mask values."""
    written = {}
    for folder, originals in splits.items():
        (root / folder).mkdir(parents=True)
        (root / folder / "_classes.csv").write_text(CSV)
        for original in originals:
            stem = rf_name(original, len(written))
            values = raw_scene(len(written))
            written[stem] = values
            Image.new("RGB", (W, H), (60, 90, 120)).save(root / folder / f"{stem}.jpg")
            Image.fromarray(values, mode="L").save(root / folder / f"{stem}_mask.png")
    (root / "README.roboflow.txt").write_text("exported from roboflow.com\n")
    return written


def read_mask(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        assert image.mode == "P"
        assert image.getpalette() == flat_palette(class_colours(len(NAMES)))
        return np.asarray(image)


@pytest.fixture
def export(tmp_path: Path) -> tuple[Path, dict[str, np.ndarray]]:
    root = tmp_path / "roboflow"
    written = write_export(
        root,
        {"train": ["img1.jpg", "img2.jpg", "img3.png"], "valid": ["v1.jpg"], "test": ["t.jpg"]},
    )
    return root, written


def test_masks_classes_and_splits(export, tmp_path: Path):
    root, written = export
    out = tmp_path / "out"
    summary = import_roboflow(root, out)

    assert summary.images == {"test": 1, "train": 3, "val": 1}
    assert summary.classes == NAMES
    assert summary.skipped == []
    assert read_class_file(out / "classes.txt") == (NAMES, class_colours(len(NAMES)))
    for stem, values in written.items():
        split = next(
            s for s in ("train", "val", "test") if (out / "masks" / s / f"{stem}.png").exists()
        )
        mask = read_mask(out / "masks" / split / f"{stem}.png")
        np.testing.assert_array_equal(mask, expected_classes(values), err_msg=stem)
        assert 2 in mask and 1 in mask
    val_stem = rf_name("v1.jpg", 3)
    assert os.path.samefile(
        out / "images" / "val" / f"{val_stem}.jpg", root / "valid" / f"{val_stem}.jpg"
    )
    assert sorted(p.name for p in (out / "images").iterdir()) == ["test", "train", "val"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "roboflow"]

    datamodule = FolderDataModule(str(out), num_workers=0)
    datamodule.setup("fit")
    assert datamodule.class_names == NAMES
    _, mask = datamodule.val_dataset[0]
    np.testing.assert_array_equal(mask.numpy(), expected_classes(written[val_stem]))


def test_a_root_classes_csv_serves_a_split_without_its_own(export, tmp_path: Path):
    root, _ = export
    (root / "test" / "_classes.csv").rename(root / "_classes.csv")
    assert import_roboflow(root, tmp_path / "out").images["test"] == 1


def test_items_that_cannot_be_imported_are_skipped_with_their_reason(export, tmp_path: Path):
    root, written = export
    stems = list(written)
    stray = raw_scene(0)
    stray[0, :2] = 7
    stray[5, 7] = 255
    Image.fromarray(stray, mode="L").save(root / "train" / f"{stems[0]}_mask.png")
    Image.new("L", (W, H + 1)).save(root / "train" / f"{stems[1]}_mask.png")
    Image.new("RGB", (W, H)).save(root / "train" / "lonely.jpg")
    Image.new("L", (W, H)).save(root / "train" / "orphan_mask.png")
    Image.new("RGB", (W, H), (255, 0, 0)).save(root / "valid" / f"{stems[3]}_mask.png")

    summary = import_roboflow(root, tmp_path / "out")
    assert summary.images == {"test": 1, "train": 1, "val": 0}
    reasons = {item.path.name: item.reason for item in summary.skipped}
    assert reasons[f"{stems[0]}_mask.png"] == (
        "pixel values _classes.csv does not list: 7 (2 px), 255 (1 px)"
    )
    assert "is 8x6 but its mask" in reasons[f"{stems[1]}_mask.png"]
    assert reasons["lonely.jpg"] == "no mask lonely_mask.png"
    assert reasons["orphan_mask.png"] == "a mask without image orphan.*"
    assert reasons[f"{stems[3]}_mask.png"].startswith("a colour mask")
    assert len(summary.skipped) == 5


@pytest.mark.parametrize(
    "csv_text, message",
    [
        ("Pixel Value,Class\n0,background\n1,car\n5,road sign\n", None),  # no spaces: the same
        ("Pixel Value, Class\n0, background\n1, car\n", "its classes differ from those of"),
        ("Value, Name\n0, background\n1, car\n", "expected the header 'Pixel Value, Class'"),
        ("Pixel Value, Class\n0, background\n0, car\n", r"_classes.csv:3: pixel value 0"),
        ("Pixel Value, Class\n0, background\n300, car\n", r"_classes.csv:3: expected"),
    ],
)
def test_every_split_csv_must_agree(export, tmp_path: Path, csv_text, message):
    root, _ = export
    (root / "valid" / "_classes.csv").write_text(csv_text)
    if message is None:
        assert import_roboflow(root, tmp_path / "out").classes == NAMES
        return
    with pytest.raises(DataError, match=message):
        import_roboflow(root, tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["roboflow"]


def test_no_split_folder_is_one_clear_error(tmp_path: Path):
    (tmp_path / "train").mkdir()
    with pytest.raises(DataError, match="no split folder"):
        import_roboflow(tmp_path, tmp_path.parent / f"{tmp_path.name}-out")


def test_the_import_command_runs_format_roboflow(export, tmp_path: Path, capsys):
    root, written = export
    Image.new("RGB", (W, H)).save(root / "train" / "lonely.jpg")
    cfg = compose_config(
        "import_data",
        ["format=roboflow", f"input={root}", f"output={tmp_path / 'out'}", "progress=false"],
    )
    assert import_command(cfg) == EXIT_PARTIAL
    printed = capsys.readouterr().out
    assert "  val: 1 images" in printed and "  2 road sign" in printed
    assert "lonely.jpg: no mask lonely_mask.png" in printed
    stem = rf_name("img2.jpg", 1)
    np.testing.assert_array_equal(
        read_mask(tmp_path / "out" / "masks" / "train" / f"{stem}.png"),
        expected_classes(written[stem]),
    )


HELD_OUT = Path(__file__).parent / "fixtures" / "roboflow-dhcn"


def test_a_real_roboflow_export_imports_with_its_exact_labels(tmp_path: Path):
    # Written by roboflow.com, not by us (tests/fixtures/roboflow-dhcn/README.md): its classes
    # are the csv's rows, each mask pixel the class of the value Roboflow wrote there.
    rows = (HELD_OUT / "train" / "_classes.csv").read_text().splitlines()[1:]
    names = [row.split(", ", 1)[1] for row in rows]
    assert [int(row.split(",")[0]) for row in rows] == list(range(11))  # value i is class i
    out = tmp_path / "out"
    summary = import_roboflow(HELD_OUT, out)

    assert summary.images == {"test": 1, "train": 2, "val": 1}
    assert summary.skipped == []
    assert read_class_file(out / "classes.txt")[0] == names == summary.classes
    for folder, split in (("train", "train"), ("valid", "val"), ("test", "test")):
        for raw_mask in sorted((HELD_OUT / folder).glob("*_mask.png")):
            stem = raw_mask.name.removesuffix("_mask.png")
            with (
                Image.open(raw_mask) as raw,
                Image.open(out / "masks" / split / f"{stem}.png") as mask,
            ):
                assert raw.mode == "L" and mask.mode == "P"
                np.testing.assert_array_equal(np.asarray(mask), np.asarray(raw), err_msg=stem)
                assert len(np.unique(np.asarray(mask))) == 9
            image = out / "images" / split / f"{stem}.jpg"
            assert image.read_bytes() == (HELD_OUT / folder / f"{stem}.jpg").read_bytes()

    datamodule = FolderDataModule(str(out), num_workers=0)
    datamodule.setup("fit")
    assert datamodule.class_names == names
