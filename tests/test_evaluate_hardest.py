"""scripts/evaluate.py's per-image scores and hardest images: each image's mIoU equals the one
computed with numpy from scripts/infer.py's mask of it, report.md shows the K lowest side by
side (checked by their pixels) and links only files that exist, on one process or two."""

from __future__ import annotations

import contextlib
import io
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from helpers import compose_config, eval_args, infer_config
from PIL import Image

from segnet.data.classes import VOC_CLASSES, flat_palette
from segnet.tasks.cli import guarded
from segnet.tasks.evaluate import evaluate, evaluate_command
from segnet.tasks.infer import infer
from segnet.visualize import panel_columns

NUM = len(VOC_CLASSES)
HARDEST = 3
LINK = re.compile(r"!\[[^\]]*\]\(([^)]+)\)")


def evaluated(checkpoint, root, out, *extra: str) -> dict:
    with contextlib.redirect_stdout(io.StringIO()):
        return evaluate(compose_config("eval", eval_args(checkpoint, root, out, *extra)))


def numpy_miou(pred: np.ndarray, truth: np.ndarray) -> float:
    """An image's mIoU over the classes with a pixel in its truth or prediction, 255 ignored."""
    keep = truth != 255
    pred, truth = pred[keep].astype(np.int64), truth[keep].astype(np.int64)
    confmat = np.bincount(truth * NUM + pred, minlength=NUM**2).reshape(NUM, NUM)
    hits = np.diag(confmat)
    union = confmat.sum(0) + confmat.sum(1) - hits
    return float((hits[union > 0] / union[union > 0]).mean())


def pixels(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image)


@pytest.fixture(scope="module")
def voc(tiny_voc_root) -> Path:
    return Path(tiny_voc_root) / "VOCdevkit" / "VOC2012"


@pytest.fixture(scope="module")
def val_ids(voc) -> list[str]:
    return (voc / "ImageSets" / "Segmentation" / "val.txt").read_text().split()


@pytest.fixture(scope="module")
def run(checkpoint, tiny_voc_root, tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("eval")
    return out, evaluated(checkpoint, tiny_voc_root, out, f"hardest={HARDEST}")


@pytest.fixture(scope="module")
def inferred_mious(checkpoint, voc, val_ids, tmp_path_factory) -> dict[str, float]:
    """{id: mIoU} of each val image from scripts/infer.py's mask PNG, scored with numpy."""
    out = tmp_path_factory.mktemp("infer")
    with contextlib.redirect_stdout(io.StringIO()):
        infer(infer_config(checkpoint, voc / "JPEGImages", out, "batch_size=1"))
    return {
        name: numpy_miou(
            pixels(out / f"{name}.png"), pixels(voc / "SegmentationClass" / f"{name}.png")
        )
        for name in val_ids
    } | {"_dir": out}


def test_per_image_miou_equals_each_inferred_png_scored_with_numpy(
    run, inferred_mious, voc, val_ids
):
    _, metrics = run
    per_image = metrics["per_image"]
    assert [entry["id"] for entry in per_image] == val_ids
    assert [entry["image"] for entry in per_image] == [
        str(voc / "JPEGImages" / f"{i}.jpg") for i in val_ids
    ]
    expected = [inferred_mious[i] for i in val_ids]
    assert [entry["miou"] for entry in per_image] == pytest.approx(expected, rel=1e-9)
    assert len(set(np.round(expected, 6))) == len(expected)  # distinct: an order to get wrong
    assert json.loads((run[0] / "metrics.json").read_text())["per_image"] == per_image


def test_report_shows_the_lowest_images_side_by_side_and_links_only_files_that_exist(
    run, inferred_mious, voc
):
    out, metrics = run
    report = (out / "report.md").read_text()
    links = LINK.findall(report)
    assert links and all((out / link).is_file() for link in links)
    hardest_links = [link for link in links if link.startswith("hardest/")]
    assert sorted(p.name for p in (out / "hardest").iterdir()) == sorted(
        Path(link).name for link in hardest_links
    )
    order = sorted(
        range(len(metrics["per_image"])), key=lambda i: (metrics["per_image"][i]["miou"], i)
    )
    lowest = [metrics["per_image"][i] for i in order[:HARDEST]]
    assert len(hardest_links) == HARDEST
    section = report[report.index("## Hardest images") :]
    palette = np.array(flat_palette(), dtype=np.uint8).reshape(256, 3)
    for rank, (entry, link) in enumerate(zip(lowest, hardest_links, strict=True), start=1):
        name = entry["id"]
        assert link == f"hardest/{rank:02d}_{name}.png"
        assert f"| {rank} | `{name}.jpg` | {entry['miou']:.4f} | ![{name}]({link}) |" in section
        picture = pixels(out / link)
        image = pixels(voc / "JPEGImages" / f"{name}.jpg")
        width = image.shape[1]
        assert np.array_equal(picture[:, panel_columns(width, 0)], image)
        truth = pixels(voc / "SegmentationClass" / f"{name}.png")
        assert np.array_equal(picture[:, panel_columns(width, 1)], palette[truth])
        prediction = pixels(inferred_mious["_dir"] / f"{name}.png")
        assert np.array_equal(picture[:, panel_columns(width, 2)], palette[prediction])


def test_hardest_0_writes_the_scores_but_no_section_and_no_picture(
    checkpoint, tiny_voc_root, tmp_path, val_ids
):
    metrics = evaluated(checkpoint, tiny_voc_root, tmp_path, "hardest=0")
    assert [entry["id"] for entry in metrics["per_image"]] == val_ids
    assert "Hardest images" not in (tmp_path / "report.md").read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "confusion_matrix.png",
        "metrics.json",
        "report.md",
    ]


def test_a_rerun_with_fewer_hardest_images_leaves_only_its_own_pictures(
    run, checkpoint, tiny_voc_root, tmp_path
):
    out = tmp_path / "again"
    shutil.copytree(run[0], out)  # the HARDEST pictures of the first run
    evaluated(checkpoint, tiny_voc_root, out, "hardest=1")
    linked = [Path(link).name for link in LINK.findall((out / "report.md").read_text())]
    assert len(linked) == 2  # the confusion matrix and one hardest image
    assert [p.name for p in (out / "hardest").iterdir()] == [linked[1]]


@pytest.mark.parametrize("value", ["-1", "1.5", "true"])
def test_a_bad_hardest_value_is_one_line_before_any_prediction(
    checkpoint, tiny_voc_root, tmp_path, capsys, value
):
    status = guarded(
        evaluate_command,
        compose_config(
            "eval", eval_args(checkpoint, tiny_voc_root, tmp_path / "out", f"hardest={value}")
        ),
    )
    err = capsys.readouterr().err
    assert status == 2 and err.startswith("error: hardest=") and "whole number >= 0" in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "out").exists()
