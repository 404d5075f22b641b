"""scripts/evaluate.py, its agreement with scripts/infer.py and with itself on 2 processes, and
checkpoint loading (every way a checkpoint can be bad)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from PIL import Image

from segnet.checkpoint import CheckpointError, load_model
from segnet.data.voc import VOC_CLASSES
from segnet.tasks.evaluate import confusion_counts, evaluate

REPO = Path(__file__).resolve().parents[1]
QUIET = ["hydra.output_subdir=null", "hydra/job_logging=none", "hydra/hydra_logging=none"]


def data_args(root) -> list[str]:
    # batch_size=1 as in the infer run it is compared with: batched convolutions may round
    # differently, and the comparison is exact.
    return ["data=voc", f"data.root={root}", "++data.num_workers=0", "split=val", "batch_size=1"]


def run_script(script: str, *args: str, launcher: tuple[str, ...] = ()):
    return subprocess.run(
        [sys.executable, *launcher, str(REPO / "scripts" / script), *args, *QUIET],
        capture_output=True,
        text=True,
        cwd=REPO,
    )


@pytest.fixture(scope="module")
def single_run(checkpoint, tiny_voc_root, tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("eval")
    done = run_script(
        "evaluate.py", f"ckpt_path={checkpoint}", *data_args(tiny_voc_root), f"hydra.run.dir={out}"
    )
    assert done.returncode == 0, done.stderr
    return {
        "dir": out,
        "stdout": done.stdout,
        "metrics": json.loads((out / "metrics.json").read_text()),
    }


def independent_confmat(pred_dir: Path, voc: Path, ids: list[str]) -> np.ndarray:
    confmat = np.zeros((21, 21), dtype=np.int64)
    for name in ids:
        pred = np.asarray(Image.open(pred_dir / f"{name}.png")).astype(np.int64)
        truth = np.asarray(Image.open(voc / "SegmentationClass" / f"{name}.png")).astype(np.int64)
        keep = truth != 255
        confmat += np.bincount(truth[keep] * 21 + pred[keep], minlength=441).reshape(21, 21)
    return confmat


def test_metrics_equal_a_confusion_matrix_of_the_inferred_pngs(
    single_run, checkpoint, tiny_voc_root, tmp_path
):
    voc = Path(tiny_voc_root) / "VOCdevkit" / "VOC2012"
    ids = (voc / "ImageSets" / "Segmentation" / "val.txt").read_text().split()
    pred_dir = tmp_path / "pred"
    done = run_script(
        "infer.py",
        f"ckpt_path={checkpoint}",
        f"input={voc / 'JPEGImages'}",
        f"output_dir={pred_dir}",
        "batch_size=1",
        "hydra.run.dir=.",
    )
    assert done.returncode == 0, done.stderr
    confmat = independent_confmat(pred_dir, voc, ids)

    metrics = single_run["metrics"]
    assert metrics["split"] == "val" and metrics["num_images"] == len(ids) == 8
    assert metrics["ckpt_path"] == str(checkpoint)
    assert np.array_equal(np.array(metrics["confusion_matrix"]), confmat)
    hits, truth, predicted = np.diag(confmat), confmat.sum(1), confmat.sum(0)
    union = truth + predicted - hits
    present = union > 0
    iou = hits / np.maximum(union, 1)
    assert metrics["pixel_acc"] == pytest.approx(hits.sum() / confmat.sum())
    assert metrics["mean_acc"] == pytest.approx(np.mean(hits[truth > 0] / truth[truth > 0]))
    assert metrics["miou"] == pytest.approx(iou[present].mean())
    assert metrics["fw_iou"] == pytest.approx((truth * iou).sum() / truth.sum())
    for i, name in enumerate(VOC_CLASSES):
        expected = iou[i] if present[i] else None
        assert metrics["per_class_iou"][name] == pytest.approx(expected)
    assert metrics["absent_classes"] == [n for i, n in enumerate(VOC_CLASSES) if not present[i]]

    report = (single_run["dir"] / "report.md").read_text()
    assert f"| mean IoU | {metrics['miou']:.4f} |" in report
    assert all(f"| {name} |" in report for name in VOC_CLASSES)
    with Image.open(single_run["dir"] / "confusion_matrix.png") as picture:
        assert picture.format == "PNG"
    assert f"mean IoU: {metrics['miou']:.4f}" in single_run["stdout"]
    assert "person" in single_run["stdout"] and "GT pixels" in single_run["stdout"]


def test_two_processes_give_exactly_the_single_process_confusion_matrix(
    single_run, checkpoint, tiny_voc_root, tmp_path
):
    launcher = ("-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2")
    done = run_script(
        "evaluate.py",
        f"ckpt_path={checkpoint}",
        *data_args(tiny_voc_root),
        f"output_dir={tmp_path}",
        "hydra.run.dir=.",
        launcher=launcher,
    )
    assert done.returncode == 0, done.stderr
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["confusion_matrix"] == single_run["metrics"]["confusion_matrix"]
    assert metrics["num_images"] == 8


def test_tta_and_sliding_windows_are_recorded_and_cover_every_pixel(
    single_run, checkpoint, tiny_voc_root, tmp_path
):
    overrides = [f"ckpt_path={checkpoint}", *data_args(tiny_voc_root), f"output_dir={tmp_path}"]
    # Cheap settings (TTA and windows multiply the forward passes): half-scale windows.
    overrides += ["tta.flip=true", "tta.scales=[0.5]", "window=160", "overlap=0.1"]
    with initialize_config_dir(config_dir=str(REPO / "configs"), version_base="1.3"):
        metrics = evaluate(compose("eval", overrides))
    assert metrics["settings"]["tta"] == {"flip": True, "scales": [0.5]}
    assert metrics["settings"]["window"] == 160
    labelled = np.array(single_run["metrics"]["confusion_matrix"]).sum()
    assert np.array(metrics["confusion_matrix"]).sum() == labelled  # same pixels, other votes
    assert 0 <= metrics["miou"] <= 1


def test_confusion_counts_skip_ignored_pixels():
    target = torch.tensor([[0, 1, 255], [2, 2, 1]])
    pred = torch.tensor([[0, 2, 1], [2, 0, 1]])
    expected = torch.tensor([[1, 0, 0], [0, 1, 1], [1, 0, 1]])
    assert torch.equal(confusion_counts(pred, target, 3), expected)


def test_a_bad_checkpoint_is_one_clear_error(tiny_voc_root, tmp_path):
    path = tmp_path / "model.ckpt"
    path.write_text("not a checkpoint")
    done = run_script(
        "evaluate.py", f"ckpt_path={path}", *data_args(tiny_voc_root), "hydra.run.dir=."
    )
    assert done.returncode == 2
    assert done.stderr.strip() == f"error: checkpoint {path} is not a PyTorch checkpoint " + (
        "(not a zip archive: truncated, corrupt or another kind of file)"
    )


class Unsafe:
    def __reduce__(self):
        return (print, ("a checkpoint must never run code",))


def damage(kind: str, good: Path, path: Path) -> None:
    data = good.read_bytes()
    checkpoint = torch.load(good, weights_only=True)
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif kind == "flipped bytes":
        middle = len(data) // 2
        path.write_bytes(
            data[:middle]
            + bytes(b ^ 0xFF for b in data[middle : middle + 64])
            + data[middle + 64 :]
        )
    elif kind == "plain dict":
        torch.save({"weights": torch.zeros(3)}, path)
    elif kind == "other architecture":
        checkpoint["hyper_parameters"]["backbone"] = "resnet34"
        torch.save(checkpoint, path)
    elif kind == "unsafe pickle":
        checkpoint["callbacks"] = Unsafe()
        torch.save(checkpoint, path)


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("missing", "does not exist"),
        ("empty", "is an empty file"),
        ("truncated", "not a zip archive"),
        ("flipped bytes", "is corrupt"),
        ("plain dict", "is not a segnet checkpoint \\(hyper_parameters lack num_classes"),
        ("other architecture", "weights do not fit FCN\\(backbone='resnet34'"),
        ("unsafe pickle", "weights_only=True refuses.*Unsupported global"),
    ],
)
def test_load_model_names_the_file_and_the_problem(checkpoint, tmp_path, kind, message):
    path = tmp_path / f"{kind}.ckpt"
    damage(kind, checkpoint, path)
    with pytest.raises(CheckpointError, match=message) as error:
        load_model(path)
    assert str(path) in str(error.value)


def test_load_model_rebuilds_the_trained_network(checkpoint):
    model, names = load_model(checkpoint)
    assert not model.training and names == list(VOC_CLASSES)
    state = torch.load(checkpoint, weights_only=True)["state_dict"]
    assert torch.equal(model.score32.weight, state["model.score32.weight"])
