"""The run folder of a training: what an earlier run left there, and what a new one may do.

Training into a folder that holds another run is refused unless it resumes that run (its
``ckpt_path`` lies inside) or ``overwrite=true`` deletes it first; a resumed run continues its
logs (:mod:`segnet.training.logs`) and records its config in
``.hydra/resume-<time>/`` (:class:`KeepRunRecord`), so the first run's record is kept.

``ckpt_path=last`` makes one command line right for a first start and for every restart
(torchrun's ``--max-restarts``, a SLURM requeue): it resumes from the folder's own
``checkpoints/last.ckpt`` when there is one, and starts afresh otherwise, replacing the logs of
an earlier start that stopped before its first checkpoint (their steps are trained again).

:func:`resume_problems` is the training config check's part on these: the checkpoint a run
resumes must be a training checkpoint of the model the config builds, and a folder holding
another run is refused.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf, read_write
from pytorch_lightning.utilities import rank_zero_only

from segnet.models import ARCHITECTURE_KEYS
from segnet.runtime.checkpoint import CheckpointError, read_checkpoint

# The run folder's parts written by training (configs/callbacks, configs/logger).
RUN_PARTS = ("checkpoints", "csv", "tensorboard", "samples", "report")
RUN_FILES = ("report.md",)  # segnet.training.report
RESUME_LAST = "last"
# What Lightning restores on resume besides the weights (absent from weights-only saves).
RESUME_KEYS = ("optimizer_states", "lr_schedulers", "loops")


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


def resume_problems(cfg: DictConfig, data_classes: int | None) -> list[str]:
    """Config lines refusing what a training config would continue from or write over: the
    checkpoint it resumes (a segnet training checkpoint of the model the config builds, for
    ``data_classes`` classes) and a run folder holding another run."""
    problems = []
    resumed = resume_checkpoint(cfg.ckpt_path, cfg.output_dir)
    if resumed is not None:
        problems += _checkpoint_problems(cfg, Path(resumed), data_classes)
    # Other ranks of a DDP run share rank 0's folder, which rank 0 has checked.
    if rank_zero_only.rank == 0:
        problems += _run_folder_problems(cfg)
    return problems


def _checkpoint_problems(cfg: DictConfig, path: Path, data_classes: int | None) -> list[str]:
    """The checkpoint at ``path`` (from ckpt_path) must be a segnet training checkpoint of the
    model this config builds."""
    if not path.is_file():
        return [f"ckpt_path={cfg.ckpt_path!r} does not exist (resume from a last.ckpt)"]
    try:
        checkpoint = read_checkpoint(path)
    except CheckpointError as err:
        return [f"ckpt_path: {err}"]
    hparams = checkpoint.get("hyper_parameters")
    if not isinstance(hparams, dict) or any(key not in hparams for key in ARCHITECTURE_KEYS):
        return [f"ckpt_path: checkpoint {path} was not saved by scripts/train.py (no FCN settings)"]
    missing = [key for key in RESUME_KEYS if key not in checkpoint]
    if missing:
        return [
            f"ckpt_path: checkpoint {path} holds no {', '.join(missing)} (a weights-only save), "
            "so training cannot resume from it"
        ]
    # num_classes follows the data (checked below); the rest of the architecture is the config's.
    settings = [
        (f"model.{key}", cfg.model[key], hparams[key])
        for key in ARCHITECTURE_KEYS
        if key != "num_classes"
    ]
    settings.append(("optim.optimizer", cfg.optim.optimizer, hparams.get("optimizer", "sgd")))
    problems = [
        f"ckpt_path {path} was saved with {key}={saved!r} but the config has {key}={ours!r}; "
        "resume with the run's own settings"
        for key, ours, saved in settings
        if ours != saved
    ]
    if data_classes is not None and hparams["num_classes"] != data_classes:
        problems.append(
            f"ckpt_path {path} was saved for {hparams['num_classes']} classes but the data has "
            f"{data_classes} (data.class_names); resume on the run's own data"
        )
    return problems


def _run_folder_problems(cfg: DictConfig) -> list[str]:
    run_dir, overwrite = Path(cfg.output_dir), bool(cfg.get("overwrite", False))
    if run_folder_state(run_dir, cfg.ckpt_path, overwrite) != "refuse":
        return []
    if overwrite:
        return [
            f"overwrite=true would delete ckpt_path={cfg.ckpt_path!r}, which lies in the "
            f"run folder {run_dir}; drop overwrite=true to resume that run"
        ]
    found = previous_run(run_dir)
    last = run_dir / "checkpoints" / "last.ckpt"
    resume = f"resume it with ckpt_path={last} (or ckpt_path=last), " if last.is_file() else ""
    shown = ", ".join(found[:3]) + (", ..." if len(found) > 3 else "")
    return [
        f"the run folder {run_dir} (hydra.run.dir) already holds a training run ({shown}); "
        f"{resume}replace it with overwrite=true, or train into another hydra.run.dir"
    ]
