"""SLURM's requeue: SIGUSR1 before the time limit -> ``last.ckpt``, ``scontrol requeue``, stop.

A job submitted with ``#SBATCH --signal=SIGUSR1@120`` gets SIGUSR1 120 s before its time
limit. :class:`SlurmRequeue` notes the signal and stops training once the step under way is
done and logged, as the next one starts (every process at the same step: the decision is
reduced over the process group), which saves ``last.ckpt``
(:class:`~segnet.training.checkpoints.LastCheckpoint`); then :func:`requeue` asks SLURM to
queue the job again. The requeued job runs the same command line, whose ``ckpt_path=last``
resumes from that checkpoint.

Lightning's own SLURM handler is switched off (``SLURMEnvironment(auto_requeue=False)``): it
saves a separate ``hpc_ckpt_N.ckpt`` from inside the signal handler, wherever in a step the
signal lands, and trains on until the job is killed.
"""

from __future__ import annotations

import os
import signal
import subprocess
from types import FrameType
from typing import Any

import pytorch_lightning as pl

REQUEUE_SIGNAL = signal.SIGUSR1


class RequeueRequested(Exception):
    """SLURM signalled the end of the job's time; training stopped between two steps."""


def slurm_job_id() -> str | None:
    """The id ``scontrol requeue`` takes: ``<array job>_<task>`` in a job array, else the job's
    (None outside SLURM)."""
    array_job = os.environ.get("SLURM_ARRAY_JOB_ID")
    if array_job is not None:
        return f"{array_job}_{os.environ['SLURM_ARRAY_TASK_ID']}"
    return os.environ.get("SLURM_JOB_ID")


def requeue(job_id: str) -> str | None:
    """Run ``scontrol requeue job_id``; None when it succeeded, else why not (one line)."""
    try:
        done = subprocess.run(
            ["scontrol", "requeue", job_id], capture_output=True, text=True, timeout=60
        )
    except (OSError, subprocess.TimeoutExpired) as err:
        return f"scontrol requeue {job_id} could not run ({err})"
    if done.returncode != 0:
        reason = (done.stderr or done.stdout).strip().splitlines()
        return f"scontrol requeue {job_id} failed: {reason[0] if reason else done.returncode}"
    return None


class SlurmRequeue(pl.Callback):
    """Turns SLURM's SIGUSR1 into a stop before the next step (:class:`RequeueRequested`,
    raised on every process at the same global step). Not at the current step's end: Lightning
    logs a step's metrics after the callbacks' ``on_train_batch_end``, so its row would be lost."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: Any = None

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage == "fit":
            self._previous = signal.signal(REQUEUE_SIGNAL, self._note)

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage == "fit" and self._previous is not None:
            signal.signal(REQUEUE_SIGNAL, self._previous)
            self._previous = None

    def _note(self, signum: int, frame: FrameType | None) -> None:
        self.requested = True  # acted on between steps, never inside the handler

    def on_train_batch_start(self, trainer: pl.Trainer, *args: Any) -> None:
        if trainer.strategy.reduce_boolean_decision(self.requested, all=False):
            raise RequeueRequested(f"SIGUSR1 (SLURM) at global step {trainer.global_step}")
