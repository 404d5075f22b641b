"""The run folder of a training: what an earlier run left there, and what a new one may do.

Training into a folder that holds another run is refused unless it resumes that run (its
``ckpt_path`` lies inside) or ``overwrite=true`` deletes it first; a resumed run continues its
``metrics.csv`` (:class:`ContinuedCSVLogger`) and records its config in
``.hydra/resume-<time>/`` (:class:`KeepRunRecord`), so the first run's record is kept.

``ckpt_path=last`` makes one command line right for a first start and for every restart
(torchrun's ``--max-restarts``, a SLURM requeue): it resumes from the folder's own
``checkpoints/last.ckpt`` when there is one, and starts afresh otherwise, replacing the logs of
an earlier start that stopped before its first checkpoint (their steps are trained again).
"""

from __future__ import annotations

import csv
import io
import shutil
import time
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from lightning_fabric.loggers.logger import rank_zero_experiment
from omegaconf import DictConfig, OmegaConf, read_write
from pytorch_lightning.loggers import CSVLogger
from pytorch_lightning.loggers.csv_logs import ExperimentWriter
from pytorch_lightning.utilities import rank_zero_only

from segnet.outputs import write_text

# The run folder's parts written by training (configs/callbacks, configs/logger).
RUN_PARTS = ("checkpoints", "csv", "tensorboard")
RESUME_LAST = "last"


def previous_run(run_dir: str | Path) -> list[str]:
    """The checkpoints and metrics an earlier training left in ``run_dir`` (paths relative to
    it; [] if none). Hydra's ``.hydra/`` does not count (it is written before the task starts),
    nor do logger files of a run that stopped before logging any metric."""
    run_dir = Path(run_dir)
    found = [p for p in sorted((run_dir / "checkpoints").glob("*")) if p.is_file()]
    found += [p for p in [run_dir / "csv" / "metrics.csv"] if p.is_file()]
    return [str(p.relative_to(run_dir)) for p in found]


def resume_checkpoint(ckpt_path: str | None, run_dir: str | Path) -> str | None:
    """The checkpoint a fit resumes from: ``ckpt_path`` as given, except ``"last"``: the run
    folder's own ``checkpoints/last.ckpt`` if there is one, else None (a fresh start)."""
    if ckpt_path != RESUME_LAST:
        return ckpt_path
    last = Path(run_dir) / "checkpoints" / "last.ckpt"
    return str(last) if last.is_file() else None


def run_folder_state(run_dir: str | Path, ckpt_path: str | None, overwrite: bool) -> str:
    """What training may do with ``run_dir``, given what an earlier run left there:

    - "new": nothing there;
    - "resume": it continues that run (``ckpt_path`` inside ``run_dir``; ``last`` when the
      folder has a ``last.ckpt``);
    - "replace": ``overwrite=true`` over that run (which is not resumed), or ``last`` over a
      start that stopped before its first checkpoint;
    - "refuse": anything else, including ``overwrite=true`` with a ``ckpt_path`` inside it.
    """
    if not previous_run(run_dir):
        return "new"
    resumed = resume_checkpoint(ckpt_path, run_dir)
    inside = resumed is not None and Path(resumed).resolve().is_relative_to(Path(run_dir).resolve())
    if overwrite:
        return "refuse" if inside else "replace"
    if inside:
        return "resume"
    return "replace" if ckpt_path == RESUME_LAST else "refuse"


def replaces_run(cfg: DictConfig) -> bool:
    """Whether this training deletes an earlier run in its folder first (overwrite=true, or
    ckpt_path=last over a start that left no checkpoint)."""
    overwrite = bool(cfg.get("overwrite", False))
    return run_folder_state(cfg.output_dir, cfg.ckpt_path, overwrite) == "replace"


def delete_previous_run(run_dir: Path) -> None:
    """What an earlier training wrote into run_dir (overwrite=true); .hydra/ is Hydra's."""
    for part in RUN_PARTS:
        shutil.rmtree(run_dir / part, ignore_errors=True)


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
        path = Path(self.metrics_file_path)
        earlier = []
        if path.is_file():
            with open(path, newline="") as file:
                earlier = list(csv.DictReader(file))
        text = io.StringIO(newline="")
        writer = csv.DictWriter(text, fieldnames=self.metrics_keys)
        writer.writeheader()
        writer.writerows(earlier + self.metrics)
        write_text(path, text.getvalue())
        self.metrics = []


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


class KeepRunRecord(Callback):
    """Hydra callback (``hydra.callbacks`` in configs/train.yaml): Hydra writes ``.hydra/``
    into the run folder before the task starts, which would overwrite the record of an
    earlier run there. A resume writes its own into ``.hydra/resume-<time>/``; a run that
    will be refused writes none; other DDP ranks leave it to rank 0."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        run_dir = Path(str(OmegaConf.select(config, "hydra.run.dir")))
        state = run_folder_state(
            run_dir, config.get("ckpt_path"), bool(config.get("overwrite", False))
        )
        if rank_zero_only.rank != 0 or state == "refuse":
            subdir = None
        elif state == "resume":
            subdir = f".hydra/resume-{time.strftime('%Y-%m-%d_%H-%M-%S')}"
        else:
            return
        with read_write(config.hydra):
            config.hydra.output_subdir = subdir
