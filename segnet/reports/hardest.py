"""The hardest images of a split: the K with the lowest per-image mIoU, and their pictures.

An image's mIoU is :func:`segnet.metrics.per_image_miou`: from its own confusion counts, over
the classes with a pixel in its ground truth or its prediction (255 ignored). An image without
a labelled pixel has no score and is never among the hardest; ties go to the image that comes
first in the split.

Predictions are kept at display size only (the long side at most :data:`DISPLAY_SIDE` pixels,
labels resized with nearest), so the K hardest of a split of 24-megapixel photos cost K small
maps, and the pictures stay readable in a report. The image and its ground truth are read again
for the K chosen alone, when the pictures are drawn: no second prediction pass.
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image
from torch import Tensor

from segnet.data.classes import Colours
from segnet.reports.tables import markdown_table
from segnet.visualize import comparison

DISPLAY_SIDE = 512
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


@dataclass(frozen=True, order=True)
class HardImage:
    """One scored image: its mIoU, its index in the split, its prediction uint8 (h, w) at
    display size. Ordered by (mIoU, index): the hardest first."""

    miou: float
    index: int
    prediction: np.ndarray = field(compare=False, repr=False)


class HardestImages:
    """The ``count`` lowest-mIoU images offered so far (0: none kept), hardest first."""

    def __init__(self, count: int) -> None:
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise ValueError(f"the number of hardest images must be an integer >= 0: {count!r}")
        self.count = count
        self.kept: list[HardImage] = []

    def offer(self, index: int, miou: float, prediction: Tensor | np.ndarray) -> None:
        """Image ``index`` of the split scored ``miou`` (NaN: unscored) with class map
        ``prediction`` (H, W); kept if it is among the ``count`` hardest so far."""
        if self.count == 0 or math.isnan(miou):
            return
        if len(self.kept) == self.count and (miou, index) >= (
            self.kept[-1].miou,
            self.kept[-1].index,
        ):
            return
        if isinstance(prediction, Tensor):
            prediction = prediction.cpu().numpy()
        labels = shrink(np.asarray(prediction, dtype=np.uint8), Image.NEAREST)
        self.kept = merge([self.kept, [HardImage(float(miou), int(index), labels)]], self.count)


def merge(parts: Iterable[Sequence[HardImage]], count: int) -> list[HardImage]:
    """The ``count`` hardest of several processes' hardest (each a share of the split)."""
    return sorted(image for part in parts for image in part)[:count]


def display_size(height: int, width: int) -> tuple[int, int]:
    """(height, width) of a picture with the long side at most DISPLAY_SIDE (never enlarged)."""
    scale = min(1.0, DISPLAY_SIDE / max(height, width))
    return max(1, round(height * scale)), max(1, round(width * scale))


def shrink(pixels: np.ndarray, resample: int) -> np.ndarray:
    """uint8 (H, W) labels (``Image.NEAREST``: labels are never interpolated) or (H, W, 3)
    RGB (``Image.BILINEAR``) at :func:`display_size`."""
    height, width = display_size(*pixels.shape[:2])
    if (height, width) == pixels.shape[:2]:
        return pixels
    return np.asarray(Image.fromarray(pixels).resize((width, height), resample))


def hardest_section(
    hard: Sequence[HardImage],
    dataset,
    colours: Colours | None,
    folder: str,
    what: str,
) -> tuple[list[str], list[tuple[str, bytes]]]:
    """The report's "Hardest images" section and its pictures.

    Args:
        hard: the chosen images, hardest first (:class:`HardestImages`, :func:`merge`).
        dataset: the split, untransformed: ``dataset[i]`` is (image uint8 (3, H, W), mask
            (H, W)); ``dataset.ids`` and ``dataset.images`` name its files.
        colours: (r, g, b) of each class (None: VOC's palette).
        folder: where the pictures go, relative to the report.
        what: the images these are, for the text ("the val split").

    Returns:
        (markdown lines, [(picture path relative to the report, PNG bytes)]): one picture per
        image, image | ground truth | prediction, each linked once from the lines.
    """
    lines = ["## Hardest images", ""]
    if not hard:
        return [*lines, f"No image of {what} has a labelled pixel: none is scored.", ""], []
    lines += [
        f"The {len(hard)} images of {what} with the lowest mIoU, lowest first. An image's mIoU "
        "is its own, over the classes with a pixel in its ground truth or its prediction (255 "
        "ignored). Each picture: image | ground truth | prediction.",
        "",
    ]
    rows, pictures = [], []
    for rank, image in enumerate(hard, start=1):
        rgb, mask = dataset[image.index]
        rgb = shrink(np.ascontiguousarray(np.asarray(rgb).transpose(1, 2, 0)), Image.BILINEAR)
        truth = shrink(np.asarray(mask, dtype=np.uint8), Image.NEAREST)
        name = _UNSAFE.sub("_", str(dataset.ids[image.index]))
        path = f"{folder}/{rank:02d}_{name}.png"
        buffer = io.BytesIO()
        Image.fromarray(comparison(rgb, truth, image.prediction, colours)).save(buffer, "PNG")
        pictures.append((path, buffer.getvalue()))
        file_name = Path(dataset.images[image.index]).name
        rows.append([str(rank), f"`{file_name}`", f"{image.miou:.4f}", f"![{name}]({path})"])
    header = ["#", "file", "mIoU", r"image \| ground truth \| prediction"]
    return [*lines, *markdown_table(header, rows), ""], pictures


def remove_other_pictures(folder: Path, kept: Iterable[str]) -> None:
    """Delete the PNGs in ``folder`` not named in ``kept``: an earlier report's hardest images,
    which the new report no longer links."""
    names = set(kept)
    for path in folder.glob("*.png") if folder.is_dir() else ():
        if path.name not in names:
            path.unlink(missing_ok=True)
