"""Training through segnet.tasks.train and scripts/train.py on a small VOC-format set whose 7 val
images split 4/3 over two processes (a padded sampler would repeat one of them).

One run trained in this process until its model predicts several classes (module fixture
``trained``, asserted) is shared by the checks on its outputs and its reload, by an interrupted
and resumed copy of it, by a one-job sweep in another process and by a 2-process DDP
continuation of it. Subprocesses only where the script itself is the point: ``-m``, DDP (Lightning
starts the second process by re-running the command), SIGTERM and the exit status.
"""

from __future__ import annotations

import contextlib
import csv
import io
import subprocess
import sys
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from helpers import (
    PROBES_ENV,
    TRAIN_SCRIPT,
    assert_varied,
    compose_config,
    compose_train,
    csv_steps,
    per_step,
    tensorboard_steps,
)
from helpers import (
    load_checkpoint as load,
)

from segnet.data.classes import VOC_CLASSES
from segnet.data.datamodule import VOCDataModule
from segnet.data.demo import generate_demo_dataset
from segnet.tasks.config import ConfigError
from segnet.tasks.evaluate import evaluate
from segnet.tasks.train import train
from segnet.training.system import SegmentationSystem

SCORES = ("pixel_acc", "mean_acc", "miou", "fw_iou")
STEPS_PER_EPOCH = 8  # 16 train images, batches of 2
STEPS = 3 * STEPS_PER_EPOCH  # the shared run: 3 epochs


def fast(root: str, *extra: str) -> list[str]:
    """Overrides for the shared run: resnet18 from scratch, AdamW lr 3e-3 on 64x64 crops, 3
    epochs of 8 steps. Measured: the cheapest setting found whose model predicts several classes
    (6 on 1% of the pixels; 2 epochs gave 4, batches of 4 gave 2, and mobilenet_v3_large still
    predicted only background after 24 steps)."""
    return [
        f"data.root={root}",
        "data.crop_size=[64,64]",
        "data.batch_size=2",
        "data.eval_batch_size=3",
        "data.num_workers=0",
        "model.backbone=resnet18",
        "model.pretrained=false",
        "optim=adamw",
        "optim.lr=0.003",
        "trainer=cpu",
        "trainer.max_epochs=3",
        "trainer.log_every_n_steps=1",
        "trainer.num_sanity_val_steps=0",
        "trainer.enable_progress_bar=false",
        *extra,
    ]


def run_script(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(TRAIN_SCRIPT), *args],
        capture_output=True,
        text=True,
        timeout=300,
        **kwargs,
    )


@pytest.fixture(scope="module")
def voc7(tmp_path_factory) -> str:
    root = tmp_path_factory.mktemp("voc7")
    generate_demo_dataset(root, num_train=16, num_val=7, seed=0)
    return str(root)


@pytest.fixture(scope="module")
def trained(voc7, tmp_path_factory) -> tuple[Path, str]:
    """(run dir, printed output) of the shared run, made in this process."""
    run_dir = tmp_path_factory.mktemp("train") / "run"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        train(compose_train(fast(voc7, f"output_dir={run_dir}")))
    assert_varied(load(run_dir / "checkpoints" / "last.ckpt")["val_metrics"]["confmat"])
    return run_dir, printed.getvalue()


def test_training_writes_checkpoints_logs_and_report(trained):
    run_dir, printed = trained
    best, last = (load(run_dir / "checkpoints" / f"{name}.ckpt") for name in ("best", "last"))
    assert last["global_step"] == STEPS  # saved by the last validation
    val = best["val_metrics"]
    assert val["global_step"] in range(STEPS_PER_EPOCH, STEPS + 1, STEPS_PER_EPOCH)
    assert val["miou"] == max(v["miou"] for v in (val, last["val_metrics"]))

    # The resolved config first, the best checkpoint's path and metrics last.
    assert "backbone: resnet18" in printed and f"save_dir: {run_dir}" in printed
    assert f"best checkpoint: {run_dir / 'checkpoints' / 'best.ckpt'}" in printed
    assert f"val/miou {val['miou']:.4f}" in printed
    assert f"last checkpoint: {run_dir / 'checkpoints' / 'last.ckpt'}" in printed

    assert float(list(per_step(run_dir, "val/miou").values())[-1]) == pytest.approx(
        last["val_metrics"]["miou"]
    )
    assert sorted(per_step(run_dir, "train/loss")) == list(range(STEPS))
    assert per_step(run_dir, "lr/head") and per_step(run_dir, "lr/backbone")
    assert list((run_dir / "tensorboard").glob("events.out.tfevents.*"))


def test_resuming_a_finished_run_trains_nothing_and_says_so(trained, voc7, tmp_path):
    reference, _ = trained
    last = reference / "checkpoints" / "last.ckpt"
    cfg = compose_train(fast(voc7, f"ckpt_path={last}", f"output_dir={tmp_path / 'again'}"))
    with pytest.raises(ValueError, match=f"global step {STEPS}.*nothing was trained; raise"):
        train(cfg)
    assert not (tmp_path / "again" / "checkpoints").exists()


def test_checkpoint_reloads_with_the_same_val_metrics(trained, voc7):
    run_dir, _ = trained
    path = run_dir / "checkpoints" / "best.ckpt"
    saved = load(path)["val_metrics"]
    assert_varied(saved["confmat"])
    system = SegmentationSystem.load_from_checkpoint(path, weights_only=True)
    trainer = pl.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False)
    trainer.validate(system, datamodule=VOCDataModule(voc7, num_workers=0), verbose=False)
    assert system.val_scores["confmat"] == saved["confmat"]
    for name in SCORES:
        assert system.val_scores[name] == pytest.approx(saved[name], abs=1e-12)


@pytest.mark.parametrize(
    ("stop", "step", "workers"),
    [
        ("CrashAtStep", STEPS_PER_EPOCH, 0),  # as epoch 1 starts
        ("CrashAtStep", STEPS_PER_EPOCH + 3, 0),  # in the middle of epoch 1
        ("SignalAtStep", 5, 2),  # Ctrl-C in the middle of epoch 0, DataLoader workers
    ],
)
def test_interrupted_and_resumed_run_continues_exactly_as_the_uninterrupted_one(
    trained, voc7, tmp_path, capsys, stop, step, workers
):
    """Stop at a step (a crash, or Ctrl-C), resume from last.ckpt into the same folder: every
    step's loss and lrs, and the final weights, are the uninterrupted run's (made without
    workers). Lost weights, AdamW moments or lr schedule would each change the losses or lrs
    from the resume step on; a resumed epoch that re-read its first batches, or drew other
    crops, would change the losses."""
    reference, _ = trained
    run_dir = tmp_path / "run"
    common = (f"output_dir={run_dir}", f"data.num_workers={workers}")
    stopping = (f"+callbacks.stop._target_=train_probes.{stop}", f"+callbacks.stop.step={step}")
    with pytest.raises(RuntimeError if stop == "CrashAtStep" else KeyboardInterrupt):
        train(compose_train(fast(voc7, *common, *stopping)))
    last = run_dir / "checkpoints" / "last.ckpt"
    assert load(last)["global_step"] == step
    assert f"at global step {step}; resume with ckpt_path={last}" in capsys.readouterr().out

    result = train(compose_train(fast(voc7, *common, f"ckpt_path={last}")))
    assert result["global_step"] == STEPS
    for column in ("train/loss", "lr/head", "lr/backbone"):
        assert csv_steps(run_dir, column) == list(range(STEPS)), column  # no gap, no repeat
        assert per_step(run_dir, column) == per_step(reference, column), column
        assert tensorboard_steps(run_dir, column) == list(range(STEPS)), column
    assert len(set(per_step(run_dir, "lr/head").values())) > 2  # the schedule is not flat
    weights = load(last)["state_dict"]
    for name, tensor in load(reference / "checkpoints" / "last.ckpt")["state_dict"].items():
        assert torch.equal(weights[name], tensor), name


def test_a_one_job_sweep_in_another_process_reproduces_the_run(trained, voc7, tmp_path):
    """-m puts job 0 into <sweep dir>/0; same config and seed in a fresh process (the shared
    run was made in this one): the same losses and the same val confusion matrix."""
    reference, _ = trained
    sweep = tmp_path / "sweep"
    proc = run_script(
        "-m", *fast(voc7, f"hydra.sweep.dir={sweep}", "seed=0"), env=PROBES_ENV, cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(p.name for p in sweep.iterdir() if p.is_dir()) == ["0"]
    last, expected = (load(d / "checkpoints" / "last.ckpt") for d in (sweep / "0", reference))
    assert last["val_metrics"]["confmat"] == expected["val_metrics"]["confmat"]
    assert last["val_metrics"]["miou"] == expected["val_metrics"]["miou"]
    assert per_step(sweep / "0", "train/loss") == per_step(reference, "train/loss")
    assert (sweep / "0" / ".hydra" / "config.yaml").is_file()


def test_ddp_on_two_cpu_processes(trained, voc7, tmp_path):
    """trainer=ddp with 2 gloo processes continues the shared run for one epoch.

    - gradients are all-reduced: both ranks end with equal weights, which the step changed;
    - only rank 0 writes checkpoints, logs, the prediction pictures and the report;
    - sync_batchnorm (on in trainer=ddp) is turned off on CPU with a note;
    - val metrics under DDP (7 images, split 4/3, batches of 3) are exactly those of one
      process validating the saved model, and of scripts/evaluate.py's evaluation of it.
    """
    reference, _ = trained
    run_dir, ranks = tmp_path / "run", tmp_path / "ranks"
    args = fast(
        voc7,
        "trainer=ddp",
        "trainer.accelerator=cpu",
        "trainer.devices=2",
        # max_steps, not max_epochs: the poly schedule's length counts each process's steps,
        # which are half as many per epoch here as in the run it continues.
        "trainer.max_epochs=-1",
        f"trainer.max_steps={STEPS + 4}",
        f"ckpt_path={reference / 'checkpoints' / 'last.ckpt'}",
        f"hydra.run.dir={run_dir}",
        "+callbacks.ranks._target_=train_probes.RankRecorder",
        f"+callbacks.ranks.out={ranks}",
    )
    proc = run_script(*args, env=PROBES_ENV, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rank0, rank1 = (load(ranks / f"rank{r}.pt") for r in (0, 1))
    assert rank0["world_size"] == rank1["world_size"] == 2
    for name, weights in rank0["end"].items():
        assert torch.equal(weights, rank1["end"][name]), name
    assert any(not torch.equal(rank0["end"][n], p) for n, p in rank0["start"].items())

    assert rank0["saves"] >= 2 and rank1["saves"] == 0  # best.ckpt and last.ckpt
    assert rank0["pictures"][0] == "train_batch.png" and rank1["pictures"] == []
    assert any(name.startswith("val_step") for name in rank0["pictures"])
    assert sorted(p.name for p in (run_dir / "samples").iterdir()) == sorted(rank0["pictures"])
    assert len(list((run_dir / "tensorboard").glob("events.out.tfevents.*"))) == 1
    # 8 images per process, batches of 2: 4 more steps, each logged once.
    with open(run_dir / "csv" / "metrics.csv", newline="") as f:
        assert sum(1 for row in csv.DictReader(f) if row["train/loss"]) == 4
    assert proc.stdout.count("best checkpoint:") == 1
    assert proc.stdout.count(f"run report: {run_dir / 'report.md'}") == 1  # rank 0's alone
    assert proc.stdout.count("note: trainer.sync_batchnorm needs GPUs") == 1
    assert not rank0["sync_batchnorm"] and not rank1["sync_batchnorm"]

    last = run_dir / "checkpoints" / "last.ckpt"
    ddp = load(last)["val_metrics"]
    assert ddp["global_step"] == STEPS + 4
    assert_varied(ddp["confmat"])
    system = SegmentationSystem.load_from_checkpoint(last, weights_only=True)
    trainer = pl.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False)
    trainer.validate(system, datamodule=VOCDataModule(voc7, num_workers=0), verbose=False)
    assert system.val_scores["confmat"] == ddp["confmat"]
    cfg = compose_config(
        "eval",
        [f"ckpt_path={last}", f"data.root={voc7}", "data.num_workers=0", "device=cpu"]
        + [f"output_dir={tmp_path / 'eval'}"],
    )
    assert evaluate(cfg)["confusion_matrix"] == ddp["confmat"]


def test_init_from_under_ddp_gives_every_rank_the_same_transferred_weights(trained, voc7, tmp_path):
    """Each rank applies init_from itself before DDP wraps the model (recorded at setup, so
    DDP's broadcast of rank 0's weights cannot hide a rank that skipped it); classes in
    another order take their source slices by name."""
    reference, _ = trained
    source = reference / "checkpoints" / "last.ckpt"
    names = ["background", *reversed(VOC_CLASSES[1:])]
    ranks = tmp_path / "ranks"
    proc = run_script(
        *fast(
            voc7,
            "trainer=ddp",
            "trainer.accelerator=cpu",
            "trainer.devices=2",
            "trainer.max_epochs=-1",
            "trainer.max_steps=1",
            f"++data.class_names=[{','.join(names)}]",
            f"init_from={source}",
            f"hydra.run.dir={tmp_path / 'run'}",
            "+callbacks.ranks._target_=train_probes.RankRecorder",
            f"+callbacks.ranks.out={ranks}",
        ),
        env=PROBES_ENV,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    rank0, rank1 = (load(ranks / f"rank{r}.pt")["set_up"] for r in (0, 1))
    old = load(source)["state_dict"]
    for name, weights in rank0.items():
        assert torch.equal(weights, rank1[name]), name
        if name.startswith("model.backbone."):
            assert torch.equal(weights, old[name]), name
    dog_old, dog_new = VOC_CLASSES.index("dog"), names.index("dog")
    assert dog_old != dog_new
    for name in ("model.score32.weight", "model.score8.weight"):
        assert torch.equal(rank0[name][dog_new], old[name][dog_old]), name
    assert proc.stdout.count("tensors copied") == 1  # the table, printed by rank 0 only


def test_sigterm_saves_last_checkpoint_and_exits_143(voc7, tmp_path):
    """As a SLURM time limit would: SIGTERM to the training process mid-epoch (sent by the run
    itself as step 3 starts, so the test does not depend on when a timer fires)."""
    run_dir = tmp_path / "run"
    args = fast(voc7, "trainer.max_epochs=1000", f"hydra.run.dir={run_dir}")
    args += ["trainer.limit_train_batches=2", "trainer.limit_val_batches=1"]
    args += ["+callbacks.stop._target_=train_probes.SignalAtStep", "+callbacks.stop.step=3"]
    args += ["+callbacks.stop.signal=SIGTERM"]
    proc = run_script(*args, env=PROBES_ENV)
    last = run_dir / "checkpoints" / "last.ckpt"
    assert proc.returncode == 143, proc.stderr[-3000:]
    assert load(last)["global_step"] == 4  # Lightning finishes the step under way, then stops
    assert f"stopped by SIGTERM at global step 4; resume with ckpt_path={last}" in proc.stdout
    assert (run_dir / ".hydra" / "config.yaml").is_file()


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
def test_bad_config_values_fail_before_training(overrides, message, voc7, tmp_path):
    cfg = compose_train(fast(voc7, f"output_dir={tmp_path}", *overrides))
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
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: invalid configuration (nothing was run):")
    assert "model.backbone='resnet9'" in proc.stderr and "missing" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert "experiment=demo" in proc.stderr  # the way out when there is no data
    assert not (run_dir / "checkpoints").exists()
