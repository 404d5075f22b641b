"""Checks on a composed training config, run before anything is built or trained.

Each bad value gives one line naming its config key, the value and what to do; all lines are
raised together as one :class:`ConfigError` so a user fixes everything in one go. Values that
name files are checked on disk: the dataset root, the checkpoint to resume from (read with
``weights_only=True`` and compared with the model the config builds) and the run folder, which
must not hold another run (it would be overwritten) unless ``overwrite=true``; those two are
:func:`segnet.tasks.run_folder.resume_problems`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import torch
from omegaconf import DictConfig

from segnet.data.classes import VOC_CLASSES
from segnet.data.images import DataError
from segnet.data.voc import require_voc_dir
from segnet.models import BACKBONES, VARIANTS
from segnet.tasks.cli import ConfigError
from segnet.tasks.init_from import init_from_problems
from segnet.tasks.run_folder import resume_problems
from segnet.training.system import OPTIMIZERS

PRECISIONS = ("32", "bf16-mixed", "16-mixed")

# The largest image side of each dataset (VOC 2012 and SBD images are at most 500 x 500; the
# demo generator draws sides in 96..256). A crop side beyond largest * max scale would only
# ever hold padding there: every batch pays for pixels that carry no label.
VOC_MAX_SIDE = 500
DEMO_MAX_SIDE = 256


def check_train_config(cfg: DictConfig) -> None:
    """Raise ConfigError listing every bad value of a ``configs/train.yaml`` composition."""
    problems = [
        *_model_problems(cfg.model, _data_num_classes(cfg.data)),
        *_optim_problems(cfg.optim),
        *_data_problems(cfg.data),
        *_run_problems(cfg),
    ]
    if problems:
        raise invalid_configuration(problems)


def check_num_classes(model_num_classes: int | None, data_num_classes: int) -> int:
    """The model's class count: the data's, and ConfigError if the config asks for another."""
    if model_num_classes is not None and model_num_classes != data_num_classes:
        raise invalid_configuration(
            [
                f"model.num_classes={model_num_classes} does not match the data's "
                f"{data_num_classes} classes (data.class_names); leave model.num_classes "
                "null to follow the data"
            ]
        )
    return data_num_classes


def invalid_configuration(problems: Sequence[str]) -> ConfigError:
    """The error listing ``problems``, one line each, under the header every bad config gets."""
    lines = "\n".join(f"  - {p}" for p in problems)
    return ConfigError(f"invalid configuration (nothing was run):\n{lines}")


def _is_folder_data(data: DictConfig) -> bool:
    """data=folder: its module checks its own folders, classes.txt and pairs."""
    return str(data.get("_target_", "")).endswith(".FolderDataModule")


def _data_num_classes(data: DictConfig) -> int | None:
    """The data's class count; None where only the data module can tell (classes.txt)."""
    names = data.get("class_names")
    if names is not None:
        return len(names)
    return None if _is_folder_data(data) else len(VOC_CLASSES)


def _model_problems(model: DictConfig, num_classes: int | None) -> list[str]:
    problems = []
    if model.backbone not in BACKBONES:
        problems.append(
            f"model.backbone={model.backbone!r} is not a known backbone; "
            f"choose one of {', '.join(BACKBONES)}"
        )
    if model.variant not in VARIANTS:
        problems.append(
            f"model.variant={model.variant!r} is not an FCN variant; choose one of "
            f"{', '.join(VARIANTS)} (or the model group: model=fcn8s)"
        )
    weights = model.get("class_weights")
    if (
        weights is not None
        and num_classes is not None
        and not (
            _is_sequence(weights)
            and len(weights) == num_classes
            and all(_is_number(w) and w >= 0 for w in weights)
            and any(w > 0 for w in weights)
        )
    ):
        problems.append(
            f"model.class_weights={_plain(weights)} must be {num_classes} numbers >= 0, one per "
            "class (data.class_names), not all 0; or null for an unweighted loss"
        )
    return problems


def _optim_problems(optim: DictConfig) -> list[str]:
    problems = []
    if optim.optimizer not in OPTIMIZERS:
        problems.append(
            f"optim.optimizer={optim.optimizer!r} is unknown; choose one of {', '.join(OPTIMIZERS)}"
        )
    if not _is_number(optim.lr) or not optim.lr > 0:
        problems.append(f"optim.lr={optim.lr!r} must be a number > 0")
    # torch's optimisers refuse negative values, but only once training has started.
    for key in ("momentum", "weight_decay", "backbone_lr_mult", "poly_power"):
        value = optim.get(key, 0)
        if not _is_number(value) or not value >= 0:
            problems.append(f"optim.{key}={value!r} must be a number >= 0")
    warmup = optim.get("warmup_iters", 0)
    if not isinstance(warmup, int) or isinstance(warmup, bool) or warmup < 0:
        problems.append(f"optim.warmup_iters={warmup!r} must be an integer >= 0")
    factor = optim.get("warmup_factor", 1.0)
    if not _is_number(factor) or not 0 < factor <= 1:
        problems.append(f"optim.warmup_factor={factor!r} must be a number in (0, 1]")
    return problems


def _data_problems(data: DictConfig) -> list[str]:
    problems = []
    crop, scale = data.get("crop_size"), data.get("scale_range")
    if data.get("demo"):
        largest, what = DEMO_MAX_SIDE, "demo images"
    elif data.get("class_names") is None and not _is_folder_data(data):
        largest, what = VOC_MAX_SIDE, "VOC images"
    else:
        largest = None  # a custom dataset: its image sizes are unknown here
    valid_crop = _is_pair(crop, int) and all(v > 0 for v in crop)
    if not valid_crop:
        problems.append(f"data.crop_size={_plain(crop)} must be two positive integers [h, w]")
    elif largest is not None and _is_pair(scale, int | float):
        allowed = int(largest * max(scale))
        if max(crop) > allowed:
            problems.append(
                f"data.crop_size={_plain(crop)} is larger than allowed: {what} are at most "
                f"{largest} px a side, at most {allowed} px after data.scale_range="
                f"{_plain(scale)}, so such crops would be mostly padding; use sides <= {allowed}"
            )
    if not data.get("demo") and not data.get("download") and not _is_folder_data(data):
        try:
            require_voc_dir(data.root, str(data.get("year", "2012")))
        except DataError as err:
            problems.append(
                f"data.root={data.root!r}: {err}. Or set data.download=true (needs internet), "
                "or train on the generated demo data: experiment=demo"
            )
        if data.get("trainaug") and not (Path(data.root) / "SBD").is_dir():
            problems.append(
                f"data=voc_aug needs SBD in {Path(data.root) / 'SBD'}, which does not exist; "
                "extract SBD there or set data.download=true"
            )
    return problems


def _run_problems(cfg: DictConfig) -> list[str]:
    problems = []
    if str(cfg.precision) not in PRECISIONS:
        problems.append(f"precision={cfg.precision!r} is unknown; choose one of {PRECISIONS}")
    if cfg.trainer.get("max_epochs", -1) == -1 and cfg.trainer.get("max_steps", -1) == -1:
        problems.append(
            "trainer.max_epochs and trainer.max_steps are both -1: the poly lr schedule needs "
            "a finite run; set one of them"
        )
    accelerator = str(cfg.trainer.get("accelerator", "auto"))
    if accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        problems.append(
            f"trainer.accelerator={accelerator} but this machine has no CUDA GPU; use "
            "trainer=cpu (or trainer.accelerator=auto)"
        )
    problems += _callback_problems(cfg.get("callbacks") or {})
    problems += resume_problems(cfg, _data_num_classes(cfg.data))
    problems += init_from_problems(cfg)
    return problems


def _callback_problems(callbacks: DictConfig) -> list[str]:
    problems = []
    patience = (callbacks.get("early_stopping") or {}).get("patience")
    if patience is not None and not _whole(patience, 1):
        problems.append(
            f"callbacks.early_stopping.patience={patience!r} must be a whole number >= 1 "
            "(validations without improvement) or null (no early stopping)"
        )
    samples = callbacks.get("samples") or {}
    for key, minimum, meaning in [
        ("num", 0, "val images per picture, 0 for no pictures"),
        ("every_n_validations", 1, "validations between pictures"),
    ]:
        if key in samples and not _whole(samples[key], minimum):
            problems.append(
                f"callbacks.samples.{key}={samples[key]!r} must be a whole number >= {minimum} "
                f"({meaning})"
            )
    return problems


def _whole(value: object, minimum: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _is_sequence(value: object) -> bool:
    return isinstance(value, Sequence) and not isinstance(value, str)


def _is_pair(value: object, kind: type) -> bool:
    return (
        _is_sequence(value)
        and len(value) == 2
        and all(isinstance(v, kind) and not isinstance(v, bool) for v in value)
    )


def _plain(value: object) -> object:
    """ListConfig prints as a list."""
    return list(value) if _is_sequence(value) else value
