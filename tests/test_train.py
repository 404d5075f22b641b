"""End-to-end training through scripts/train.py and segnet.tasks.train on a tiny VOC-format set.

One trained run (module fixture) is shared by the checks on its outputs, its reload, DDP
evaluation and reproducibility; interruption and resume use their own short runs.
"""

from __future__ import annotations

import csv
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from segnet.data.datamodule import VOCDataModule
from segnet.system import SegmentationSystem
from segnet.tasks.config import ConfigError
from segnet.tasks.train import train

REPO = Path(__file__).resolve().parents[1]
CONFIG_DIR = REPO / "configs"
SCRIPT = REPO / "scripts" / "train.py"
SCORES = ("pixel_acc", "mean_acc", "miou", "fw_iou")


def tiny(root: str, *extra: str) -> list[str]:
    """Overrides for a seconds-long CPU run: resnet18, 64x64 crops, 2 batches of 4 per epoch."""
    return [
        f"data.root={root}",
        "data.crop_size=[64,64]",
        "data.batch_size=4",
        "data.eval_batch_size=4",
        "data.num_workers=0",
        "model.backbone=resnet18",
        "model.pretrained=false",
        "trainer=cpu",
        "trainer.max_epochs=2",
        "trainer.limit_train_batches=2",
        "trainer.log_every_n_steps=1",
        "trainer.num_sanity_val_steps=0",
        *extra,
    ]


def compose_train(overrides: list[str]) -> DictConfig:
    with initialize_config_dir(version_base="1.3", config_dir=str(CONFIG_DIR), job_name="test"):
        return compose("train", overrides=overrides)


def run_script(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=300, **kwargs
    )


def load(path: str | Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def csv_rows(run_dir: Path) -> list[dict[str, str]]:
    with open(run_dir / "csv" / "metrics.csv") as f:
        return list(csv.DictReader(f))


class StepProbe(pl.Callback):
    """Records the global step each fit starts at and can crash at a given step."""

    starts: list[int] = []

    def __init__(self, crash_at: int = -1) -> None:
        self.crash_at = crash_at

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        StepProbe.starts.append(trainer.global_step)

    def on_train_batch_start(self, trainer: pl.Trainer, *args) -> None:
        if trainer.global_step == self.crash_at:
            raise RuntimeError("injected crash")


@pytest.fixture(scope="module")
def trained(tiny_voc_root, tmp_path_factory) -> tuple[Path, str]:
    """(run dir, stdout) of one run of the real entry point, with DataLoader workers."""
    run_dir = tmp_path_factory.mktemp("train") / "run"
    args = tiny(tiny_voc_root, "data.num_workers=2", f"hydra.run.dir={run_dir}")
    proc = run_script(*args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return run_dir, proc.stdout


def test_script_writes_checkpoints_logs_and_report(trained):
    run_dir, stdout = trained
    best, last = (
        load(run_dir / "checkpoints" / "best.ckpt"),
        load(run_dir / "checkpoints" / "last.ckpt"),
    )
    assert last["global_step"] == 4  # saved by the last validation: 2 epochs x 2 batches
    val = best["val_metrics"]
    assert val["global_step"] in (2, 4)
    assert 0.0 <= val["miou"] <= 1.0 and len(val["confmat"]) == 21

    # The resolved config first, the best checkpoint's path and metrics last.
    assert "backbone: resnet18" in stdout and f"save_dir: {run_dir}" in stdout
    assert f"best checkpoint: {run_dir / 'checkpoints' / 'best.ckpt'}" in stdout
    assert f"val/miou {val['miou']:.4f}" in stdout
    assert f"last checkpoint: {run_dir / 'checkpoints' / 'last.ckpt'}" in stdout

    rows = csv_rows(run_dir)
    assert [float(r["val/miou"]) for r in rows if r["val/miou"]][-1] == pytest.approx(
        load(run_dir / "checkpoints" / "last.ckpt")["val_metrics"]["miou"]
    )
    assert sum(1 for r in rows if r["train/loss"]) == 4
    assert any(r["lr/head"] for r in rows) and any(r["lr/backbone"] for r in rows)
    assert list((run_dir / "tensorboard").glob("events.out.tfevents.*"))
    assert (run_dir / ".hydra" / "config.yaml").is_file()


def test_checkpoint_reloads_with_the_same_val_metrics(trained, tiny_voc_root):
    run_dir, _ = trained
    path = run_dir / "checkpoints" / "best.ckpt"
    system = SegmentationSystem.load_from_checkpoint(path, weights_only=True)
    trainer = pl.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False)
    trainer.validate(system, datamodule=VOCDataModule(tiny_voc_root, num_workers=0), verbose=False)
    saved = load(path)["val_metrics"]
    assert system.val_scores["confmat"] == saved["confmat"]
    for name in SCORES:
        assert system.val_scores[name] == pytest.approx(saved[name], abs=1e-12)


DDP_VALIDATE = textwrap.dedent(
    """
    import sys

    import hydra
    import torch
    from hydra import compose, initialize_config_dir

    from segnet.system import SegmentationSystem

    config_dir, ckpt, out, *overrides = sys.argv[1:]
    with initialize_config_dir(version_base="1.3", config_dir=config_dir):
        cfg = compose("train", overrides=overrides)
    trainer = hydra.utils.instantiate(
        cfg.trainer, logger=False, enable_checkpointing=False, enable_progress_bar=False
    )
    system = SegmentationSystem.load_from_checkpoint(ckpt, weights_only=True)
    trainer.validate(system, datamodule=hydra.utils.instantiate(cfg.data), verbose=False)
    if trainer.is_global_zero:
        torch.save({"world_size": trainer.world_size, **system.val_scores}, out)
    """
)


def test_ddp_validation_matches_single_process(trained, tiny_voc_root, tmp_path):
    """trainer=ddp on 2 CPU processes (gloo): the synced matrix equals the single-process one."""
    run_dir, _ = trained
    script, out = tmp_path / "ddp_validate.py", tmp_path / "ddp.pt"
    script.write_text(DDP_VALIDATE)
    ckpt = run_dir / "checkpoints" / "best.ckpt"
    overrides = tiny(
        tiny_voc_root, "trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2"
    ) + [f"output_dir={tmp_path}"]
    proc = subprocess.run(
        [sys.executable, str(script), str(CONFIG_DIR), str(ckpt), str(out), *overrides],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    ddp = torch.load(out, weights_only=True)
    assert ddp["world_size"] == 2
    assert ddp["confmat"] == load(ckpt)["val_metrics"]["confmat"]
    assert sum(map(sum, ddp["confmat"])) > 0


def test_sweep_with_the_same_seed_gives_identical_metrics(trained, tiny_voc_root, tmp_path):
    """-m runs one job per value in its own folder; same seed and data: same numbers as the
    fixture's run (another process, with DataLoader workers)."""
    run_dir, _ = trained
    sweep = tmp_path / "sweep"
    args = tiny(tiny_voc_root, "data.num_workers=2", f"hydra.sweep.dir={sweep}")
    proc = run_script("-m", "optim.lr=0.01,0.01", *args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    reference = load(run_dir / "checkpoints" / "last.ckpt")
    for job in ("0", "1"):
        last = load(sweep / job / "checkpoints" / "last.ckpt")
        assert last["val_metrics"]["confmat"] == reference["val_metrics"]["confmat"]
        assert last["val_metrics"]["miou"] == reference["val_metrics"]["miou"]
        losses = [r["train/loss"] for r in csv_rows(sweep / job) if r["train/loss"]]
        assert losses == [r["train/loss"] for r in csv_rows(run_dir) if r["train/loss"]]


def test_crash_leaves_last_checkpoint_and_resume_continues_at_its_step(
    tiny_voc_root, tmp_path, capsys
):
    probe = "+callbacks.probe._target_=test_train.StepProbe"
    crashed = tmp_path / "crashed"
    cfg = compose_train(
        tiny(tiny_voc_root, "trainer.max_epochs=3", f"output_dir={crashed}", probe)
        + ["+callbacks.probe.crash_at=3"]
    )
    with pytest.raises(RuntimeError, match="injected crash"):
        train(cfg)
    last = crashed / "checkpoints" / "last.ckpt"
    assert load(last)["global_step"] == 3  # mid-epoch: epoch 1 had run one of its 2 batches
    assert f"at global step 3; resume with ckpt_path={last}" in capsys.readouterr().out

    StepProbe.starts.clear()
    resumed = tmp_path / "resumed"
    cfg = compose_train(
        tiny(tiny_voc_root, "trainer.max_epochs=3", f"output_dir={resumed}", probe)
        + [f"ckpt_path={last}"]
    )
    result = train(cfg)
    assert StepProbe.starts == [3]
    assert result["global_step"] == 6  # as if never interrupted: 3 epochs x 2 batches
    assert sum(1 for r in csv_rows(resumed) if r["train/loss"]) == 3


def test_sigterm_saves_last_checkpoint_and_exits_143(tiny_voc_root, tmp_path):
    """As a SLURM time limit would: SIGTERM to the training process mid-run."""
    run_dir, log = tmp_path / "run", tmp_path / "log.txt"
    args = tiny(tiny_voc_root, "trainer.max_epochs=1000", f"hydra.run.dir={run_dir}")
    last = run_dir / "checkpoints" / "last.ckpt"
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, str(SCRIPT), *args], stdout=out, stderr=out)
        try:
            deadline = time.monotonic() + 240
            while not last.is_file() and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.2)
            assert last.is_file(), log.read_text()[-3000:]
            proc.send_signal(signal.SIGTERM)
            returncode = proc.wait(timeout=120)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert returncode == 143, log.read_text()[-3000:]
    step = load(last)["global_step"]
    assert step >= 2
    assert f"stopped by SIGTERM at global step {step}; resume with ckpt_path={last}" in (
        log.read_text()
    )


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["model.backbone=resnet9"], "model.backbone='resnet9' is not a known backbone"),
        (["model.num_classes=5"], "model.num_classes=5 does not match the data's 21 classes"),
        (
            ["data.crop_size=[600,400]", "data.scale_range=[0.5,1.0]"],
            "data.crop_size=[600, 400] is larger than allowed: VOC images are at most 500 px",
        ),
        (["data.root=/nonexistent/voc"], "data.root='/nonexistent/voc': dataset root"),
        (["optim.lr=0"], "optim.lr=0 must be a number > 0"),
    ],
)
def test_bad_config_values_fail_before_training(overrides, message, tiny_voc_root, tmp_path):
    cfg = compose_train(tiny(tiny_voc_root, f"output_dir={tmp_path}", *overrides))
    with pytest.raises(ConfigError) as err:
        train(cfg)
    assert message in str(err.value)
    assert str(err.value).count("\n  - ") == 1  # one clear line, nothing else blamed
    assert not (tmp_path / "checkpoints").exists()


def test_script_reports_every_bad_value_without_a_traceback(tmp_path):
    run_dir = tmp_path / "run"
    proc = run_script(
        "model.backbone=resnet9", f"data.root={tmp_path / 'missing'}", f"hydra.run.dir={run_dir}"
    )
    assert proc.returncode == 1
    assert proc.stderr.startswith("error: invalid configuration (nothing was run):")
    assert "model.backbone='resnet9'" in proc.stderr and "missing" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert "experiment=demo" in proc.stderr  # the way out when there is no data
    assert not (run_dir / "checkpoints").exists()
