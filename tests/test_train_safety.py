"""Training loses nothing and says what stopped it: Ctrl-C, resuming into the run's own folder,
a second training into a used folder, bad data mid-run, and failures before the Trainer starts.

One real run of scripts/train.py stopped by Ctrl-C (module fixture) is shared: its exit status,
its refusal of a second training and (on copies of its folder) resume and overwrite.
"""

from __future__ import annotations

import csv
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import pytorch_lightning as pl
from helpers import (
    PROBES_ENV,
    TRAIN_SCRIPT,
    compose_train,
    csv_steps,
    load_checkpoint,
    per_step,
    tensorboard_steps,
    tiny_training,
)
from hydra.errors import InstantiationException

from segnet.data.images import DataError
from segnet.tasks.cli import one_line
from segnet.tasks.config import ConfigError
from segnet.tasks.train import train

STOPPED_AT = 2  # the first step of the second epoch: after the first validation's last.ckpt


@pytest.fixture(scope="module")
def stopped_run(tiny_voc_root, tmp_path_factory) -> tuple[Path, int, str]:
    """(run dir, exit status, output) of scripts/train.py interrupted by Ctrl-C (SIGINT, sent
    by the run itself as global step STOPPED_AT starts)."""
    run_dir = tmp_path_factory.mktemp("stopped") / "run"
    args = tiny_training(
        tiny_voc_root,
        "trainer.max_epochs=1000",
        f"hydra.run.dir={run_dir}",
        "+callbacks.ctrl_c._target_=train_probes.SignalAtStep",
        f"+callbacks.ctrl_c.step={STOPPED_AT}",
        pictures=True,  # the stop writes the run report (test_overwrite_true_... needs it)
    )
    proc = subprocess.run(
        [sys.executable, str(TRAIN_SCRIPT), *args],
        capture_output=True,
        text=True,
        timeout=600,
        env=PROBES_ENV,
    )
    return run_dir, proc.returncode, proc.stdout + proc.stderr


def test_ctrl_c_exits_130_saves_last_checkpoint_and_prints_the_resume_command(stopped_run):
    run_dir, returncode, output = stopped_run
    last = run_dir / "checkpoints" / "last.ckpt"
    assert returncode == 130, output[-3000:]
    step = load_checkpoint(last)["global_step"]
    assert step == STOPPED_AT
    assert f"training stopped by Ctrl-C at global step {step}; resume with ckpt_path={last}" in (
        output
    )
    assert "Traceback" not in output


def test_second_training_into_a_used_run_folder_is_refused_and_changes_nothing(
    stopped_run, tiny_voc_root
):
    run_dir = stopped_run[0]
    kept = [
        run_dir / "checkpoints" / "last.ckpt",
        run_dir / "csv" / "metrics.csv",
        run_dir / ".hydra" / "config.yaml",
    ]
    before = [path.read_bytes() for path in kept]
    proc = subprocess.run(
        [
            sys.executable,
            str(TRAIN_SCRIPT),
            *tiny_training(tiny_voc_root, f"hydra.run.dir={run_dir}"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert proc.stderr.startswith("error: invalid configuration (nothing was run):")
    assert f"the run folder {run_dir} (hydra.run.dir) already holds a training run" in proc.stderr
    assert f"ckpt_path={run_dir / 'checkpoints' / 'last.ckpt'}" in proc.stderr
    assert "overwrite=true" in proc.stderr and "Traceback" not in proc.stderr
    assert [path.read_bytes() for path in kept] == before  # .hydra/ of the first run included


def test_resume_into_its_own_folder_continues_the_csv_and_tensorboard_logs(
    stopped_run, tiny_voc_root, tmp_path
):
    run_dir = tmp_path / "run"
    shutil.copytree(stopped_run[0], run_dir)
    last = run_dir / "checkpoints" / "last.ckpt"
    stopped_at = load_checkpoint(last)["global_step"]
    before = per_step(run_dir, "train/loss")
    assert csv_steps(run_dir) == list(range(stopped_at))

    end = stopped_at + 2 - stopped_at % 2  # to the end of the next epoch (2 batches each)
    overrides = [f"trainer.max_epochs={end // 2}", f"output_dir={run_dir}", f"ckpt_path={last}"]
    result = train(compose_train(tiny_training(tiny_voc_root, *overrides)))

    assert result["global_step"] == end
    after = per_step(run_dir, "train/loss")
    assert {step: after[step] for step in before} == before  # the earlier rows kept, unchanged
    assert csv_steps(run_dir) == list(range(end))  # continued, no gap, no repeat
    assert tensorboard_steps(run_dir) == list(range(end))


def test_overwrite_true_replaces_the_run_in_the_folder(stopped_run, tiny_voc_root, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(stopped_run[0], run_dir)
    # The Ctrl-C'ed script wrote its run report; a picture only it has must go with it.
    assert f"stopped by Ctrl-C at global step {STOPPED_AT}" in (run_dir / "report.md").read_text()
    (run_dir / "report" / "first-run-only.png").write_bytes(b"")
    overrides = ["trainer.max_epochs=1", f"output_dir={run_dir}"]
    with pytest.raises(ConfigError, match="already holds a training run"):
        train(compose_train(tiny_training(tiny_voc_root, *overrides)))

    overrides.append("overwrite=true")
    result = train(compose_train(tiny_training(tiny_voc_root, *overrides, pictures=True)))
    assert not (run_dir / "report" / "first-run-only.png").exists()
    assert "Training finished at global step 2." in (run_dir / "report.md").read_text()
    assert result["global_step"] == 2
    assert load_checkpoint(run_dir / "checkpoints" / "last.ckpt")["global_step"] == 2
    assert csv_steps(run_dir) == [0, 1]  # nothing of the first run left
    assert tensorboard_steps(run_dir) == [0, 1]


def test_overwrite_true_cannot_delete_the_checkpoint_it_resumes_from(stopped_run, tiny_voc_root):
    run_dir = stopped_run[0]
    last = run_dir / "checkpoints" / "last.ckpt"
    cfg = compose_train(
        tiny_training(tiny_voc_root, f"output_dir={run_dir}", f"ckpt_path={last}", "overwrite=true")
    )
    with pytest.raises(ConfigError, match="overwrite=true would delete ckpt_path="):
        train(cfg)
    assert last.is_file()


class CorruptImagesAfterFirstEpoch(pl.Callback):
    """Overwrites every training image with garbage once the first epoch is done, as a failing
    disk or a sync job would mid-run."""

    def __init__(self, root: str) -> None:
        self.root = Path(root)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        for jpeg in (self.root / "VOCdevkit" / "VOC2012" / "JPEGImages").glob("*.jpg"):
            jpeg.write_bytes(b"\xff\xd8 not a jpeg")


@pytest.mark.parametrize(
    "workers",
    [
        0,
        1,
    ],
)
def test_bad_training_image_mid_run_gives_one_line_and_the_resume_command(
    workers, tiny_voc_root, tmp_path, capsys
):
    root, run_dir = tmp_path / "data", tmp_path / "run"
    shutil.copytree(tiny_voc_root, root)
    corrupt = "+callbacks.corrupt._target_=test_train_safety.CorruptImagesAfterFirstEpoch"
    cfg = compose_train(
        tiny_training(root, f"data.num_workers={workers}", f"output_dir={run_dir}", corrupt)
        + [f"+callbacks.corrupt.root={root}"]
    )
    with pytest.raises(ValueError) as err:
        train(cfg)
    message = str(err.value)
    assert isinstance(err.value.__cause__, DataError)
    assert "\n" not in message and "DataLoader worker" not in message
    assert str(root / "VOCdevkit" / "VOC2012" / "JPEGImages") in message
    last = run_dir / "checkpoints" / "last.ckpt"
    assert load_checkpoint(last)["global_step"] == 2
    assert message.endswith(f"(training stopped at global step 2; resume with ckpt_path={last})")
    assert "training stopped" not in capsys.readouterr().out  # said once, in the error


def test_batch_larger_than_the_training_set_stops_before_training(tiny_voc_root, tmp_path):
    cfg = compose_train(
        tiny_training(tiny_voc_root, "data.batch_size=17", f"output_dir={tmp_path}")
    )
    with pytest.raises(ConfigError) as err:
        train(cfg)
    assert "data.batch_size=17 is larger than the training set (16 images in split 'train')" in str(
        err.value
    )
    assert "data.batch_size<=16" in str(err.value)
    assert not any(tmp_path.iterdir())  # no checkpoint, no log


def test_pretrained_weights_offline_gives_a_clean_message_with_config_keys(
    tiny_voc_root, tmp_path, offline
):
    cfg = compose_train(
        tiny_training(tiny_voc_root, "model.pretrained=true", f"output_dir={tmp_path}")
    )
    with pytest.raises(InstantiationException) as err:
        train(cfg)
    message = one_line(err.value)  # what scripts/train.py prints after "error: "
    assert message.startswith("model: cannot get the ImageNet weights for backbone 'resnet18'")
    assert "model.weights_path=/local/resnet18-f37072fd.pth" in message
    assert "model.pretrained=false" in message
    assert "Error in call to target" not in message and "\\n" not in message
    assert len(message.splitlines()) == 6  # the cause, then the heading and the four fixes


def test_a_ctrl_c_while_the_csv_is_written_loses_no_row_and_no_column(tmp_path, monkeypatch):
    from segnet.training import logs as run_logs

    logger = run_logs.ContinuedCSVLogger(save_dir=str(tmp_path), name="csv", version="")
    logger.log_metrics({"train/loss": 3.0}, step=0)
    logger.log_metrics({"train/loss": 2.0}, step=1)
    logger.save()
    logger.log_metrics({"val/miou": 0.5}, step=1)  # a new column: the header changes
    write_text = run_logs.write_text

    def interrupted(path, text):
        raise KeyboardInterrupt

    monkeypatch.setattr(run_logs, "write_text", interrupted)
    with pytest.raises(KeyboardInterrupt):
        logger.save()
    monkeypatch.setattr(run_logs, "write_text", write_text)
    logger.finalize("failed")  # what Lightning does after the Ctrl-C
    with open(tmp_path / "csv" / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["step"], r["train/loss"], r["val/miou"]) for r in rows] == [
        ("0", "3.0", ""),
        ("1", "2.0", ""),
        ("1", "", "0.5"),
    ]


@pytest.mark.parametrize("every", [0, -5, 2.5, True, "500"])
def test_a_bad_periodic_checkpoint_interval_is_refused_naming_it(every, tmp_path):
    from segnet.training.checkpoints import LastCheckpoint

    with pytest.raises(ValueError, match="every_n_steps must be an integer >= 1 or null"):
        LastCheckpoint(str(tmp_path), every_n_steps=every)
    assert LastCheckpoint(str(tmp_path), every_n_steps=None).every_n_steps is None
