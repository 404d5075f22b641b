"""The run report (segnet.training.report.RunReport, docs/monitoring.md): report.md links only
pictures that exist, its per-class table is a separate evaluation of best.ckpt, its per-class
curves end at metrics.csv's last values, its hardest images are evaluate's, and a run stopped by
Ctrl-C or SIGTERM writes one too. Tiny in-process trainings on the session's demo data."""

from __future__ import annotations

import contextlib
import csv
import io
import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from helpers import compose_config, compose_train, load_checkpoint, tiny_training
from PIL import Image

from segnet.tasks.evaluate import evaluate
from segnet.tasks.train import train
from segnet.training.report import RunReport

HARDEST = 3
LINK = re.compile(r"!\[[^\]]*\]\(([^)]+)\)")


def run_quietly(root: str, run_dir: Path, *extra: str) -> str:
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        train(compose_train(tiny_training(root, f"output_dir={run_dir}", *extra, pictures=True)))
    return printed.getvalue()


def table_rows(report: str, heading: str) -> list[list[str]]:
    """The body rows of the first markdown table after ``heading``, as cells."""
    lines = report[report.index(heading) :].splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("|---"))
    rows = []
    for line in lines[start + 1 :]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in re.split(r"(?<!\\)\|", line)[1:-1]])
    return rows


def assert_links_exist(run_dir: Path) -> list[str]:
    links = LINK.findall((run_dir / "report.md").read_text())
    assert links and all((run_dir / link).is_file() for link in links)
    linked = sorted(Path(link).name for link in links if link.startswith("report/hardest/"))
    assert sorted(p.name for p in (run_dir / "report" / "hardest").iterdir()) == linked
    return links


@pytest.fixture(scope="module")
def finished(tiny_voc_root, tmp_path_factory) -> tuple[Path, str]:
    run_dir = tmp_path_factory.mktemp("report") / "run"
    printed = run_quietly(tiny_voc_root, run_dir, f"callbacks.report.hardest={HARDEST}")
    return run_dir, printed


@pytest.fixture(scope="module")
def best_evaluated(finished, tiny_voc_root, tmp_path_factory) -> tuple[Path, dict]:
    """scripts/evaluate.py on the run's best.ckpt and val split."""
    out = tmp_path_factory.mktemp("eval")
    args = [f"ckpt_path={finished[0] / 'checkpoints' / 'best.ckpt'}", "data=voc"]
    args += [f"data.root={tiny_voc_root}", "++data.num_workers=0", "split=val"]
    args += [f"output_dir={out}", f"hardest={HARDEST}", "batch_size=1"]
    with contextlib.redirect_stdout(io.StringIO()):
        return out, evaluate(compose_config("eval", args))


def test_report_links_only_pictures_that_exist(finished):
    run_dir, printed = finished
    links = assert_links_exist(run_dir)
    assert "report/curves.png" in links and "report/per_class_iou.png" in links
    assert len([link for link in links if "hardest" in link]) == HARDEST
    for link in links:
        with Image.open(run_dir / link) as picture:
            assert picture.format == "PNG"
    assert f"run report: {run_dir / 'report.md'}" in printed
    assert "Training finished at global step 4." in (run_dir / "report.md").read_text()


def test_per_class_table_equals_an_evaluation_of_best_ckpt(finished, best_evaluated):
    run_dir, _ = finished
    _, metrics = best_evaluated
    rows = table_rows((run_dir / "report.md").read_text(), "| class | IoU |")
    confmat = np.array(metrics["confusion_matrix"])
    assert [row[0] for row in rows] == metrics["class_names"]
    for i, (name, iou, _, truth, predicted) in enumerate(rows):
        expected = metrics["per_class_iou"][name]
        assert iou == ("absent" if expected is None else f"{expected:.4f}")
        assert (int(truth), int(predicted)) == (confmat[i].sum(), confmat[:, i].sum())


def test_per_class_curves_end_at_the_last_values_of_metrics_csv(finished):
    run_dir, _ = finished
    with open(run_dir / "csv" / "metrics.csv", newline="") as f:
        rows = [row for row in csv.DictReader(f) if row.get("val/miou")]
    names = load_checkpoint(run_dir / "checkpoints" / "best.ckpt")["hyper_parameters"][
        "class_names"
    ]
    report = (run_dir / "report.md").read_text()
    assert f"logged at step {rows[-1]['step']} of csv/metrics.csv" in report
    section = report[report.index("## Per-class val IoU") :]
    header = next(line for line in section.splitlines() if line.startswith("| "))
    shown = [cell.strip() for cell in header.split("|")[1:-1]]
    values = table_rows(report, "## Per-class val IoU")[0]
    expected = {
        n: f"{float(rows[-1][f'val/iou/{n}']):.4f}" for n in names if rows[-1].get(f"val/iou/{n}")
    }
    assert dict(zip(shown, values, strict=True)) == expected
    assert len(rows) == 2 and rows[0][f"val/iou/{names[0]}"] != rows[-1][f"val/iou/{names[0]}"]


def test_hardest_images_are_those_evaluate_finds_for_best_ckpt(finished, best_evaluated):
    run_dir, _ = finished
    out, metrics = best_evaluated
    rows = table_rows((run_dir / "report.md").read_text(), "## Hardest images")
    lowest = sorted(metrics["per_image"], key=lambda entry: entry["miou"])[:HARDEST]
    assert [row[1] for row in rows] == [f"`{entry['id']}.jpg`" for entry in lowest]
    assert [float(row[2]) for row in rows] == pytest.approx([e["miou"] for e in lowest], abs=1e-4)
    for picture in (out / "hardest").iterdir():
        with (
            Image.open(picture) as a,
            Image.open(run_dir / "report" / "hardest" / picture.name) as b,
        ):
            assert np.array_equal(np.asarray(a), np.asarray(b))


# Ctrl-C stops as step 3 starts; Lightning finishes the step SIGTERM arrives in first.
@pytest.mark.parametrize(
    ("signal", "raised", "stopped_at"),
    [("SIGINT", KeyboardInterrupt, 3), ("SIGTERM", SystemExit, 4)],
)
def test_a_run_stopped_by_ctrl_c_or_sigterm_writes_its_report(
    tiny_voc_root, tmp_path, signal, raised, stopped_at
):
    run_dir = tmp_path / "run"
    stop = ["+callbacks.stop._target_=train_probes.SignalAtStep", "+callbacks.stop.step=3"]
    stop += [
        f"+callbacks.stop.signal={signal}",
        "trainer.max_epochs=5",
        "callbacks.report.hardest=2",
    ]
    with pytest.raises(raised):
        run_quietly(tiny_voc_root, run_dir, *stop)
    why = "Ctrl-C" if signal == "SIGINT" else "SIGTERM"
    report = (run_dir / "report.md").read_text()
    assert f"Training stopped by {why} at global step {stopped_at}." in report
    assert load_checkpoint(run_dir / "checkpoints" / "last.ckpt")["global_step"] == stopped_at
    assert "epoch 0, global step 2" in report  # best.ckpt: the one validation before the stop
    assert len([link for link in assert_links_exist(run_dir) if "hardest" in link]) == 2


def test_a_report_that_fails_on_ctrl_c_is_one_line_and_lets_the_stop_through(
    tmp_path, monkeypatch, capsys
):
    report = RunReport(str(tmp_path))

    def disk_full(trainer, ended):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(report, "write", disk_full)
    trainer = SimpleNamespace(global_step=7)
    report.on_exception(trainer, None, KeyboardInterrupt())
    assert capsys.readouterr().out == (
        "run report not written: OSError: [Errno 28] No space left on device\n"
    )
    with pytest.raises(OSError):  # at the end of a finished fit it is the run's error
        report.on_fit_end(trainer, None)
