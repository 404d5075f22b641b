"""What scripts/evaluate.py prints and writes once the split is predicted: the per-class table
and the four metrics on stdout; metrics.json, report.md, confusion_matrix.png and the hardest
images' pictures (``hardest/``) in output_dir, written together (all or none)."""

from __future__ import annotations

import contextlib
import io
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from segnet.metrics import confusion_scores
from segnet.outputs import OutputError, write_together
from segnet.reports.hardest import remove_other_pictures
from segnet.reports.tables import PER_CLASS_HEADER, per_class_rows, scores_section
from segnet.visualize import plot_confusion_matrix

HARDEST_DIR = "hardest"


@dataclass
class PerImage:
    """The per-image part of an evaluation.

    Attributes:
        scores: {"id", "image", "miou"} of every image of the split, in the split's order
            (metrics.json's ``per_image``; ``miou`` None for an image without a labelled pixel).
        section: report.md's "Hardest images" lines ([]: ``hardest=0``).
        pictures: (path relative to output_dir, PNG bytes) the section links.
    """

    scores: list[dict]
    section: list[str] = field(default_factory=list)
    pictures: list[tuple[str, bytes]] = field(default_factory=list)


def _settings(cfg: DictConfig) -> dict:
    window = OmegaConf.to_container(cfg.window) if OmegaConf.is_list(cfg.window) else cfg.window
    return {
        "tta": OmegaConf.to_container(cfg.tta),
        "window": window,
        "overlap": cfg.overlap,
        "blend": cfg.blend,
        "max_pixels": cfg.max_pixels,
    }


def write_report(
    cfg: DictConfig,
    out: Path,
    counts: np.ndarray,
    class_names: list[str],
    num_images: int,
    per_image: PerImage,
) -> dict:
    """Print the per-class table and metrics, then write metrics.json, report.md,
    confusion_matrix.png and the hardest images together (all or none); ``counts`` is the
    (C, C) int64 matrix. Returns what metrics.json holds."""
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
        "per_image": per_image.scores,
    }
    rows = per_class_rows(counts, class_names)
    overall = [
        ["pixel accuracy", metrics["pixel_acc"]],
        ["mean accuracy", metrics["mean_acc"]],
        ["mean IoU", metrics["miou"]],
        ["frequency-weighted IoU", metrics["fw_iou"]],
    ]
    absent = ", ".join(scores["absent_classes"]) or "none"
    header = list(PER_CLASS_HEADER)
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
        *scores_section(overall, counts, class_names, scores["absent_classes"]),
        "![confusion matrix, rows = ground truth, row-normalised](confusion_matrix.png)",
        "",
        *per_image.section,
    ]
    picture = io.BytesIO()
    title = f"{cfg.split}: {num_images} images"
    plot_confusion_matrix(counts, class_names, picture, title=title)
    files = [  # metrics.json last: its presence marks a complete set
        *per_image.pictures,
        ("report.md", "\n".join(report).encode()),
        ("confusion_matrix.png", picture.getvalue()),
        ("metrics.json", (json.dumps(metrics, indent=2) + "\n").encode()),
    ]
    names = "report.md, confusion_matrix.png, metrics.json"
    if per_image.pictures:
        names = f"{len(per_image.pictures)} pictures in {HARDEST_DIR}/, {names}"
    try:
        write_together((out / name, lambda f, data=data: f.write(data)) for name, data in files)
    except OSError as err:
        with contextlib.suppress(OSError):  # the folder staging made, if it stayed empty
            (out / HARDEST_DIR).rmdir()
        raise OutputError(
            f"the metrics above could not be written to {out} ({names}): "
            f"{err.strerror or err} (nothing was left half-written)"
        ) from err
    remove_other_pictures(out / HARDEST_DIR, (Path(path).name for path, _ in per_image.pictures))
    print(f"wrote {names} into {out}")
    return metrics
