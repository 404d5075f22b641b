"""segnet.metrics: confusion_counts and confusion_scores against hand-computed FCN metrics."""

from __future__ import annotations

import math

import pytest
import torch
from torchmetrics.classification import MulticlassConfusionMatrix

from segnet.metrics import (
    confusion_counts,
    confusion_scores,
    per_image_confusion_counts,
    per_image_miou,
)

NAMES = ["background", "cat", "dog", "bird"]

# rows = target, columns = prediction. "dog" is predicted once but never present,
# "bird" is neither present nor predicted.
CONFMAT = torch.tensor(
    [
        [3, 1, 0, 0],
        [1, 2, 1, 0],
        [0, 0, 0, 0],
        [0, 0, 0, 0],
    ]
)


def test_hand_computed_example():
    scores = confusion_scores(CONFMAT, NAMES)
    # 5 of 8 pixels right.
    assert scores["pixel_acc"] == pytest.approx(5 / 8)
    # background 3/4, cat 2/4; dog and bird have no target pixel, so no accuracy.
    assert scores["mean_acc"] == pytest.approx((3 / 4 + 2 / 4) / 2)
    # IoU background 3/(4+4-3), cat 2/(4+3-2), dog 0/(0+1-0); bird is left out.
    assert scores["per_class_iou"] == pytest.approx(
        {"background": 3 / 5, "cat": 2 / 5, "dog": 0.0, "bird": None}
    )
    assert scores["miou"] == pytest.approx((3 / 5 + 2 / 5 + 0) / 3)
    # Frequency weights t_i / total: 4/8, 4/8, 0, 0.
    assert scores["fw_iou"] == pytest.approx((4 * 3 / 5 + 4 * 2 / 5) / 8)
    assert scores["absent_classes"] == ["bird"]


def test_matches_torchmetrics_layout_with_ignored_pixels():
    """Rows are targets and 255 is ignored: same numbers as the hand example."""
    target = torch.tensor([[0, 0, 0, 0, 1, 1, 1, 1, 255, 255]])
    preds = torch.tensor([[0, 0, 0, 1, 0, 1, 1, 2, 3, 0]])
    metric = MulticlassConfusionMatrix(num_classes=4, ignore_index=255)
    metric.update(preds, target)
    confmat = metric.compute()
    assert torch.equal(confmat, CONFMAT)
    assert confusion_scores(confmat, NAMES)["miou"] == pytest.approx(1 / 3)


def test_confusion_counts_skip_ignored_pixels():
    target = torch.tensor([[0, 1, 255], [2, 2, 1]])
    pred = torch.tensor([[0, 2, 1], [2, 0, 1]])
    expected = torch.tensor([[1, 0, 0], [0, 1, 1], [1, 0, 1]])
    assert torch.equal(confusion_counts(pred, target, 3), expected)


def test_confusion_counts_equal_the_training_metric():
    """Evaluation's counts and Lightning validation's torchmetrics matrix are the same numbers."""
    generator = torch.Generator().manual_seed(0)
    target = torch.randint(0, 6, (3, 17, 23), generator=generator)
    target[torch.rand(target.shape, generator=generator) < 0.2] = 255
    pred = torch.randint(0, 6, target.shape, generator=generator)
    metric = MulticlassConfusionMatrix(num_classes=6, ignore_index=255)
    metric.update(pred, target)
    assert torch.equal(confusion_counts(pred, target, 6), metric.compute())


def test_perfect_prediction_scores_one():
    confmat = torch.diag(torch.tensor([10, 0, 5, 1]))
    scores = confusion_scores(confmat, NAMES)
    for key in ("pixel_acc", "mean_acc", "miou", "fw_iou"):
        assert scores[key] == pytest.approx(1.0)
    assert scores["absent_classes"] == ["cat"]
    assert scores["per_class_iou"]["cat"] is None


def test_agrees_with_per_pixel_definition():
    torch.manual_seed(0)
    target = torch.randint(0, 5, (2000,))
    preds = torch.where(torch.rand(2000) < 0.6, target, torch.randint(0, 5, (2000,)))
    confmat = torch.zeros(5, 5, dtype=torch.long)
    confmat.index_put_((target, preds), torch.ones(2000, dtype=torch.long), accumulate=True)
    scores = confusion_scores(confmat, [str(i) for i in range(5)])

    ious = [
        ((preds == c) & (target == c)).sum() / ((preds == c) | (target == c)).sum()
        for c in range(5)
    ]
    accs = [((preds == c) & (target == c)).sum() / (target == c).sum() for c in range(5)]
    freqs = [(target == c).float().mean() for c in range(5)]
    assert scores["pixel_acc"] == pytest.approx((preds == target).float().mean().item())
    assert scores["mean_acc"] == pytest.approx(torch.stack(accs).mean().item())
    assert scores["miou"] == pytest.approx(torch.stack(ious).mean().item())
    assert scores["fw_iou"] == pytest.approx(
        sum(f * i for f, i in zip(freqs, ious, strict=True)).item()
    )


def test_empty_matrix_gives_nan_and_all_absent():
    scores = confusion_scores(torch.zeros(4, 4), NAMES)
    assert all(math.isnan(scores[key]) for key in ("pixel_acc", "mean_acc", "miou", "fw_iou"))
    assert scores["absent_classes"] == NAMES


def test_large_counts_stay_exact():
    """Counts beyond float32's 2**24 integer range must not lose pixels."""
    confmat = torch.tensor([[2**25 + 1, 1], [0, 2**25]])
    assert confusion_scores(confmat, ["a", "b"])["pixel_acc"] == pytest.approx(
        (2**26 + 1) / (2**26 + 2), abs=1e-12
    )


@pytest.mark.parametrize(
    ("confmat", "names", "message"),
    [
        (torch.zeros(3, 4), ["a", "b", "c"], "square"),
        (torch.zeros(3, 3), ["a", "b"], "3 classes but 2 class names"),
    ],
)
def test_bad_inputs_raise(confmat, names, message):
    with pytest.raises(ValueError, match=message):
        confusion_scores(confmat, names)


def test_per_image_miou_averages_the_classes_in_its_truth_or_prediction_ignoring_255():
    # Image 0: truth [0 0 1 255], prediction [0 1 1 3]: class 3 is predicted at the ignored
    # pixel only and does not count; class 2 is nowhere. IoU 0: 1/2, 1: 1/2.
    # Image 1: truth [2 2 2 2], prediction [2 2 0 0]: class 0 is only predicted (IoU 0), 2: 2/4.
    # Image 2: every pixel ignored: no score.
    target = torch.tensor([[[0, 0, 1, 255]], [[2, 2, 2, 2]], [[255, 255, 255, 255]]])
    pred = torch.tensor([[[0, 1, 1, 3]], [[2, 2, 0, 0]], [[1, 1, 1, 1]]])
    miou = per_image_miou(pred, target, num_classes=4)
    assert miou.dtype == torch.float64 and miou.shape == (3,)
    assert miou[:2].tolist() == pytest.approx([1 / 2, (0 + 2 / 4) / 2])
    assert math.isnan(miou[2])
    counts = per_image_confusion_counts(pred, target, 4)
    for image in range(3):  # each image's counts, and the split's matrix as their sum
        assert torch.equal(counts[image], confusion_counts(pred[image], target[image], 4))
    assert torch.equal(counts.sum(0), confusion_counts(pred, target, 4))
    assert miou[1] == pytest.approx(confusion_scores(counts[1], NAMES)["miou"])
