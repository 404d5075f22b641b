"""``check_data``'s ``preview.png``: a few images of each split with their masks drawn over them
in the dataset's colours, so a glance shows whether masks and images belong together (a mask
shifted, turned, of another image, or all one class).

One row per image: the image blended with its mask (:func:`segnet.visualize.overlay`, half
and half) and a legend of the classes present. Images taller than ``PREVIEW_HEIGHT`` are
shrunk first (the mask with nearest, as always); smaller ones are drawn at their own size.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from segnet.data.images import DataError, read_image
from segnet.outputs import write_bytes
from segnet.visualize import overlay, stack_rows

PREVIEW_NAME = "preview.png"
PREVIEW_HEIGHT = 256
PREVIEW_ALPHA = 0.5

LabelReader = Callable[[str], np.ndarray]
"""Mask path -> uint8 (H, W) labels, as training reads them."""


def preview_pairs(
    splits: Mapping[str, Sequence[tuple[str, str]]], per_split: int
) -> list[tuple[str, str]]:
    """Up to ``per_split`` ``(image, mask)`` pairs of each split, evenly spread over it (the
    first, the last and between: the same ones every time)."""
    chosen = []
    for pairs in splits.values():
        if not pairs or per_split < 1:
            continue
        count = min(per_split, len(pairs))
        picks = np.linspace(0, len(pairs) - 1, count).round().astype(int)
        chosen += [pairs[i] for i in dict.fromkeys(picks.tolist())]
    return chosen


def preview_row(
    image: Image.Image,
    labels: np.ndarray,
    class_names: Sequence[str],
    colours: Sequence[Sequence[int]],
) -> np.ndarray:
    """uint8 (H', W' + legend, 3): the overlay of one RGB ``image`` and its (H, W) ``labels``."""
    if image.height > PREVIEW_HEIGHT:
        size = (max(1, round(image.width * PREVIEW_HEIGHT / image.height)), PREVIEW_HEIGHT)
        image = image.resize(size, Image.Resampling.BILINEAR)
        labels = np.asarray(Image.fromarray(labels).resize(size, Image.Resampling.NEAREST))
    return np.asarray(overlay(image, labels, class_names, PREVIEW_ALPHA, colours))


def write_preview(
    path: Path,
    pairs: Sequence[tuple[str, str]],
    read_labels: LabelReader,
    class_names: Sequence[str],
    colours: Sequence[Sequence[int]],
) -> int:
    """Draw the rows of ``pairs`` into one PNG at ``path`` (written whole or not at all);
    pairs that cannot be read, or whose sizes differ, are left out (the report names them).
    Returns how many rows were drawn; nothing is written for none."""
    rows = []
    for image_path, mask_path in pairs:
        try:
            image, labels = read_image(image_path), read_labels(mask_path)
        except DataError:
            continue
        if labels.shape != (image.height, image.width):
            continue
        rows.append(preview_row(image, labels, class_names, colours))
    if rows:
        buffer = io.BytesIO()
        Image.fromarray(stack_rows(rows)).save(buffer, format="PNG")
        write_bytes(path, buffer.getvalue())
    return len(rows)
