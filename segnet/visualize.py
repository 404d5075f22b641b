"""Pictures of predictions for people: palette masks, overlays with a legend, confusion matrices."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from segnet.data.classes import IGNORE_INDEX, Colours, flat_palette

# Overlays are blended in bands of rows, so a 24-megapixel image needs no float copy of itself.
_BAND_ROWS = 512
# Between the panels of a comparison and the rows of a grid: white, a colour no class is drawn in
# by default, so panel edges stay visible.
_GAP = 4
_GAP_COLOUR = 255


def colorize(class_map: np.ndarray, colours: Colours | None = None) -> Image.Image:
    """Class map (H, W) of indices 0..255 -> palette-mode ("P") PIL image drawn in ``colours``
    (one (r, g, b) per class; None: VOC's palette), see :func:`flat_palette`.

    The pixel values ARE the class indices (what VOC's SegmentationClass PNGs store), so the
    file reads back as labels with ``np.asarray(Image.open(path))``.
    """
    class_map = np.asarray(class_map)
    if class_map.ndim != 2:
        raise ValueError(f"class map must be (H, W), got shape {class_map.shape}")
    if class_map.size and (class_map.min() < 0 or class_map.max() > 255):
        raise ValueError("class map values must lie in 0..255 for a palette image")
    image = Image.fromarray(np.ascontiguousarray(class_map, dtype=np.uint8), mode="P")
    image.putpalette(flat_palette(colours))
    return image


def class_label(index: int, class_names: Sequence[str]) -> str:
    """Display name of label ``index``: its class name, "void" for 255, else the number."""
    if index < len(class_names):
        return class_names[index]
    return "void" if index == IGNORE_INDEX else str(index)


def _legend_font(image_height: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    # Pillow's default font, scaled with the picture so the legend stays legible on big photos.
    return ImageFont.load_default(size=int(np.clip(image_height / 30, 12, 96)))


def overlay(
    image: Image.Image | np.ndarray,
    class_map: np.ndarray,
    class_names: Sequence[str],
    alpha: float = 0.5,
    colours: Colours | None = None,
) -> Image.Image:
    """The image with its class colours blended over it, and a legend of the classes present.

    Args:
        image: RGB, PIL image of size (W, H) or uint8 array (H, W, 3).
        class_map: (H, W) class indices.
        class_names: names of labels 0..C-1 (used in the legend).
        alpha: weight of the class colour; 0 shows the image alone, 1 the colours alone.
        colours: (r, g, b) of labels 0..C-1 (None: VOC's palette), see :func:`flat_palette`.

    Returns:
        RGB image: the blend (W x H) with a legend panel to its right, one coloured box and name
        per class present, in index order (the panel also makes a 1x1 prediction readable).
    """
    pixels = np.asarray(image)
    class_map = np.asarray(class_map)
    if pixels.ndim != 3 or pixels.shape[2] != 3 or pixels.shape[:2] != class_map.shape:
        raise ValueError(
            f"image {pixels.shape} must be RGB (H, W, 3) matching the class map {class_map.shape}"
        )
    if not 0 <= alpha <= 1:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    palette = np.array(flat_palette(colours), dtype=np.uint8).reshape(256, 3)
    height, width = class_map.shape
    present = np.flatnonzero(np.bincount(class_map.ravel(), minlength=256))
    labels = [class_label(int(i), class_names) for i in present]

    font = _legend_font(height)
    line = font.getbbox("Ag")[3] + 6
    box = line - 6
    margin = line // 2
    text_width = max(int(font.getlength(label)) for label in labels) if labels else 0
    panel_width = 3 * margin + box + text_width
    canvas_height = max(height, 2 * margin + line * len(labels))
    result = Image.new("RGB", (width + panel_width, canvas_height), "white")
    for top in range(0, height, _BAND_ROWS):
        rows = slice(top, min(top + _BAND_ROWS, height))
        blend = pixels[rows].astype(np.float32) * (1 - alpha)
        blend += palette[class_map[rows]].astype(np.float32) * alpha
        result.paste(Image.fromarray(np.rint(blend).astype(np.uint8)), (0, top))

    draw = ImageDraw.Draw(result)
    for row, (index, label) in enumerate(zip(present, labels, strict=True)):
        x, y = width + margin, margin + row * line
        draw.rectangle(
            [x, y, x + box, y + box], fill=tuple(int(c) for c in palette[index]), outline=0
        )
        draw.text((x + box + margin, y), label, fill=(0, 0, 0), font=font)
    return result


def label_colours(class_map: np.ndarray, colours: Colours | None = None) -> np.ndarray:
    """Class map (H, W) -> uint8 (H, W, 3): each label in its colour (:func:`flat_palette`;
    255, ignore, in the void colour (224, 224, 192), so unlabelled pixels stand apart from
    every class)."""
    palette = np.array(flat_palette(colours), dtype=np.uint8).reshape(256, 3)
    return palette[np.asarray(class_map)]


def label_overlay(
    image: np.ndarray, class_map: np.ndarray, colours: Colours | None = None, alpha: float = 0.5
) -> np.ndarray:
    """uint8 (H, W, 3): the class colours blended over ``image`` (uint8 (H, W, 3)) with weight
    ``alpha``, ``rint(image * (1 - alpha) + colour * alpha)``, except where the label is 255:
    those pixels are the void colour itself, unblended, so crop padding and unlabelled bands
    read as such whatever lies under them."""
    image, class_map = np.asarray(image), np.asarray(class_map)
    if image.ndim != 3 or image.shape[2] != 3 or image.shape[:2] != class_map.shape:
        raise ValueError(f"image {image.shape} must be (H, W, 3) matching {class_map.shape}")
    coloured = label_colours(class_map, colours)
    blend = image.astype(np.float32) * (1 - alpha) + coloured.astype(np.float32) * alpha
    blended = np.rint(blend).astype(np.uint8)
    ignored = class_map == IGNORE_INDEX
    blended[ignored] = coloured[ignored]
    return blended


def side_by_side(panels: Sequence[np.ndarray]) -> np.ndarray:
    """uint8 (H, W, 3) panels of one size -> uint8 (H, k W + (k - 1) gap, 3), left to right;
    panel k starts at column ``k * (W + gap)`` (:func:`panel_columns`)."""
    if not panels or any(panel.shape != panels[0].shape for panel in panels):
        raise ValueError(f"panels must share one shape, got {[p.shape for p in panels]}")
    gap = np.full((panels[0].shape[0], _GAP, 3), _GAP_COLOUR, dtype=np.uint8)
    spaced = [part for panel in panels for part in (gap, panel.astype(np.uint8))]
    return np.concatenate(spaced[1:], axis=1)


def comparison(
    image: np.ndarray, truth: np.ndarray, prediction: np.ndarray, colours: Colours | None = None
) -> np.ndarray:
    """One row of a sample grid: image | ground truth | prediction, side by side.

    Args:
        image: uint8 (H, W, 3).
        truth, prediction: (H, W) labels; 255 (ignore) is drawn in the palette's void colour
            (224, 224, 192), so unlabelled pixels stand apart from every class.
        colours: (r, g, b) of labels 0..C-1 (None: VOC's palette).

    Returns:
        uint8 (H, 3 W + 2 gap, 3); panel k starts at column ``k * (W + gap)``
        (:func:`panel_columns`).
    """
    image, truth, prediction = np.asarray(image), np.asarray(truth), np.asarray(prediction)
    if (
        image.ndim != 3
        or image.shape[2] != 3
        or not (image.shape[:2] == truth.shape == prediction.shape)
    ):
        raise ValueError(
            f"image {image.shape} must be (H, W, 3) and match truth {truth.shape} and "
            f"prediction {prediction.shape}"
        )
    return side_by_side([image, label_colours(truth, colours), label_colours(prediction, colours)])


def panel_columns(width: int, panel: int) -> slice:
    """The columns of panel ``panel`` (0 image, 1 truth, 2 prediction) in a :func:`comparison`
    (or any :func:`side_by_side`) of images ``width`` wide."""
    start = panel * (width + _GAP)
    return slice(start, start + width)


def stack_rows(rows: Sequence[np.ndarray]) -> np.ndarray:
    """uint8 (H_i, W_i, 3) rows -> one picture, top to bottom, left-aligned, ``_GAP`` apart;
    narrower rows are padded on the right with the gap colour. Row i starts at row
    :func:`row_tops` ``[i]``."""
    if not rows:
        raise ValueError("no rows to stack")
    width = max(row.shape[1] for row in rows)
    height = sum(row.shape[0] for row in rows) + _GAP * (len(rows) - 1)
    grid = np.full((height, width, 3), _GAP_COLOUR, dtype=np.uint8)
    for row, top in zip(rows, row_tops([row.shape[0] for row in rows]), strict=True):
        grid[top : top + row.shape[0], : row.shape[1]] = row
    return grid


def row_tops(heights: Sequence[int]) -> list[int]:
    """The first picture row of each of :func:`stack_rows`'s rows, given their heights."""
    tops = [0]
    for height in heights[:-1]:
        tops.append(tops[-1] + height + _GAP)
    return tops[: len(heights)]


def plot_confusion_matrix(
    confmat: np.ndarray, class_names: Sequence[str], path: str | Path | BinaryIO, title: str = ""
) -> None:
    """Save a row-normalised confusion matrix (rows = ground truth, columns = prediction) as PNG.

    Each row is divided by its ground-truth pixel count, so the diagonal is the per-class
    recall and every row reads as "where did this class's pixels go". Rows of classes absent
    from the ground truth stay empty. Cells are annotated in percent (blank below 1%), class
    names label both axes; sized so 21 VOC classes stay readable.
    """
    # Imported here: only reports draw plots, and a serving process need not load matplotlib.
    from matplotlib.figure import Figure

    confmat = np.asarray(confmat, dtype=np.float64)
    num = len(class_names)
    if confmat.shape != (num, num):
        raise ValueError(f"confusion matrix {confmat.shape} does not match {num} class names")
    totals = confmat.sum(axis=1, keepdims=True)
    rates = np.divide(confmat, totals, out=np.zeros_like(confmat), where=totals > 0)

    side = max(4.0, 0.45 * num + 2.5)
    fig = Figure(figsize=(side + 1.5, side), dpi=120, layout="constrained")
    ax = fig.add_subplot()
    shown = ax.imshow(rates, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.02, label="fraction of the true class")
    ax.set_xticks(range(num), labels=class_names, rotation=60, ha="right", rotation_mode="anchor")
    ax.set_yticks(range(num), labels=class_names)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(title or "confusion matrix (row-normalised)")
    font_size = 7 if num > 12 else 9
    for (row, col), rate in np.ndenumerate(rates):
        if rate >= 0.01:
            colour = "white" if rate > 0.6 else "black"
            ax.text(
                col,
                row,
                f"{100 * rate:.0f}",
                ha="center",
                va="center",
                fontsize=font_size,
                color=colour,
            )
    fig.savefig(path, format="png")
