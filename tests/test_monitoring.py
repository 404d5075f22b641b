"""What a training run tells while it runs: per-class IoU at every validation
(``val/iou/<class name>`` in TensorBoard and csv/metrics.csv) and early stopping on val/miou
(docs/monitoring.md). Tiny in-process trainings on the session's 8-image demo val set."""

from __future__ import annotations

import contextlib
import csv
import io
from pathlib import Path

import pytest
import torch
from helpers import compose_config, compose_train, load_checkpoint, tensorboard_steps, tiny_training

from segnet.metrics import confusion_scores
from segnet.tasks.config import ConfigError, check_train_config
from segnet.tasks.evaluate import evaluate
from segnet.tasks.train import train
from segnet.training.system import SegmentationSystem


def csv_rows(run_dir: Path, column: str) -> list[dict[str, str]]:
    """The rows of csv/metrics.csv that hold ``column``, in file order."""
    with open(run_dir / "csv" / "metrics.csv", newline="") as f:
        return [row for row in csv.DictReader(f) if row.get(column)]


def run_quietly(root: str, run_dir: Path, *extra: str) -> str:
    """A tiny training into ``run_dir``; what it printed."""
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        train(compose_train(tiny_training(root, f"output_dir={run_dir}", *extra)))
    return printed.getvalue()


def test_every_validation_logs_each_class_iou_from_the_val_confusion_matrix(
    tiny_voc_root, tmp_path
):
    run_dir = tmp_path / "run"
    run_quietly(tiny_voc_root, run_dir)
    last = load_checkpoint(run_dir / "checkpoints" / "last.ckpt")
    names = last["hyper_parameters"]["class_names"]
    expected = confusion_scores(torch.tensor(last["val_metrics"]["confmat"]), names)
    rows = csv_rows(run_dir, "val/miou")
    assert len(rows) == 2  # one per epoch
    final = rows[-1]
    logged = {n: float(final[f"val/iou/{n}"]) for n in names if final.get(f"val/iou/{n}")}
    present = {n: iou for n, iou in expected["per_class_iou"].items() if iou is not None}
    assert logged == pytest.approx(present, rel=1e-6, abs=1e-7)
    # A class absent from truth and prediction has no IoU: no value, not a made-up 0.
    for name in expected["absent_classes"]:
        assert not final.get(f"val/iou/{name}")
    assert float(final["val/miou"]) == pytest.approx(sum(present.values()) / len(present))
    # scripts/evaluate.py on the same checkpoint and split scores each class the same.
    metrics = evaluate(
        compose_config(
            "eval",
            [
                f"ckpt_path={run_dir / 'checkpoints' / 'last.ckpt'}",
                "data=voc",
                f"data.root={tiny_voc_root}",
                "++data.num_workers=0",
                "split=val",
                f"output_dir={tmp_path / 'eval'}",
            ],
        )
    )
    evaluated = {n: iou for n, iou in metrics["per_class_iou"].items() if iou is not None}
    assert logged == pytest.approx(evaluated, rel=1e-6, abs=1e-7)
    some_class = next(iter(present))
    assert tensorboard_steps(run_dir, f"val/iou/{some_class}") == [int(r["step"]) for r in rows]


def test_early_stopping_stops_a_run_that_cannot_improve_and_keeps_the_best(tiny_voc_root, tmp_path):
    run_dir = tmp_path / "run"
    patience = 1
    printed = run_quietly(
        tiny_voc_root,
        run_dir,
        "optim.lr=1e-9",
        "trainer.max_epochs=6",
        f"callbacks.early_stopping.patience={patience}",
    )
    rows = csv_rows(run_dir, "val/miou")
    assert 2 <= len(rows) <= patience + 1 < 6
    scores = [float(r["val/miou"]) for r in rows]
    best = load_checkpoint(run_dir / "checkpoints" / "best.ckpt")["val_metrics"]
    assert best["miou"] == pytest.approx(max(scores), rel=1e-6)
    assert best["epoch"] == scores.index(max(scores))
    stops = [line for line in printed.splitlines() if line.startswith("early stopping")]
    assert stops == [
        f"early stopping at validation {len(rows)} (epoch {len(rows) - 1}, global step "
        f"{2 * len(rows)}): val/miou did not improve for 1 validation in a row; best val/miou "
        f"{max(scores):.4f} at epoch {best['epoch']} (checkpoints/best.ckpt)"
    ]


def test_without_a_patience_the_run_trains_every_epoch(tiny_voc_root, tmp_path):
    run_dir = tmp_path / "run"
    printed = run_quietly(tiny_voc_root, run_dir, "optim.lr=1e-9", "trainer.max_epochs=3")
    assert len(csv_rows(run_dir, "val/miou")) == 3
    assert "early stopping" not in printed


def test_a_class_absent_from_truth_and_prediction_gets_no_iou_scalar(monkeypatch):
    system = SegmentationSystem(num_classes=3, class_names=["sky", "road", "car"])
    target = torch.tensor([[0, 0, 1, 1]])
    system.val_confmat.update(torch.tensor([[0, 1, 1, 1]]), target)  # "car": nowhere
    logged: dict[str, float] = {}
    monkeypatch.setattr(system, "log", lambda name, value, **kw: logged.__setitem__(name, value))
    system._log_epoch_scores("val")
    ious = {name: value for name, value in logged.items() if name.startswith("val/iou/")}
    assert ious == pytest.approx({"val/iou/sky": 1 / 2, "val/iou/road": 2 / 3})
    assert logged["val/miou"] == pytest.approx((1 / 2 + 2 / 3) / 2)


@pytest.mark.parametrize("patience", ["0", "1.5"])
def test_a_bad_patience_is_one_config_line_before_training(patience, tiny_voc_root, tmp_path):
    extra = [f"output_dir={tmp_path}", f"callbacks.early_stopping.patience={patience}"]
    with pytest.raises(ConfigError) as err:
        check_train_config(compose_train(tiny_training(tiny_voc_root, *extra)))
    assert f"callbacks.early_stopping.patience={patience} must be a whole number" in str(err.value)
    assert str(err.value).count("\n  - ") == 1
