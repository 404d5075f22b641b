"""Training is never lost, with the real launchers: a kill inside a checkpoint save, torchrun
restarting a killed worker (and giving up after its last restart), a SLURM requeue, and two
torchrun "nodes" on this machine.

Every run is 2 epochs of 4 steps of a tiny resnet18 (batches of 2, one validation batch), with
last.ckpt every 2 steps and ``ckpt_path=last``: the same command line for the first start and
every restart. Interruptions are test-only callbacks acting at a chosen step (train_probes),
never timers. A restarted run must end with the uninterrupted run's losses at every step, its
final weights, and logs with each step once.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import (
    PROBES_ENV,
    TRAIN_SCRIPT,
    compose_train,
    csv_steps,
    load_checkpoint,
    per_step,
    tensorboard_steps,
    tiny_training,
    torchrun,
    two_nodes,
)

from segnet.tasks.train import train

STEPS = 8  # 2 epochs of 4 batches (of 2 images; 2 processes: 8 images each)
TIMEOUT = 300


def overrides(root: str, run_dir: Path, *extra: str) -> list[str]:
    return tiny_training(
        root,
        "data.batch_size=2",
        "trainer.limit_train_batches=4",
        "trainer.limit_val_batches=1",
        "callbacks.last_checkpoint.every_n_steps=2",
        "ckpt_path=last",
        f"hydra.run.dir={run_dir}",
        f"output_dir={run_dir}",  # what hydra.run.dir gives a script, for runs in this process
        *extra,
    )


def ddp(processes: int, nodes: int = 1) -> list[str]:
    return [
        "trainer=ddp",
        "trainer.accelerator=cpu",
        f"trainer.devices={processes // nodes}",
        f"trainer.num_nodes={nodes}",
    ]


def probe(name: str, **args: object) -> list[str]:
    key = name.lower()
    return [f"+callbacks.{key}._target_=train_probes.{name}"] + [
        f"+callbacks.{key}.{k}={v}" for k, v in args.items()
    ]


# What docs/training.md tells torchrun users: without it torchrun's restarts cannot connect.
ENV = {**PROBES_ENV, "TORCH_DISABLE_SHARE_RDZV_TCP_STORE": "1"}


def run(command: list[str], env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT, env=env or ENV)


def assert_same_training(run_dir: Path, reference: Path) -> None:
    """Every step's loss once and equal to the reference's, the same final weights."""
    assert csv_steps(run_dir) == list(range(STEPS))  # no gap, no repeat
    assert tensorboard_steps(run_dir) == list(range(STEPS))
    assert per_step(run_dir, "train/loss") == per_step(reference, "train/loss")
    weights = load_checkpoint(run_dir / "checkpoints" / "last.ckpt")
    expected = load_checkpoint(reference / "checkpoints" / "last.ckpt")
    assert weights["global_step"] == expected["global_step"] == STEPS
    for name, tensor in expected["state_dict"].items():
        assert torch.equal(weights["state_dict"][name], tensor), name


@pytest.fixture(scope="module")
def one_process(tiny_voc_root, tmp_path_factory) -> Path:
    """The uninterrupted single-process run (in this process)."""
    run_dir = tmp_path_factory.mktemp("one") / "run"
    train(compose_train(overrides(tiny_voc_root, run_dir)))
    return run_dir


@pytest.fixture(scope="module")
def two_processes(tiny_voc_root, tmp_path_factory) -> Path:
    """The uninterrupted run of 2 DDP processes on one node, under torchrun."""
    run_dir = tmp_path_factory.mktemp("two") / "run"
    command = torchrun("--standalone", "--nproc_per_node=2", str(TRAIN_SCRIPT))
    proc = run(command + overrides(tiny_voc_root, run_dir, *ddp(2)))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return run_dir


def test_a_kill_inside_a_save_keeps_the_previous_checkpoint_and_the_rerun_resumes(
    one_process, tiny_voc_root, tmp_path
):
    run_dir = tmp_path / "run"
    command = [sys.executable, str(TRAIN_SCRIPT), *overrides(tiny_voc_root, run_dir)]
    killed = run(command + probe("KillInsideSave", step=6))  # the mid-epoch save at step 6
    assert killed.returncode == -9, killed.stderr[-3000:]
    last = run_dir / "checkpoints" / "last.ckpt"
    assert load_checkpoint(last)["global_step"] == 4  # the one before, whole
    assert [p.name for p in last.parent.glob(".last.ckpt.*.tmp")]  # what the kill left

    rerun = run(command)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert f"resuming from {last} at global step 4" in rerun.stdout
    assert not list(last.parent.glob(".*.tmp"))
    assert_same_training(run_dir, one_process)


def test_torchrun_restarts_a_killed_worker_and_training_resumes_exactly(
    two_processes, tiny_voc_root, tmp_path
):
    run_dir = tmp_path / "run"
    kill = probe("KillAtStep", step=3, rank=1, once=tmp_path / "killed-once")
    command = torchrun("--standalone", "--nproc_per_node=2", "--max-restarts=1")
    proc = run([*command, str(TRAIN_SCRIPT), *overrides(tiny_voc_root, run_dir, *ddp(2), *kill)])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "killed-once").is_file()  # it was killed, and restarted
    assert "cannot restart this group" not in proc.stdout
    # From the periodic save at step 2, or from the one rank 0 makes at step 3 if it is
    # quicker than torchrun's SIGTERM (its peer died in step 3: nothing of it was applied).
    resumed = int(proc.stdout.split("resuming from ")[1].split("at global step ")[1].split()[0])
    assert resumed in (2, 3)
    assert_same_training(run_dir, two_processes)


def test_a_worker_killed_after_the_last_restart_fails_the_job_and_corrupts_nothing(
    tiny_voc_root, tmp_path
):
    run_dir = tmp_path / "run"
    kill = probe("KillAtStep", step=3, rank=1)  # at every start
    command = torchrun("--standalone", "--nproc_per_node=2", "--max-restarts=1")
    proc = run([*command, str(TRAIN_SCRIPT), *overrides(tiny_voc_root, run_dir, *ddp(2), *kill)])
    assert proc.returncode == 1, proc.stderr[-3000:]  # torchrun's status for a failed job
    assert "ChildFailedError" in proc.stderr
    last = run_dir / "checkpoints" / "last.ckpt"
    assert proc.stdout.count(f"resuming from {last} at global step") == 1  # one restart
    saved = load_checkpoint(last)["global_step"]  # whole, see the test above for 2 or 3
    assert saved in (2, 3)
    # Logs are flushed before each save, so they hold every step up to the checkpoint (maybe
    # one more, whose save the kill cut: a resume drops those rows, as the tests above show).
    steps = csv_steps(run_dir)
    assert steps == list(range(len(steps))) and len(steps) >= saved


def fake_scontrol(folder: Path) -> Path:
    """An ``scontrol`` that records its arguments in folder/scontrol.log."""
    folder.mkdir()
    script = folder / "scontrol"
    script.write_text(f'#!/bin/sh\necho "$@" >> {folder / "scontrol.log"}\n')
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return folder / "scontrol.log"


def test_a_slurm_requeue_saves_requeues_and_the_requeued_job_resumes_exactly(
    one_process, tiny_voc_root, tmp_path
):
    log = fake_scontrol(tmp_path / "bin")
    env = {
        **ENV,
        "PATH": f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}",
        "SLURM_JOB_ID": "4242",
        "SLURM_JOB_NAME": "segnet",
        "SLURM_NTASKS": "1",
        "SLURM_NTASKS_PER_NODE": "1",
        "SLURM_NNODES": "1",
        "SLURM_NODEID": "0",
        "SLURM_PROCID": "0",
        "SLURM_LOCALID": "0",
    }
    run_dir = tmp_path / "run"
    command = [sys.executable, str(TRAIN_SCRIPT), *overrides(tiny_voc_root, run_dir)]
    # SIGUSR1 as step 5 starts (mid-epoch 1): training stops between steps, here before it.
    stopped = run(command + probe("SignalAtStep", step=5, signal="SIGUSR1"), env)
    last = run_dir / "checkpoints" / "last.ckpt"
    assert stopped.returncode == 143, stopped.stderr[-3000:]
    assert log.read_text() == "requeue 4242\n"
    assert load_checkpoint(last)["global_step"] == 5
    assert "training stopped by SLURM's SIGUSR1 at global step 5" in stopped.stdout
    assert "requeued SLURM job 4242" in stopped.stdout
    assert not list(run_dir.glob("hpc_ckpt_*.ckpt"))  # Lightning's own handler is off

    requeued = run(command, env)  # the same command line, as SLURM runs it again
    assert requeued.returncode == 0, requeued.stderr[-3000:]
    assert f"resuming from {last} at global step 5" in requeued.stdout
    assert log.read_text() == "requeue 4242\n"  # not requeued again
    assert_same_training(run_dir, one_process)


def test_two_nodes_of_one_process_train_as_one_node_of_two(two_processes, tiny_voc_root, tmp_path):
    run_dir = tmp_path / "run"
    ranks = tmp_path / "ranks"
    args = overrides(tiny_voc_root, run_dir, *ddp(2, nodes=2), *probe("RankRecorder", out=ranks))
    for agent in two_nodes(TRAIN_SCRIPT, args, ENV):
        assert agent.returncode == 0, agent.stderr[-3000:]
    assert_same_training(run_dir, two_processes)
    records = [torch.load(ranks / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    assert [r["world_size"] for r in records] == [2, 2]
    assert records[0]["saves"] > 0 and records[1]["saves"] == 0  # only global rank 0 writes
    for name, tensor in records[0]["end"].items():
        assert torch.equal(records[1]["end"][name], tensor), name
