"""Evaluate a checkpoint on a dataset split at full resolution.

    python scripts/evaluate.py ckpt_path=best.ckpt data=voc data.root=/data split=val
    torchrun --nproc_per_node=4 scripts/evaluate.py ckpt_path=best.ckpt ...   # several devices

Every image is predicted at its own size (batches hold images of one size, never padded), and
all pixels of the split go into ONE confusion matrix (label 255 ignored) from which the FCN
metrics are computed, never an average of per-batch scores. With several processes each
takes the images ``rank, rank + world, ...`` (no image repeated or dropped) and the matrices
are summed with an all-reduce, so the result equals a single-process run exactly.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import hydra
import numpy as np
import torch
import torch.distributed as dist
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf
from torch import Tensor
from torch.utils.data import DataLoader
from tqdm import tqdm

from segnet.checkpoint import load_model
from segnet.data.transforms import pad_collate
from segnet.data.voc import IGNORE_INDEX
from segnet.device import resolve_device
from segnet.inference import image_size, size_batches
from segnet.metrics import confusion_scores
from segnet.tasks.infer import configured_predictor
from segnet.visualize import plot_confusion_matrix


def confusion_counts(pred: Tensor, target: Tensor, num_classes: int) -> Tensor:
    """(C, C) int64 pixel counts, rows = target, columns = prediction; target 255 is skipped."""
    valid = target != IGNORE_INDEX
    index = target[valid] * num_classes + pred[valid]
    return torch.bincount(index, minlength=num_classes**2).reshape(num_classes, num_classes)


def _start_distributed() -> tuple[int, int]:
    """Join the process group torchrun describes (WORLD_SIZE > 1); returns (rank, world)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend)
    return (dist.get_rank(), world) if world > 1 else (0, 1)


def _device(name: str, world: int) -> torch.device:
    device = resolve_device(name)
    if world > 1 and device.type == "cuda" and device.index is None:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return device


def evaluate(cfg: DictConfig) -> dict:
    """Run the configured evaluation (see configs/eval.yaml); returns the metrics dict."""
    rank, world = _start_distributed()
    device = _device(cfg.device, world)
    model, class_names = load_model(cfg.ckpt_path, device)
    datamodule = hydra.utils.instantiate(cfg.data)
    if datamodule.num_classes != model.num_classes:
        raise ValueError(
            f"checkpoint {cfg.ckpt_path} predicts {model.num_classes} classes but the data has "
            f"{datamodule.num_classes} (data.class_names)"
        )
    if rank == 0:
        datamodule.prepare_data()  # e.g. generates the demo dataset once
    if world > 1:
        dist.barrier()
    # Under torch.distributed its sampler is the datamodule's unpadded one: this rank's share.
    reference = datamodule.eval_dataloader(cfg.split)
    dataset, indices = reference.dataset, list(reference.sampler)
    predictor = configured_predictor(model, cfg)
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
    num = model.num_classes
    confmat = torch.zeros(num, num, dtype=torch.int64, device=device)
    bar = tqdm(total=len(indices), unit="img", desc=f"eval {cfg.split}", disable=rank != 0)
    for images, masks in loader:
        pred = predictor.predict(images)
        confmat += confusion_counts(pred, masks.to(device), num)
        bar.update(len(images))
    bar.close()
    if world > 1:
        dist.all_reduce(confmat)
    metrics = None
    if rank == 0:
        metrics = _report(cfg, confmat.cpu(), class_names, len(dataset))
    if world > 1:
        dist.barrier()
        dist.destroy_process_group()
    return metrics


def _clean(value):
    """NaN (no pixel at all) as JSON null."""
    return None if isinstance(value, float) and math.isnan(value) else value


def _table(confmat: np.ndarray, class_names: list[str], iou: dict) -> list[list[str]]:
    """Rows: class, IoU, accuracy, ground-truth pixels, predicted pixels."""
    truth, predicted, hits = confmat.sum(1), confmat.sum(0), np.diag(confmat)
    rows = []
    for i, name in enumerate(class_names):
        acc = f"{hits[i] / truth[i]:.4f}" if truth[i] else "-"
        value = "absent" if iou[name] is None else f"{iou[name]:.4f}"
        rows.append([name, value, acc, str(truth[i]), str(predicted[i])])
    return rows


def _report(cfg: DictConfig, confmat: Tensor, class_names: list[str], num_images: int) -> dict:
    """Write metrics.json, report.md and confusion_matrix.png; print the per-class table."""
    out = Path(cfg.output_dir or HydraConfig.get().runtime.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    scores = confusion_scores(confmat, class_names)
    counts = confmat.numpy()
    settings = {
        "tta": OmegaConf.to_container(cfg.tta),
        "window": OmegaConf.to_container(cfg.window)
        if OmegaConf.is_list(cfg.window)
        else cfg.window,
        "overlap": cfg.overlap,
        "blend": cfg.blend,
        "max_pixels": cfg.max_pixels,
    }
    metrics = {
        **{k: _clean(scores[k]) for k in ("pixel_acc", "mean_acc", "miou", "fw_iou")},
        "per_class_iou": scores["per_class_iou"],
        "absent_classes": scores["absent_classes"],
        "ckpt_path": str(Path(cfg.ckpt_path).resolve()),
        "split": cfg.split,
        "num_images": num_images,
        "class_names": class_names,
        "confusion_matrix": counts.tolist(),
        "settings": settings,
    }
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    plot_confusion_matrix(
        counts, class_names, out / "confusion_matrix.png", title=f"{cfg.split}: {num_images} images"
    )

    header = ["class", "IoU", "accuracy", "GT pixels", "predicted pixels"]
    rows = _table(counts, class_names, scores["per_class_iou"])
    overall = [
        ["pixel accuracy", metrics["pixel_acc"]],
        ["mean accuracy", metrics["mean_acc"]],
        ["mean IoU", metrics["miou"]],
        ["frequency-weighted IoU", metrics["fw_iou"]],
    ]
    absent = ", ".join(scores["absent_classes"]) or "none"
    lines = [
        f"# Evaluation of `{metrics['ckpt_path']}`",
        "",
        f"Split `{cfg.split}`: {num_images} images at full resolution, {int(counts.sum())} "
        f"labelled pixels (255 ignored). Settings: `{json.dumps(settings)}`.",
        "",
        "| metric | value |",
        "|---|---:|",
        *(f"| {name} | {_fmt(value)} |" for name, value in overall),
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
    (out / "report.md").write_text("\n".join(lines))

    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    print(
        "\n".join(
            "  ".join(
                c.rjust(w) if i else c.ljust(w)
                for i, (c, w) in enumerate(zip(r, widths, strict=True))
            )
            for r in [header, *rows]
        )
    )
    for name, value in overall:
        print(f"{name}: {_fmt(value)}")
    print(f"absent classes: {absent}")
    print(f"wrote {out / 'metrics.json'}, {out / 'report.md'}, {out / 'confusion_matrix.png'}")
    return metrics


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def evaluate_command(cfg: DictConfig) -> int:
    """``scripts/evaluate.py``: evaluate and report (metrics printed and written)."""
    evaluate(cfg)
    return 0
