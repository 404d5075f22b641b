"""The run folder of a training: what an earlier run left there, and what a new one may do.

Training into a folder that holds another run is refused unless it resumes that run (its
``ckpt_path`` lies inside) or ``overwrite=true`` deletes it first; a resumed run continues its
logs (:mod:`segnet.training.logs`) and records its config in
``.hydra/resume-<time>/`` (:class:`KeepRunRecord`), so the first run's record is kept.

``ckpt_path=last`` makes one command line right for a first start and for every restart
(torchrun's ``--max-restarts``, a SLURM requeue): it resumes from the folder's own
``checkpoints/last.ckpt`` when there is one, and starts afresh otherwise, replacing the logs of
an earlier start that stopped before its first checkpoint (their steps are trained again).
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf, read_write
from pytorch_lightning.utilities import rank_zero_only

# The run folder's parts written by training (configs/callbacks, configs/logger).
RUN_PARTS = ("checkpoints", "csv", "tensorboard", "samples", "report")
RUN_FILES = ("report.md",)  # segnet.training.report
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
    for name in RUN_FILES:
        (run_dir / name).unlink(missing_ok=True)


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
