"""``init_from=PATH.ckpt``: start a new training run from another run's weights (fine-tuning).

Not a resume: the optimiser, the lr schedule and the step count start afresh, in the run's own
folder. The model is built exactly as a run without ``init_from`` builds it (same seed, the
trunk not downloaded: the checkpoint replaces it), then :func:`segnet.models.transfer.
transfer_weights` overwrites what the checkpoint has for it: equal tensors whole, the shared
classes' slices by name. Every DDP rank runs this on the same file, so all start equal.

With ``ckpt_path=last`` the same command serves the first start and every restart: once the
run folder holds a ``last.ckpt`` the run resumes from it and ``init_from`` is not applied again
(its weights are already in that checkpoint). An explicit ``ckpt_path`` with ``init_from`` is
refused: one run has one starting point.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from segnet.models import FCN
from segnet.models.transfer import transfer_weights
from segnet.runtime.checkpoint import CheckpointError, read_model_parts
from segnet.tasks.run_folder import RESUME_LAST, resume_checkpoint

TABLE_FILE = "init_from.txt"


def init_from_problems(cfg: DictConfig) -> list[str]:
    """Config lines refusing ``cfg.init_from``: not a segnet training checkpoint, another
    backbone, or an explicit ``ckpt_path`` too. Reads the checkpoint (weights_only=True)."""
    path = cfg.get("init_from")
    if path is None:
        return []
    if cfg.get("ckpt_path") not in (None, RESUME_LAST):
        return [
            f"init_from={path!r} and ckpt_path={cfg.ckpt_path!r} both set: init_from starts a "
            "new run from another run's weights, ckpt_path resumes a run; choose one"
        ]
    if resume_checkpoint(cfg.ckpt_path, cfg.output_dir) is not None:
        return []  # a restart: the run's last.ckpt already holds what init_from gave it
    try:
        hparams, _ = read_training_checkpoint(Path(path))
    except CheckpointError as err:
        return [f"init_from: {err}"]
    if hparams["backbone"] != cfg.model.backbone:
        return [
            f"init_from {path} holds a {hparams['backbone']} model but the config builds "
            f"model.backbone={cfg.model.backbone!r}; set model.backbone={hparams['backbone']} "
            "(only a model of the same backbone can be fine-tuned)"
        ]
    return []


def read_training_checkpoint(path: Path) -> tuple[dict, dict]:
    """:func:`~segnet.runtime.checkpoint.read_model_parts`, and the class names fine-tuning
    matches by.

    Raises:
        CheckpointError: what ``read_model_parts`` raises, or no ``class_names``.
    """
    hparams, weights = read_model_parts(path)
    if "class_names" not in hparams:
        raise CheckpointError(
            f"checkpoint {path} names no classes (saved by an older segnet); fine-tuning "
            "matches classes by name, so it needs a .ckpt saved by this scripts/train.py"
        )
    return hparams, weights


def apply_init_from(model: FCN, path: Path, class_names: list[str], run_dir: Path | None) -> str:
    """Transfer ``path``'s weights into ``model`` (built for ``class_names``) and return a
    summary of what was done (tensors copied whole counted per module); the whole table,
    tensor by tensor, goes to ``run_dir/init_from.txt`` unless ``run_dir`` is None (the other
    DDP ranks)."""
    hparams, weights = read_training_checkpoint(path)
    report = transfer_weights(model, weights, [str(n) for n in hparams["class_names"]], class_names)
    source = f"{hparams['variant']} {hparams['backbone']}, {hparams['num_classes']} classes"
    header = f"init_from {path} ({source})"
    if run_dir is not None:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / TABLE_FILE).write_text(f"{header}\n{report.table()}\n")
        header += f"; every tensor in {run_dir / TABLE_FILE}"
    return f"{header}\n{report.table(whole=False)}"
