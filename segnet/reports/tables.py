"""Markdown tables of a report: the scores and the per-class table of a confusion matrix."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from segnet.metrics import confusion_scores

PER_CLASS_HEADER = ("class", "IoU", "accuracy", "GT pixels", "predicted pixels")


def per_class_rows(confmat: np.ndarray, class_names: Sequence[str]) -> list[list[str]]:
    """One row per class of the (C, C) pixel counts ``confmat`` (rows = ground truth): name,
    IoU ("absent" when the class is in neither ground truth nor prediction), accuracy ("-"
    without a ground-truth pixel), ground-truth and predicted pixels (see PER_CLASS_HEADER)."""
    confmat = np.asarray(confmat, dtype=np.int64)
    iou = confusion_scores(torch.from_numpy(confmat), list(class_names))["per_class_iou"]
    truth, predicted, hits = confmat.sum(1), confmat.sum(0), np.diag(confmat)
    rows = []
    for i, name in enumerate(class_names):
        acc = f"{hits[i] / truth[i]:.4f}" if truth[i] else "-"
        value = "absent" if iou[name] is None else f"{iou[name]:.4f}"
        rows.append([name, value, acc, str(truth[i]), str(predicted[i])])
    return rows


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """The lines of a markdown table: the first column left-aligned, the others right."""
    return [
        "| " + " | ".join(header) + " |",
        "|---|" + "---:|" * (len(header) - 1),
        *("| " + " | ".join(row) + " |" for row in rows),
    ]


def scores_section(
    overall: Sequence[tuple[str, float]],
    confmat: np.ndarray,
    class_names: Sequence[str],
    absent_classes: Sequence[str],
) -> list[str]:
    """The lines of a report's scores: a table of the ``overall`` (name, value) metrics, the
    per-class table of ``confmat`` and the classes left out of the means."""
    absent = ", ".join(absent_classes) or "none"
    return [
        *markdown_table(("metric", "value"), [(name, f"{value:.4f}") for name, value in overall]),
        "",
        *markdown_table(PER_CLASS_HEADER, per_class_rows(confmat, class_names)),
        "",
        f"Classes absent from both ground truth and predictions (left out of the means): {absent}.",
        "",
    ]
