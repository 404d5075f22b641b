"""Train an FCN from a composed ``configs/train.yaml``: the work behind ``scripts/train.py``.

Everything is built with ``hydra.utils.instantiate`` from plain config values: the data module
(``cfg.data``), the LightningModule (``cfg.model`` plus the ``cfg.optim`` values), the Trainer
(``cfg.trainer``) with its callbacks and loggers. The config is checked first, so a bad value
stops the run before any data is read or any weight is built.

Interrupted runs: ``last.ckpt`` is written whole (:mod:`segnet.training.checkpoints`) after
every validation, every ``callbacks.last_checkpoint.every_n_steps`` steps and when training
stops on Ctrl-C, SIGTERM, SLURM's SIGUSR1 (:mod:`segnet.training.requeue`: saved, requeued) or
an exception. ``ckpt_path=last`` resumes from the run folder's own ``last.ckpt`` if there is one
(the same command for the first start and every restart), at the global step it stopped at,
with the same data (:mod:`segnet.data.resumable`) and continued logs
(:mod:`segnet.training.logs`); :mod:`segnet.tasks.run_folder` decides whether a folder holding
another run is refused or, with ``overwrite=true``, replaced.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import hydra
import pytorch_lightning as pl
import torch
from lightning_fabric.plugins.environments import SLURMEnvironment
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import ModelCheckpoint, ProgressBar
from pytorch_lightning.utilities import rank_zero_only
from pytorch_lightning.utilities.exceptions import SIGTERMException

from segnet.outputs import remove_stale_temporaries
from segnet.runtime.checkpoint import read_checkpoint
from segnet.tasks.cli import EXIT_TERMINATED, one_line
from segnet.tasks.config import check_num_classes, check_train_config, invalid_configuration
from segnet.tasks.distributed import restart_problem
from segnet.tasks.init_from import apply_init_from
from segnet.tasks.run_folder import delete_previous_run, replaces_run, resume_checkpoint
from segnet.training.checkpoints import AtomicCheckpointIO
from segnet.training.logs import ContinuousLogs
from segnet.training.requeue import RequeueRequested, SlurmRequeue, requeue, slurm_job_id
from segnet.training.system import SCORES, SegmentationSystem


def train(cfg: DictConfig) -> dict[str, Any]:
    """Fit, then report the best checkpoint.

    Returns (on global rank 0; other ranks get only the paths):
        ``{"best_checkpoint": path, "last_checkpoint": path, "global_step": int,
        "val": {"miou", "pixel_acc", "mean_acc", "fw_iou", "per_class_iou",
        "absent_classes", "confmat", "epoch", "global_step"}}`` where "val" holds the
        validation metrics the best checkpoint was saved with.

    Raises:
        ConfigError: a bad config value, checkpoint to resume from, run folder or training set
            size (before anything is trained or written).
        ValueError: bad data met during training (one line, with the resume command).
        KeyboardInterrupt: Ctrl-C (``last.ckpt`` saved, the resume command printed).
        SystemExit(143): SIGTERM, or SIGUSR1 under SLURM (saved; requeued).
    """
    check_train_config(cfg)
    if (problem := restart_problem()) is not None:
        _echo(f"note: {problem}")
    try:
        datamodule = hydra.utils.instantiate(cfg.data)
    except ValueError as err:  # the data module's own argument checks
        raise invalid_configuration([f"data: {err}"]) from err
    num_classes = check_num_classes(cfg.model.num_classes, datamodule.num_classes)
    _echo(OmegaConf.to_yaml(cfg, resolve=True))

    # First: the log step is set before any other callback logs at a batch start.
    callbacks = [ContinuousLogs(), *_instantiate_all(cfg.callbacks)]
    plugins = [AtomicCheckpointIO()]
    if SLURMEnvironment.detect():
        callbacks.append(SlurmRequeue())
        plugins.append(SLURMEnvironment(auto_requeue=False))
    if not cfg.trainer.get("enable_progress_bar", True):
        # The switch wins over the configured bar (Lightning refuses the pair).
        callbacks = [cb for cb in callbacks if not isinstance(cb, ProgressBar)]
    trainer: pl.Trainer = hydra.utils.instantiate(
        cfg.trainer,
        callbacks=callbacks,
        logger=_instantiate_all(cfg.logger),
        plugins=plugins,
        sync_batchnorm=_sync_batchnorm(cfg.trainer),
    )
    if trainer.is_global_zero:
        _check_training_set(datamodule, trainer.world_size)
    pl.seed_everything(cfg.seed, workers=True)
    system: SegmentationSystem = hydra.utils.instantiate(
        cfg.model,
        **OmegaConf.to_container(cfg.optim, resolve=True),
        num_classes=num_classes,
        class_names=datamodule.class_names,
        class_colours=datamodule.class_colours,
        # init_from's weights replace the trunk's: no ImageNet download.
        **({"pretrained": False} if cfg.get("init_from") else {}),
    )
    if cfg.compile:
        # In place: the state dict keeps its "model." keys (no "_orig_mod." wrapper).
        system.model.compile()
    ckpt_path = resume_checkpoint(cfg.ckpt_path, cfg.output_dir)
    if trainer.is_global_zero:
        if replaces_run(cfg):
            why = "overwrite=true" if cfg.get("overwrite") else "ckpt_path=last, no checkpoint"
            _echo(f"{why}: deleting the previous run's outputs in {cfg.output_dir}")
            delete_previous_run(Path(cfg.output_dir))
        remove_stale_temporaries(Path(cfg.output_dir) / "checkpoints")  # of a killed save
    if cfg.get("init_from") and ckpt_path is None:  # a restart resumes its own last.ckpt
        run_dir = Path(cfg.output_dir) if trainer.is_global_zero else None
        table = apply_init_from(
            system.model, Path(cfg.init_from), system.hparams.class_names, run_dir
        )
        _echo(table)
    # Read now: a run resumed into its own folder rewrites that checkpoint.
    resumed_at = None if ckpt_path is None else read_checkpoint(Path(ckpt_path))["global_step"]
    if resumed_at is not None:
        _echo(f"resuming from {ckpt_path} at global step {resumed_at}")
        datamodule.resume_at(resumed_at)
    try:
        trainer.fit(system, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
    except SIGTERMException as stop:
        _echo_stopped(trainer, "SIGTERM")
        raise SystemExit(EXIT_TERMINATED) from stop
    except RequeueRequested as stop:
        _echo_stopped(trainer, "SLURM's SIGUSR1")
        _requeue_once(trainer)
        raise SystemExit(EXIT_TERMINATED) from stop
    except SystemExit as stop:
        if not isinstance(stop.__context__, KeyboardInterrupt):
            raise
        # Lightning turns Ctrl-C into exit status 1; the CLI's status for it is 130.
        _echo_stopped(trainer, "Ctrl-C")
        raise KeyboardInterrupt from stop
    except (ValueError, OSError) as err:  # bad data or a full disk, met mid-run: one line
        raise ValueError(f"{one_line(err)}{_resume_hint(trainer)}") from err
    except Exception as err:
        _echo_stopped(trainer, type(err).__name__)
        raise
    if resumed_at is not None:
        _require_some_training(ckpt_path, cfg, resumed_at, trainer.global_step)
    return _report(trainer)


def _require_some_training(
    ckpt_path: str, cfg: DictConfig, resumed_at: int, global_step: int
) -> None:
    """ValueError if a resumed fit took no step: its checkpoint had already reached the end
    the config sets (reporting the checkpoint's own run as this one's result would mislead)."""
    if global_step == resumed_at:
        raise ValueError(
            f"ckpt_path={ckpt_path} had already reached the end this config sets "
            f"(global step {global_step}, trainer.max_epochs={cfg.trainer.get('max_epochs')}, "
            f"trainer.max_steps={cfg.trainer.get('max_steps')}): nothing was trained; raise "
            "trainer.max_epochs or trainer.max_steps to train it further"
        )


def _check_training_set(datamodule: pl.LightningDataModule, world_size: int) -> None:
    """ConfigError if each process would get less than one training batch (all are dropped
    as incomplete). Prepares the data (the demo generates it) and builds the datasets."""
    datamodule.prepare_data()
    datamodule.setup("fit")
    images = len(datamodule.train_dataset)
    per_process = -(-images // world_size)  # the distributed sampler pads to equal shares
    if per_process < datamodule.batch_size:
        split = datamodule.train_set_name
        share = f", {per_process} per process on {world_size}" if world_size > 1 else ""
        raise invalid_configuration(
            [
                f"data.batch_size={datamodule.batch_size} is larger than the training set "
                f"({images} images in split {split!r}{share}): every batch would be incomplete and "
                f"dropped; use data.batch_size<={per_process}"
            ]
        )


def _sync_batchnorm(trainer_cfg: DictConfig) -> bool:
    """trainer.sync_batchnorm, except on CPU, where torch's SyncBatchNorm cannot run: DDP on
    CPU processes (gloo) then keeps per-process batch statistics."""
    wanted = bool(trainer_cfg.get("sync_batchnorm", False))
    accelerator = trainer_cfg.get("accelerator", "auto")
    on_gpu = accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())
    if wanted and not on_gpu:
        _echo("note: trainer.sync_batchnorm needs GPUs (torch's SyncBatchNorm); off on CPU")
    return wanted and on_gpu


def _instantiate_all(group: DictConfig | None) -> list[Any]:
    """The objects of a callbacks/logger group; an entry set to null is left out."""
    if group is None:
        return []
    return [hydra.utils.instantiate(node) for node in group.values() if node is not None]


def _report(trainer: pl.Trainer) -> dict[str, Any]:
    best, _ = _checkpoint_callbacks(trainer)
    result = {
        "best_checkpoint": best.best_model_path if best else None,
        "last_checkpoint": _last_path(trainer),
        "global_step": trainer.global_step,
    }
    if not trainer.is_global_zero or not result["best_checkpoint"]:
        return result
    checkpoint = torch.load(result["best_checkpoint"], map_location="cpu", weights_only=True)
    result["val"] = checkpoint.get("val_metrics")
    _echo(_summary(result))
    return result


def _checkpoint_callbacks(
    trainer: pl.Trainer,
) -> tuple[ModelCheckpoint | None, ModelCheckpoint | None]:
    """The callback keeping the best checkpoint (it has a monitor) and the one keeping the
    newest (no monitor; configs/callbacks/default.yaml)."""
    best = next((cb for cb in trainer.checkpoint_callbacks if cb.monitor), None)
    last = next((cb for cb in trainer.checkpoint_callbacks if not cb.monitor), None)
    return best, last


def _last_path(trainer: pl.Trainer) -> str | None:
    _, last = _checkpoint_callbacks(trainer)
    if last is None or last.dirpath is None:
        return None
    # Also written by on_exception, which does not record the path it saves to.
    path = os.path.join(last.dirpath, f"{last.filename}{last.FILE_EXTENSION}")
    return path if os.path.isfile(path) else None


def _summary(result: dict[str, Any]) -> str:
    val = result["val"] or {}
    lines = [f"best checkpoint: {result['best_checkpoint']}"]
    if val:
        lines[0] += f"  (epoch {val['epoch']}, global step {val['global_step']})"
        lines.append("  " + "  ".join(f"val/{name} {val[name]:.4f}" for name in SCORES))
        per_class = ", ".join(
            f"{name} {iou:.3f}" for name, iou in val["per_class_iou"].items() if iou is not None
        )
        lines.append(f"  per-class IoU: {per_class}")
        if val["absent_classes"]:
            lines.append(f"  absent from val (not averaged): {', '.join(val['absent_classes'])}")
    lines.append(f"last checkpoint: {result['last_checkpoint']}")
    return "\n".join(lines)


def _stopped(trainer: pl.Trainer, reason: str | None = None) -> str | None:
    """The line saying where training stopped (and why, given ``reason``) and the resume
    command, when there is a last.ckpt to resume from; else None."""
    last = _last_path(trainer)
    if last is None:
        return None
    by = "" if reason is None else f" by {reason}"
    step = trainer.global_step
    return f"training stopped{by} at global step {step}; resume with ckpt_path={last}"


def _echo_stopped(trainer: pl.Trainer, reason: str) -> None:
    if (text := _stopped(trainer, reason)) is not None:
        _echo(text)


def _resume_hint(trainer: pl.Trainer) -> str:
    text = _stopped(trainer)
    return "" if text is None else f" ({text})"


@rank_zero_only
def _requeue_once(trainer: pl.Trainer) -> None:
    """Ask SLURM to queue this job again (global rank 0 only), after last.ckpt was saved."""
    job = slurm_job_id()
    problem = "no SLURM job id in the environment" if job is None else requeue(job)
    if problem is None:
        _echo(f"requeued SLURM job {job}: it resumes from last.ckpt with the same command")
    else:
        _echo(f"not requeued: {problem}; submit the same command again to resume")


@rank_zero_only
def _echo(text: str) -> None:
    """Print once, from global rank 0 (DDP ranks all run this code)."""
    print(text, flush=True)


def train_command(cfg: DictConfig) -> int:
    """``scripts/train.py``: train and report the best checkpoint."""
    train(cfg)
    return 0
