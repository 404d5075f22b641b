"""Checks on a composed training config, run before anything is built or trained.

Each bad value gives one line naming its config key, the value and what to do; all lines are
raised together as one :class:`ConfigError` so a user fixes everything in one go.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from omegaconf import DictConfig

from segnet.data.voc import DataError, require_voc_dir
from segnet.models import BACKBONES, VARIANTS
from segnet.system import OPTIMIZERS

PRECISIONS = ("32", "bf16-mixed", "16-mixed")

# The largest image side of each dataset (VOC 2012 and SBD images are at most 500 x 500; the
# demo generator draws sides in 96..256). A crop side beyond largest * max scale would only
# ever hold padding there: every batch pays for pixels that carry no label.
VOC_MAX_SIDE = 500
DEMO_MAX_SIDE = 256


class ConfigError(ValueError):
    """An invalid configuration; the message lists every problem by its config key."""


def check_train_config(cfg: DictConfig) -> None:
    """Raise ConfigError listing every bad value of a ``configs/train.yaml`` composition."""
    problems = [
        *_model_problems(cfg.model),
        *_optim_problems(cfg.optim),
        *_data_problems(cfg.data),
        *_run_problems(cfg),
    ]
    if problems:
        raise ConfigError(_message(problems))


def check_num_classes(model_num_classes: int | None, data_num_classes: int) -> int:
    """The model's class count: the data's, and ConfigError if the config asks for another."""
    if model_num_classes is not None and model_num_classes != data_num_classes:
        raise ConfigError(
            _message(
                [
                    f"model.num_classes={model_num_classes} does not match the data's "
                    f"{data_num_classes} classes (data.class_names); leave model.num_classes "
                    "null to follow the data"
                ]
            )
        )
    return data_num_classes


def _message(problems: Sequence[str]) -> str:
    return "invalid configuration (nothing was run):\n" + "\n".join(f"  - {p}" for p in problems)


def _model_problems(model: DictConfig) -> list[str]:
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
    return problems


def _optim_problems(optim: DictConfig) -> list[str]:
    problems = []
    if optim.optimizer not in OPTIMIZERS:
        problems.append(
            f"optim.optimizer={optim.optimizer!r} is unknown; choose one of {', '.join(OPTIMIZERS)}"
        )
    if not isinstance(optim.lr, int | float) or not optim.lr > 0:
        problems.append(f"optim.lr={optim.lr!r} must be a number > 0")
    return problems


def _data_problems(data: DictConfig) -> list[str]:
    problems = []
    crop, scale = data.get("crop_size"), data.get("scale_range")
    if data.get("demo"):
        largest, what = DEMO_MAX_SIDE, "demo images"
    elif data.get("class_names") is None:
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
    if not data.get("demo") and not data.get("download"):
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
    if cfg.ckpt_path is not None and not Path(cfg.ckpt_path).is_file():
        problems.append(f"ckpt_path={cfg.ckpt_path!r} does not exist (resume from a last.ckpt)")
    if cfg.trainer.get("max_epochs", -1) == -1 and cfg.trainer.get("max_steps", -1) == -1:
        problems.append(
            "trainer.max_epochs and trainer.max_steps are both -1: the poly lr schedule needs "
            "a finite run; set one of them"
        )
    return problems


def _is_pair(value: object, kind: type) -> bool:
    return (
        isinstance(value, Sequence)
        and not isinstance(value, str)
        and len(value) == 2
        and all(isinstance(v, kind) and not isinstance(v, bool) for v in value)
    )


def _plain(value: object) -> object:
    """ListConfig prints as a list."""
    return list(value) if isinstance(value, Sequence) and not isinstance(value, str) else value
