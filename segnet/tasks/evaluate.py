"""Evaluate a checkpoint on a dataset split at full resolution.

    python scripts/evaluate.py ckpt_path=best.ckpt data=voc data.root=/data split=val
    torchrun --nproc_per_node=4 scripts/evaluate.py ckpt_path=best.ckpt ...   # several devices

Every image is predicted at its own size (batches hold images of one size, never padded), and
all pixels of the split go into ONE confusion matrix (label 255 ignored) from which the FCN
metrics are computed, never an average of per-batch scores. With several processes each
takes the images ``rank, rank + world, ...`` (no image repeated or dropped) and the matrices
are summed with an all-reduce, so the result equals a single-process run exactly.

The same pass scores each image alone (:func:`segnet.metrics.per_image_miou`, from its own
counts, whose sum is the matrix): metrics.json's ``per_image``, and the ``hardest`` lowest in
report.md with their pictures (:mod:`segnet.reports.hardest`). Each process keeps its own
scores and hardest; rank 0 gathers them (the split's hardest are among the shares' hardest).

Everything that can be checked is checked before the first prediction (device, checkpoint,
settings, dataset, output folder); the metrics are printed before they are written, so a
write that fails afterwards loses nothing that was computed.
"""

from __future__ import annotations

import math
from pathlib import Path

import hydra
import torch
import torch.distributed as dist
from omegaconf import DictConfig
from torch.utils.data import DataLoader
from tqdm import tqdm

from segnet.data.images import DataError
from segnet.data.transforms import pad_collate
from segnet.metrics import mean_iou, per_image_confusion_counts
from segnet.outputs import OutputError, check_output_dir, remove_stale_temporaries
from segnet.predict.predictor import image_size, size_batches
from segnet.reports.hardest import HardestImages, HardImage, hardest_section, merge
from segnet.tasks.cli import EXIT_OK, ConfigError
from segnet.tasks.configured_model import configured_segmenter
from segnet.tasks.distributed import (
    on_rank_zero,
    process_device,
    start_distributed,
    world_size,
)
from segnet.tasks.evaluate_report import HARDEST_DIR, PerImage, write_report


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
    count = _hardest_count(cfg)
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
    scores: list[tuple[int, float]] = []  # (index in the split, mIoU) of this process's images
    hardest = HardestImages(count)
    bar = tqdm(total=len(indices), unit="img", desc=f"eval {cfg.split}", disable=rank != 0)
    for (images, masks), batch in zip(loader, batches, strict=True):
        predicted = predictor.predict(images)
        counts = per_image_confusion_counts(predicted, masks.to(device), num)
        confmat += counts.sum(dim=0)
        for index, miou, prediction in zip(
            batch, mean_iou(counts).tolist(), predicted, strict=True
        ):
            scores.append((index, miou))
            hardest.offer(index, miou, prediction)
        bar.update(len(images))
    bar.close()
    kept = hardest.kept
    if world > 1:
        dist.all_reduce(confmat)
        scores, kept = _gather_scores(scores, kept, rank, world, count)
    if confmat.sum() == 0:
        raise DataError(
            f"split {cfg.split!r} of {datamodule.dataset_dir}: none of "
            f"its {len(dataset)} images has a labelled pixel "
            "(every mask pixel is 255, ignore): there is nothing to score"
        )
    if rank != 0:
        return None
    per_image = [
        {"id": dataset.ids[i], "image": str(dataset.images[i]), "miou": _score(miou)}
        for i, miou in sorted(scores)
    ]
    extra = PerImage(per_image)
    if count:
        what = f"split `{cfg.split}`"
        extra.section, extra.pictures = hardest_section(
            kept, dataset, seg.palette, HARDEST_DIR, what
        )
    return write_report(cfg, out, confmat.cpu().numpy(), seg.class_names, len(dataset), extra)


def _hardest_count(cfg: DictConfig) -> int:
    count = cfg.get("hardest", 0)
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise ConfigError(f"hardest={count!r} must be a whole number >= 0 (0: no hardest images)")
    return count


def _gather_scores(
    scores: list[tuple[int, float]], kept: list[HardImage], rank: int, world: int, count: int
) -> tuple[list[tuple[int, float]], list[HardImage]]:
    """On rank 0, every process's per-image scores and the ``count`` hardest of all (the
    hardest of the split are among the hardest of the shares); elsewhere what was given."""
    parts = [None] * world if rank == 0 else None
    dist.gather_object((scores, kept), parts, dst=0)
    if rank != 0:
        return scores, kept
    return [s for part, _ in parts for s in part], merge([k for _, k in parts], count)


def _score(miou: float) -> float | None:
    """A per-image mIoU for JSON: None for an image without a labelled pixel (NaN)."""
    return None if math.isnan(miou) else miou


def evaluate_command(cfg: DictConfig) -> int:
    """``scripts/evaluate.py``: evaluate, print and write the report; the exit status."""
    evaluate(cfg)
    return EXIT_OK
