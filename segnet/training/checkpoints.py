"""How training writes checkpoints: whole or not at all, and ``last.ckpt`` often enough.

- :class:`AtomicCheckpointIO` writes every checkpoint (best, last) to a temporary file beside
  it, fsync'ed, then renamed over the old one (:mod:`segnet.outputs`): a kill or a full disk
  during a save leaves the previous checkpoint intact. Lightning's own writer stages the bytes
  in the system's temporary folder and moves them, which on another filesystem is a copy
  that a kill can cut short.
- :class:`LastCheckpoint` keeps ``last.ckpt``: after every validation, every ``every_n_steps``
  global steps (mid-epoch too, so a kill loses at most that many steps), and when training
  stops on an exception (Ctrl-C, SIGTERM, a crash), unless no step was trained since the fit
  started or last saved.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from lightning_fabric.plugins import TorchCheckpointIO
from pytorch_lightning.callbacks import ModelCheckpoint

from segnet.outputs import write_together


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint writer, each file written whole or not at all."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any = None
    ) -> None:
        if storage_options is not None:
            raise TypeError("AtomicCheckpointIO takes no storage_options")
        write_together([(Path(path), lambda f: torch.save(checkpoint, f))])


class LastCheckpoint(ModelCheckpoint):
    """``<dirpath>/last.ckpt``: the newest state of the run, to resume from.

    Saved after every validation (as a ``ModelCheckpoint`` without a monitor), at the end of
    every ``every_n_steps``-th global step, and on an exception. The exception's message is not
    logged: :func:`segnet.tasks.train.train` says what stopped the run, once, with the resume
    command.

    Args:
        dirpath: the run's checkpoints folder.
        every_n_steps: global steps between mid-epoch saves (None: after validations only).
    """

    def __init__(self, dirpath: str, every_n_steps: int | None = None) -> None:
        valid = isinstance(every_n_steps, int) and not isinstance(every_n_steps, bool)
        if every_n_steps is not None and not (valid and every_n_steps >= 1):
            raise ValueError(f"every_n_steps must be an integer >= 1 or null: {every_n_steps!r}")
        super().__init__(
            dirpath=dirpath,
            filename="last",
            save_top_k=1,
            save_on_exception=True,
            enable_version_counter=False,
        )
        self.every_n_steps = every_n_steps

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # A resumed fit starts from a checkpoint holding this step: a stop before the next
        # step has nothing new to save.
        self._last_global_step_saved = trainer.global_step

    def on_train_batch_end(self, trainer: pl.Trainer, *args: Any) -> None:
        step = trainer.global_step
        if (
            self.every_n_steps is not None
            and step % self.every_n_steps == 0
            and step != self._last_global_step_saved
        ):
            self._save_checkpoint(trainer, self._last_path(trainer))

    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        if self._should_save_on_exception(trainer):
            self._save_checkpoint(trainer, self._last_path(trainer))

    def _last_path(self, trainer: pl.Trainer) -> str:
        return self.format_checkpoint_name(metrics=self._monitor_candidates(trainer))
