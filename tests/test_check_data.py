"""check_dataset lists every problem of a tree at once; the script exits non-zero on them."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf
from PIL import Image

from segnet.data.check import check_dataset, class_names_for, format_report
from segnet.data.classes import voc_palette
from segnet.tasks.check_data import check_command
from segnet.tasks.cli import EXIT_USAGE, guarded

H, W = 20, 30
REPO = Path(__file__).resolve().parents[1]


def _write(voc: Path, image_id: str, labels: np.ndarray) -> None:
    Image.new("RGB", (W, H), (90, 120, 30)).save(voc / "JPEGImages" / f"{image_id}.jpg")
    mask = Image.fromarray(labels.astype(np.uint8), mode="P")
    mask.putpalette(voc_palette())
    mask.save(voc / "SegmentationClass" / f"{image_id}.png")


def _labels(label: int) -> np.ndarray:
    """10 pixels of void, 290 of ``label``, 300 of background."""
    labels = np.zeros((H, W), np.uint8)
    labels[:10] = label
    labels[0, :10] = 255
    return labels


def _make_tree(root: Path, splits: dict[str, list[str]], label: int = 15) -> Path:
    """A VOC tree whose every listed sample is good; returns root/VOCdevkit/VOC2012."""
    voc = root / "VOCdevkit" / "VOC2012"
    for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (voc / sub).mkdir(parents=True)
    for name, ids in splits.items():
        for image_id in ids:
            _write(voc, image_id, _labels(label))
        (voc / "ImageSets/Segmentation" / f"{name}.txt").write_text("\n".join(ids) + "\n")
    return voc


@pytest.fixture(scope="module")
def broken_root(tmp_path_factory) -> Path:
    """train: 2 good samples and 6 with one problem each; val: 1 good, one id also in train."""
    root = tmp_path_factory.mktemp("broken")
    train = ["good1", "good2", "noimage", "nomask", "rgbmask", "badlabels", "truncated", "size"]
    voc = _make_tree(root, {"train": train})
    _write(voc, "goodval", _labels(8))
    (voc / "JPEGImages/noimage.jpg").unlink()
    (voc / "SegmentationClass/nomask.png").unlink()
    Image.new("RGB", (W, H), (192, 128, 128)).save(voc / "SegmentationClass/rgbmask.png")
    bad = _labels(15)
    bad[5, 5:7] = [21, 200]
    _write(voc, "badlabels", bad)
    jpeg = voc / "JPEGImages/truncated.jpg"
    jpeg.write_bytes(jpeg.read_bytes()[:200])
    Image.new("RGB", (W + 2, H), 0).save(voc / "JPEGImages/size.jpg")
    splits = voc / "ImageSets/Segmentation"
    (splits / "train.txt").write_text("\n".join([*train, "good1"]) + "\n")
    (splits / "val.txt").write_text("goodval\ngood2\n")
    return root


def test_every_problem_is_listed(broken_root):
    report = check_dataset(broken_root, splits=["train", "val", "trainval"])
    train, val, trainval = report.splits
    assert not report.ok
    assert (train.num_images, val.num_images, trainval.num_images) == (9, 2, 0)
    assert len(train.problems) == 7 and len(val.problems) == 1 and len(trainval.problems) == 1
    text = "\n".join(report.problems)
    voc = broken_root / "VOCdevkit" / "VOC2012"
    for expected in [
        f"{voc}/JPEGImages/noimage.jpg: file does not exist",
        f"{voc}/SegmentationClass/nomask.png: file does not exist",
        f"{voc}/SegmentationClass/rgbmask.png: mask is a colour image (mode RGB)",
        f"{voc}/SegmentationClass/badlabels.png: labels outside 0..20 and 255 (ignore): [21, 200]",
        f"{voc}/JPEGImages/truncated.jpg: cannot decode image",
        f"image {voc}/JPEGImages/size.jpg is 32x20 but its mask",
        f"{voc}/ImageSets/Segmentation/train.txt: lists 'good1' more than once",
        f"{voc}/ImageSets/Segmentation/val.txt: 'good2' is also in split 'train'",
        f"split file {voc}/ImageSets/Segmentation/trainval.txt does not exist",
    ]:
        assert expected in text
    # Only the readable, size-consistent samples are counted: good1 and good2 in train.
    assert train.histogram[[0, 15, 255]].tolist() == [600, 580, 20]
    assert train.histogram.sum() == 2 * H * W
    assert val.histogram[[0, 8, 15, 255]].tolist() == [600, 290, 290, 20]


def test_clean_tree_and_missing_root(tmp_path):
    _make_tree(tmp_path / "clean", {"train": ["a", "b"], "val": ["c"], "trainval": ["a", "b", "c"]})
    clean = check_dataset(tmp_path / "clean", splits=["train", "val", "trainval"])
    assert clean.ok  # trainval is train + val by definition: sharing their ids is fine
    assert [split.num_images for split in clean.splits] == [2, 1, 3]
    assert clean.splits[2].histogram[15] == 3 * 290
    # Any split name: torchvision's reader would refuse "test".
    _make_tree(tmp_path / "custom", {"test": ["t1", "t2"]})
    custom = check_dataset(tmp_path / "custom", splits=["test"])
    assert custom.ok and custom.splits[0].num_images == 2
    report = check_dataset(tmp_path / "absent", splits=["train"])
    assert report.splits[0].num_images == 0 and len(report.problems) == 1
    assert report.problems[0].startswith(f"dataset root {tmp_path}/absent does not exist")


def test_format_report_shows_counts_and_histogram_by_name(broken_root):
    report = check_dataset(broken_root, splits=["train", "val"])
    text = format_report(report, class_names_for(21))
    assert text.startswith("8 problems found\n")
    assert re.search(r"\ntrain +9 +7\n", text)
    assert re.search(r"\n +15  person +580 \( 48\.3%\) +290 \( 24\.2%\)\n", text)
    assert re.search(r"\n +20  tvmonitor +0 \(  0\.0%\) +0 \(  0\.0%\)\n", text)
    assert re.search(r"\n +255  void +20 \(  1\.7%\) +20 \(  1\.7%\)$", text)


def test_class_names_for():
    assert class_names_for(21)[15] == "person"
    assert class_names_for(3) == ["class_0", "class_1", "class_2"]
    assert class_names_for(2, ["bg", "road"]) == ["bg", "road"]
    with pytest.raises(ValueError, match="3 class names given for 2 classes"):
        class_names_for(2, ["a", "b", "c"])


def test_script_lists_problems_and_exits_non_zero(broken_root, tmp_path):
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts/check_data.py"), f"root={broken_root}", "year=2012"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert result.returncode == 1, result.stderr
    assert result.stdout.startswith("8 problems found\n")
    assert "noimage.jpg: file does not exist" in result.stdout
    assert "person" in result.stdout and "void" in result.stdout
    assert list(tmp_path.iterdir()) == []  # a read-only check leaves no Hydra output folders


def _root_is_a_file(root: Path) -> str:
    root.write_text("not a folder")
    return f"dataset root {root} is a file, not a folder"


def _root_is_missing(root: Path) -> str:
    return f"dataset root {root} does not exist"


def _voc2012_is_a_file(root: Path) -> str:
    (root / "VOCdevkit").mkdir(parents=True)
    (root / "VOCdevkit" / "VOC2012").touch()
    return f"{root}/VOCdevkit/VOC2012 is a file, not a folder"


@pytest.mark.parametrize("make", [_root_is_a_file, _root_is_missing, _voc2012_is_a_file])
def test_command_without_a_dataset_says_why_in_one_line(tmp_path, capsys, make):
    root = tmp_path / "root"
    expected = make(root)
    cfg = {"root": str(root), "year": "2012", "splits": ["train"], "num_classes": 21}
    assert guarded(check_command, OmegaConf.create(cfg | {"class_names": None})) == EXIT_USAGE
    captured = capsys.readouterr()
    assert captured.out == ""  # no empty report: nothing was scanned
    assert captured.err.startswith(f"error: {expected}; ") and captured.err.count("\n") == 1


# --- data=folder ---------------------------------------------------------------------------

BUILDING = (255, 0, 0)


def _folder_dataset(root: Path, foreground: int) -> Path:
    """train: 3 pairs, val: 1; a 30x20 image of one colour, its mask a 15x10 box of
    ``foreground`` on background (classes.txt: background #000000, building #ff0000)."""
    for split, count in (("train", 3), ("val", 1)):
        for i in range(count):
            (root / f"images/{split}").mkdir(parents=True, exist_ok=True)
            (root / f"masks/{split}").mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (W, H), (90, 120, 30)).save(root / f"images/{split}/im{i}.png")
            labels = np.zeros((H, W), np.uint8)
            labels[5:15, 5:20] = foreground
            Image.fromarray(labels).save(root / f"masks/{split}/im{i}.png")
    (root / "classes.txt").write_text("background #000000\nbuilding #ff0000\n")
    return root


def _check_folder(tmp_path: Path, capsys, *overrides: str) -> tuple[int, str]:
    from helpers import compose_config

    cfg = compose_config("check_data", ["data=folder", *overrides])
    status = guarded(check_command, cfg)
    return status, capsys.readouterr().out


def test_folder_binary_trap_is_listed_exit_1_and_the_fix_passes_exit_0(tmp_path, capsys):
    root = _folder_dataset(tmp_path / "data", foreground=255)
    status, out = _check_folder(tmp_path, capsys, f"data.root={root}")
    assert status == 1 and out.startswith("2 problems found\n")
    assert (
        "  split 'train': class 1 'building' never occurs, while 255 (ignore) covers 100.0% of "
        "the non-zero pixels: binary masks stored 0/255, whose 255 is the foreground and would "
        'be ignored; set "data.label_map={255:1}"'
    ) in out
    assert re.search(r"\ntrain +3 +1\nval +1 +1\n", out)
    assert "split 'train': rare classes (< 0.5% of its labelled pixels): building absent" in out
    assert "set output_dir=DIR to draw preview.png" in out and not list(tmp_path.glob("*.png"))
    status, out = _check_folder(tmp_path, capsys, f"data.root={root}", "data.label_map={255:1}")
    assert status == 0 and out.startswith("0 problems found\n")
    assert re.search(r"\n +1  building +450 \( 25\.0%\) +150 \( 25\.0%\)\n", out)
    assert re.search(r"\n +1  building +25\.00% +25\.00%\n", out)
    assert "split 'val': no rare class (each >= 0.5%)" in out


def test_folder_rare_classes_are_named_with_their_share(tmp_path, capsys):
    root = _folder_dataset(tmp_path / "data", foreground=1)
    mask = np.zeros((H, W), np.uint8)
    mask[0, 0] = 1  # 1 of 600 labelled pixels: 0.17%
    Image.fromarray(mask).save(root / "masks/val/im0.png")
    status, out = _check_folder(tmp_path, capsys, f"data.root={root}", "splits=[val]")
    assert status == 0
    assert "split 'val': rare classes (< 0.5% of its labelled pixels): building 0.17%" in out


def test_folder_preview_draws_the_masks_in_the_datasets_colours(tmp_path, capsys):
    root = _folder_dataset(tmp_path / "data", foreground=1)
    status, out = _check_folder(
        tmp_path, capsys, f"data.root={root}", f"output_dir={tmp_path / 'out'}"
    )
    preview = tmp_path / "out" / "preview.png"
    assert status == 0 and f"{preview}: 4 images with their masks" in out  # 3 train, 1 val
    pixels = np.asarray(Image.open(preview).convert("RGB")).astype(int)
    image = np.array([90, 120, 30])
    first_row = pixels[:H, :W]
    box = np.zeros((H, W), bool)
    box[5:15, 5:20] = True
    assert (first_row[box] == np.rint(0.5 * image + 0.5 * np.array(BUILDING))).all()
    assert (first_row[~box] == np.rint(0.5 * image)).all()  # background is black
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["preview.png"]


def test_folder_script_and_a_command_without_a_dataset(tmp_path):
    root = _folder_dataset(tmp_path / "data", foreground=255)
    script = [sys.executable, str(REPO / "scripts/check_data.py")]
    result = subprocess.run(
        [*script, "data=folder", f"data.root={root}"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert result.returncode == 1, result.stderr
    assert '"data.label_map={255:1}"' in result.stdout
    nothing = subprocess.run(script, capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert nothing.returncode == EXIT_USAGE and nothing.stderr == (
        "error: no dataset: give root=DIR (the folder holding VOCdevkit/) or data=folder "
        "data.root=DIR\n"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]


def test_data_voc_checks_as_the_root_shortcut_does(broken_root, capsys):
    from helpers import compose_config

    cfg = compose_config("check_data", ["data=voc", f"data.root={broken_root}"])
    assert guarded(check_command, cfg) == 1
    assert capsys.readouterr().out.startswith("8 problems found\n")


def test_voc_preview_draws_the_palette_over_the_images(tmp_path, capsys):
    _make_tree(tmp_path / "voc", {"train": ["a", "b"], "val": ["c"]})
    cfg = {"root": str(tmp_path / "voc"), "year": "2012", "splits": None, "num_classes": 21}
    cfg |= {"class_names": None, "output_dir": str(tmp_path / "out"), "preview_per_split": 1}
    assert guarded(check_command, OmegaConf.create(cfg)) == 0
    preview = tmp_path / "out" / "preview.png"
    assert f"{preview}: 2 images with their masks" in capsys.readouterr().out  # a, c
    pixels = np.asarray(Image.open(preview).convert("RGB")).astype(int)
    # Row 1, a pixel of the person (label 15, VOC's (192, 128, 128)) over the JPEG's green:
    # half of each, within the JPEG's error.
    person = 0.5 * np.array([90, 120, 30]) + 0.5 * np.array(voc_palette()[45:48])
    assert np.abs(pixels[5, 20] - person).max() <= 3
    assert np.abs(pixels[15, 20] - 0.5 * np.array([90, 120, 30])).max() <= 3
