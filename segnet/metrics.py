"""The four FCN metrics from one confusion matrix.

Long, Shelhamer and Darrell, "Fully Convolutional Networks for Semantic Segmentation"
(CVPR 2015), section 5: with n_ij the number of pixels of class i predicted as class j,
t_i = sum_j n_ij the number of pixels of class i and n_cl the number of classes,

    pixel accuracy            sum_i n_ii / sum_i t_i
    mean accuracy             (1/n_cl) sum_i n_ii / t_i
    mean IU                   (1/n_cl) sum_i n_ii / (t_i + sum_j n_ji - n_ii)
    frequency weighted IU     (sum_k t_k)^-1 sum_i t_i n_ii / (t_i + sum_j n_ji - n_ii)

A class with no pixel in the targets and none in the predictions has no IoU (0/0): it is
left out of the means and reported in ``absent_classes``. A class that is predicted but
never present scores IoU 0 (its false positives count) but has no accuracy (no pixel to
get right), so mean accuracy averages over the classes present in the targets.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


def confusion_scores(confmat: Tensor, class_names: Sequence[str]) -> dict:
    """Pixel accuracy, mean accuracy, mean IoU, frequency-weighted IoU and per-class IoU.

    Args:
        confmat: (C, C) pixel counts, rows = target class, columns = predicted class
            (torchmetrics' ``MulticlassConfusionMatrix`` layout); ignored pixels must
            already be left out.
        class_names: C names, in label order.

    Returns:
        ``{"pixel_acc", "mean_acc", "miou", "fw_iou"}`` as floats in [0, 1] (NaN when the
        matrix counts no pixel at all), ``"per_class_iou"``: {name: float, or None for an
        absent class}, and ``"absent_classes"``: names absent from targets and predictions.
    """
    if confmat.ndim != 2 or confmat.shape[0] != confmat.shape[1]:
        raise ValueError(
            f"confmat must be a square (C, C) matrix, got shape {tuple(confmat.shape)}"
        )
    if confmat.shape[0] != len(class_names):
        raise ValueError(
            f"confmat has {confmat.shape[0]} classes but {len(class_names)} class names were given"
        )
    # float64: counts over a whole validation set exceed float32's exact integer range.
    counts = confmat.detach().to(device="cpu", dtype=torch.float64)
    hits = counts.diagonal()
    target_total = counts.sum(dim=1)
    union = target_total + counts.sum(dim=0) - hits
    present = union > 0
    in_target = target_total > 0
    total = counts.sum()

    iou = hits / union.clamp(min=1)
    accuracy = hits / target_total.clamp(min=1)
    nan = float("nan")
    return {
        "pixel_acc": (hits.sum() / total).item() if total > 0 else nan,
        "mean_acc": accuracy[in_target].mean().item() if in_target.any() else nan,
        "miou": iou[present].mean().item() if present.any() else nan,
        "fw_iou": (target_total * iou).sum().item() / total.item() if total > 0 else nan,
        "per_class_iou": {
            name: (iou[i].item() if present[i] else None) for i, name in enumerate(class_names)
        },
        "absent_classes": [name for i, name in enumerate(class_names) if not present[i]],
    }


def confusion_counts(
    pred: Tensor, target: Tensor, num_classes: int, ignore_index: int = 255
) -> Tensor:
    """(C, C) int64 pixel counts of class maps ``pred`` against ``target`` (same shape, int64).

    Rows = target class, columns = predicted class (the layout :func:`confusion_scores`
    takes); target pixels labelled ``ignore_index`` are left out.
    """
    valid = target != ignore_index
    index = target[valid] * num_classes + pred[valid]
    return torch.bincount(index, minlength=num_classes**2).reshape(num_classes, num_classes)


def per_image_confusion_counts(
    pred: Tensor, target: Tensor, num_classes: int, ignore_index: int = 255
) -> Tensor:
    """(N, C, C) int64 pixel counts of each image of class maps ``pred`` against ``target``
    (both (N, H, W) int64), laid out as :func:`confusion_counts`; their sum over the images is
    the batch's :func:`confusion_counts`."""
    image = torch.arange(len(target), device=target.device).view(-1, *[1] * (target.ndim - 1))
    valid = target != ignore_index
    cells = num_classes * num_classes
    index = (image.expand_as(target)[valid] * cells) + target[valid] * num_classes + pred[valid]
    counts = torch.bincount(index, minlength=len(target) * cells)
    return counts.reshape(len(target), num_classes, num_classes)


def mean_iou(counts: Tensor) -> Tensor:
    """Mean IoU of confusion matrices ``counts`` (..., C, C) -> float64 (...), over the classes
    each matrix has a pixel of (in its targets or its predictions), as
    :func:`confusion_scores` averages; NaN for a matrix without a pixel."""
    counts = counts.to(dtype=torch.float64)
    hits = counts.diagonal(dim1=-2, dim2=-1)
    union = counts.sum(dim=-1) + counts.sum(dim=-2) - hits
    present = union > 0
    iou = torch.where(present, hits / union.clamp(min=1), 0.0)
    return iou.sum(dim=-1) / present.sum(dim=-1)  # 0 / 0: NaN


def per_image_miou(
    pred: Tensor, target: Tensor, num_classes: int, ignore_index: int = 255
) -> Tensor:
    """Each image's own mean IoU, float64 (N,), of class maps ``pred``/``target`` (N, H, W).

    An image is scored from its own confusion counts: the classes averaged over are those
    "present in it", those with a pixel in its ground truth or in its prediction, counting only
    pixels whose ground truth is not ``ignore_index`` (what the prediction says at an ignored
    pixel never counts). A class absent from both has no IoU and is left out, as in the
    split's mIoU; an image without a single labelled pixel scores NaN.
    """
    return mean_iou(per_image_confusion_counts(pred, target, num_classes, ignore_index))
