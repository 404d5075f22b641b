"""Evaluate a checkpoint on a dataset split at full resolution.

    python scripts/evaluate.py ckpt_path=best.ckpt data=voc data.root=/data split=val
    torchrun --nproc_per_node=4 scripts/evaluate.py ckpt_path=best.ckpt ...   # several devices

Every image is predicted at its own size (batches hold images of one size, never padded), and
all pixels of the split go into ONE confusion matrix (label 255 ignored) from which the FCN
metrics are computed, never an average of per-batch scores. With several processes each
takes the images ``rank, rank + world, ...`` (no image repeated or dropped) and the matrices
are summed with an all-reduce, so the result equals a single-process run exactly.

Everything that can be checked is checked before the first prediction (device, checkpoint,
settings, dataset, output folder); the metrics are printed before they are written, so a
write that fails afterwards loses nothing that was computed.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import hydra
import numpy as np
import torch
import torch.distributed as dist
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader
from tqdm import tqdm

from segnet.data.images import DataError
from segnet.data.transforms import pad_collate
from segnet.metrics import confusion_counts, confusion_scores
from segnet.outputs import OutputError, check_output_dir, remove_stale_temporaries, write_together
from segnet.predict.predictor import image_size, size_batches
from segnet.tasks.cli import EXIT_OK, ConfigError
from segnet.tasks.configured_model import configured_segmenter
from segnet.tasks.distributed import (
    on_rank_zero,
    process_device,
    start_distributed,
    world_size,
)
from segnet.visualize import plot_confusion_matrix


def _output_dir(cfg: DictConfig) -> Path:
    if not cfg.get("output_dir"):
        raise ConfigError("output_dir is not set: give the folder for the evaluation's files")
    return Path(cfg.output_dir)


def _check_output_dir(out: Path, datamodule) -> None:
    """The output folder is usable and not inside the dataset (whose folders it would add to)."""
    dataset = Path(datamodule.dataset_dir).resolve()
    if out.resolve().is_relative_to(dataset):
        raise OutputError(f"output_dir={str(out)!r} lies inside the dataset {dataset}")
    check_output_dir(out)
    remove_stale_temporaries(out)


def evaluate(cfg: DictConfig) -> dict | None:
    """Run the configured evaluation (see configs/eval.yaml), print and write its report.

    Returns:
        The metrics dict (what metrics.json holds) on rank 0; None on the other ranks.

    Raises:
        ConfigError, ValueError: bad settings, device, or a checkpoint whose classes differ
            from the data's. CheckpointError: unreadable checkpoint.
        DataError: missing or bad data, a split file listing no image, or a split without a
            single labelled pixel (every mask pixel 255).
        OutputError: output_dir unusable (found before any prediction), or the files could
            not be written (after the metrics were printed; nothing is left half-written).
    """
    world = world_size()
    device = process_device(cfg.device, world)
    rank = start_distributed(device, world)
    try:
        return _evaluate(cfg, rank, world, device)
    finally:
        if world > 1:
            dist.destroy_process_group()


def _evaluate(cfg: DictConfig, rank: int, world: int, device: torch.device) -> dict | None:
    out = _output_dir(cfg)
    seg = configured_segmenter(cfg, device)
    datamodule = hydra.utils.instantiate(cfg.data)
    if datamodule.num_classes != seg.num_classes:
        raise ConfigError(
            f"model {cfg.ckpt_path} predicts {seg.num_classes} classes but the data has "
            f"{datamodule.num_classes} (data.class_names)"
        )
    predictor = seg.predictor
    on_rank_zero(datamodule.prepare_data, rank, world, device)  # e.g. generates the demo data
    # Under torch.distributed its sampler is the datamodule's unpadded one: this rank's share.
    reference = datamodule.eval_dataloader(cfg.split)
    indices = list(reference.sampler)
    # The Segmenter takes 8-bit images as decoded (it normalises inside, as for any file).
    dataset = reference.dataset.untransformed()
    on_rank_zero(lambda: _check_output_dir(out, datamodule), rank, world, device)

    sizes = [image_size(dataset.images[i]) for i in indices]
    limit = cfg.max_pixels if predictor.window is not None else None
    batches = [[indices[j] for j in b] for b in size_batches(sizes, cfg.batch_size, limit)]
    loader = DataLoader(
        dataset,
        batch_sampler=batches,
        collate_fn=pad_collate,  # batches hold one size: nothing is padded
        num_workers=datamodule.num_workers,
        pin_memory=device.type == "cuda",
    )
    num = seg.num_classes
    confmat = torch.zeros(num, num, dtype=torch.int64, device=device)
    bar = tqdm(total=len(indices), unit="img", desc=f"eval {cfg.split}", disable=rank != 0)
    for images, masks in loader:
        confmat += confusion_counts(predictor.predict(images), masks.to(device), num)
        bar.update(len(images))
    bar.close()
    if world > 1:
        dist.all_reduce(confmat)
    if confmat.sum() == 0:
        raise DataError(
            f"split {cfg.split!r} of {datamodule.dataset_dir}: none of "
            f"its {len(dataset)} images has a labelled pixel "
            "(every mask pixel is 255, ignore): there is nothing to score"
        )
    if rank != 0:
        return None
    return _report(cfg, out, confmat.cpu().numpy(), seg.class_names, len(dataset))


def _settings(cfg: DictConfig) -> dict:
    window = OmegaConf.to_container(cfg.window) if OmegaConf.is_list(cfg.window) else cfg.window
    return {
        "tta": OmegaConf.to_container(cfg.tta),
        "window": window,
        "overlap": cfg.overlap,
        "blend": cfg.blend,
        "max_pixels": cfg.max_pixels,
    }


def _table(confmat: np.ndarray, class_names: list[str], iou: dict) -> list[list[str]]:
    """Rows: class, IoU, accuracy, ground-truth pixels, predicted pixels."""
    truth, predicted, hits = confmat.sum(1), confmat.sum(0), np.diag(confmat)
    rows = []
    for i, name in enumerate(class_names):
        acc = f"{hits[i] / truth[i]:.4f}" if truth[i] else "-"
        value = "absent" if iou[name] is None else f"{iou[name]:.4f}"
        rows.append([name, value, acc, str(truth[i]), str(predicted[i])])
    return rows


def _report(
    cfg: DictConfig, out: Path, counts: np.ndarray, class_names: list[str], num_images: int
) -> dict:
    """Print the per-class table and metrics, then write metrics.json, report.md and
    confusion_matrix.png together (all or none); ``counts`` is the (C, C) int64 matrix."""
    scores = confusion_scores(torch.from_numpy(counts), class_names)
    settings = _settings(cfg)
    metrics = {
        **{k: scores[k] for k in ("pixel_acc", "mean_acc", "miou", "fw_iou", "per_class_iou")},
        "absent_classes": scores["absent_classes"],
        "ckpt_path": str(Path(cfg.ckpt_path).resolve()),
        "split": cfg.split,
        "num_images": num_images,
        "class_names": class_names,
        "confusion_matrix": counts.tolist(),
        "settings": settings,
    }
    header = ["class", "IoU", "accuracy", "GT pixels", "predicted pixels"]
    rows = _table(counts, class_names, scores["per_class_iou"])
    overall = [
        ["pixel accuracy", metrics["pixel_acc"]],
        ["mean accuracy", metrics["mean_acc"]],
        ["mean IoU", metrics["miou"]],
        ["frequency-weighted IoU", metrics["fw_iou"]],
    ]
    absent = ", ".join(scores["absent_classes"]) or "none"
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        cells = zip(row, widths, strict=True)
        print("  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(cells)))
    for name, value in overall:
        print(f"{name}: {value:.4f}")
    print(f"absent classes: {absent}", flush=True)

    report = [
        f"# Evaluation of `{metrics['ckpt_path']}`",
        "",
        f"Split `{cfg.split}`: {num_images} images at full resolution, {int(counts.sum())} "
        f"labelled pixels (255 ignored). Settings: `{json.dumps(settings)}`.",
        "",
        "| metric | value |",
        "|---|---:|",
        *(f"| {name} | {value:.4f} |" for name, value in overall),
        "",
        "| " + " | ".join(header) + " |",
        "|---|" + "---:|" * (len(header) - 1),
        *("| " + " | ".join(row) + " |" for row in rows),
        "",
        f"Classes absent from both ground truth and predictions (left out of the means): {absent}.",
        "",
        "![confusion matrix, rows = ground truth, row-normalised](confusion_matrix.png)",
        "",
    ]
    picture = io.BytesIO()
    title = f"{cfg.split}: {num_images} images"
    plot_confusion_matrix(counts, class_names, picture, title=title)
    files = [  # metrics.json last: its presence marks a complete set
        ("report.md", "\n".join(report).encode()),
        ("confusion_matrix.png", picture.getvalue()),
        ("metrics.json", (json.dumps(metrics, indent=2) + "\n").encode()),
    ]
    names = ", ".join(name for name, _ in files)
    try:
        write_together((out / name, lambda f, data=data: f.write(data)) for name, data in files)
    except OSError as err:
        raise OutputError(
            f"the metrics above could not be written to {out} ({names}): "
            f"{err.strerror or err} (nothing was left half-written)"
        ) from err
    print(f"wrote {names} into {out}")
    return metrics


def evaluate_command(cfg: DictConfig) -> int:
    """``scripts/evaluate.py``: evaluate, print and write the report; the exit status."""
    evaluate(cfg)
    return EXIT_OK
