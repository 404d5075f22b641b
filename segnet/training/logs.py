"""Logs that read as one run however often it was stopped and resumed.

A resumed fit continues ``metrics.csv`` and the TensorBoard events of its run folder, with
every step logged once, at its global step:

- **the step**: Lightning logs at ``fit_loop.epoch_loop._batches_that_stepped`` and, restoring a
  checkpoint, adds one to it on the assumption that the checkpoint was saved at a batch's end.
  A checkpoint saved as a batch starts (a crash, Ctrl-C or SIGTERM met there) holds the right
  count already, and the resumed run would log step ``k + 1`` for step ``k``, leaving a gap.
  :class:`ContinuousLogs` sets it to the global step;
- **no repeat**: steps logged after the checkpoint a run resumes from are trained again, so
  their rows (and events) are dropped first: CSV rows from that step on are removed, and
  TensorBoard is told to purge them (its ``SessionLog.START`` at that step);
- **no gap**: the logs are flushed at every checkpoint save, so a kill (no handler runs) loses
  at most the rows after the checkpoint, which the resumed run writes again.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from lightning_fabric.loggers.logger import rank_zero_experiment
from pytorch_lightning.loggers import CSVLogger, TensorBoardLogger
from pytorch_lightning.loggers.csv_logs import ExperimentWriter
from tensorboard.compat.proto.event_pb2 import Event, SessionLog

from segnet.outputs import write_text


class _ContinuedWriter(ExperimentWriter):
    """Lightning's CSV writer, except that an existing metrics.csv is continued (rows kept,
    header and columns taken over) where Lightning deletes it."""

    def _check_log_dir_exists(self) -> None:
        if self._fs.isfile(self.metrics_file_path):
            with self._fs.open(self.metrics_file_path, "r", newline="") as file:
                self.metrics_keys = next(csv.reader(file), [])

    def save(self) -> None:
        # The whole file, written atomically, the rows kept until then. Lightning appends, and
        # truncates and rewrites the file when a column appears, in steps a Ctrl-C can split:
        # that left one headerless row of the whole history, or rows wider than the header.
        if not self.metrics:
            return
        self._record_new_keys()
        self._write(self._rows_on_disk() + self.metrics)
        self.metrics = []

    def drop_from(self, step: int) -> None:
        rows = self._rows_on_disk()
        kept = [row for row in rows if not row.get("step") or int(row["step"]) < step]
        if len(kept) < len(rows):
            self._write(kept)

    def _rows_on_disk(self) -> list[dict[str, Any]]:
        path = Path(self.metrics_file_path)
        if not path.is_file():
            return []
        with open(path, newline="") as file:
            return list(csv.DictReader(file))

    def _write(self, rows: list[dict[str, Any]]) -> None:
        text = io.StringIO(newline="")
        writer = csv.DictWriter(text, fieldnames=self.metrics_keys)
        writer.writeheader()
        writer.writerows(rows)
        write_text(Path(self.metrics_file_path), text.getvalue())


class ContinuedCSVLogger(CSVLogger):
    """``CSVLogger`` whose ``metrics.csv`` survives a resume into the same run folder.

    Lightning's writer deletes an existing ``metrics.csv``; this one appends to it. Safe
    because :func:`train` refuses a folder holding another run, or deletes that run first
    (``overwrite=true``): an existing file can only be the resumed run's own history.
    """

    @property
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _ContinuedWriter(log_dir=self.log_dir)
        return self._experiment

    def drop_from(self, step: int) -> None:
        """Remove the rows of ``step`` and later from metrics.csv (a resume at ``step``)."""
        self.experiment.drop_from(step)


class ContinuousLogs(pl.Callback):
    """Keeps a resumed run's logs continuous (see the module docstring). Put it first among
    the callbacks: the log step must be set before any other callback logs at a batch start."""

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        step = trainer.global_step
        if step == 0 or not trainer.is_global_zero:
            return
        for logger in trainer.loggers:
            if isinstance(logger, ContinuedCSVLogger):
                logger.drop_from(step)
            elif isinstance(logger, TensorBoardLogger):
                start = SessionLog(status=SessionLog.START)
                logger.experiment.file_writer.add_event(Event(step=step, session_log=start))

    def on_train_batch_start(self, trainer: pl.Trainer, *args: Any) -> None:
        # One optimiser: each batch that steps it is one global step (accumulation included).
        trainer.fit_loop.epoch_loop._batches_that_stepped = trainer.global_step

    def on_save_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        if not trainer.is_global_zero:
            return
        for logger in trainer.loggers:
            logger.save()
            if isinstance(logger, TensorBoardLogger):
                logger.experiment.flush()
