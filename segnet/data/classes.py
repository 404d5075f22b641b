"""Where class names and colours come from: Pascal VOC's classes and palette, the void label,
and the names of unnamed classes. Plain values, importable without torchvision (a serving
process needs the colours, not the dataset readers)."""

from __future__ import annotations

from collections.abc import Sequence

IGNORE_INDEX = 255
"""Label of "void" pixels: ignored by the loss, the metrics and padding."""

Colours = Sequence[Sequence[int]]
"""(r, g, b) per class, label order."""

VOC_CLASSES: tuple[str, ...] = (
    "background",
    "aeroplane",
    "bicycle",
    "bird",
    "boat",
    "bottle",
    "bus",
    "car",
    "cat",
    "chair",
    "cow",
    "diningtable",
    "dog",
    "horse",
    "motorbike",
    "person",
    "pottedplant",
    "sheep",
    "sofa",
    "train",
    "tvmonitor",
)


def default_class_names(num_classes: int) -> list[str]:
    """The names of ``num_classes`` classes nobody named: VOC's for 21, else ``class_0, ...``."""
    if num_classes == len(VOC_CLASSES):
        return list(VOC_CLASSES)
    return [f"class_{i}" for i in range(num_classes)]


def class_colours(num_classes: int) -> list[tuple[int, int, int]]:
    """``(r, g, b)`` of labels ``0 .. num_classes - 1``: the colours of masks and overlays."""
    flat = voc_palette()
    return [tuple(flat[3 * i : 3 * i + 3]) for i in range(num_classes)]


def voc_palette() -> list[int]:
    """VOC's 256-colour palette, flat [r0, g0, b0, r1, ...] (768 values) for ``Image.putpalette``.

    Colour of label i interleaves i's bits into the top bits of r, g and b; label 255
    ("void") comes out as (224, 224, 192).
    """
    palette = []
    for label in range(256):
        r = g = b = 0
        value = label
        for shift in range(7, -1, -1):
            r |= (value & 1) << shift
            g |= ((value >> 1) & 1) << shift
            b |= ((value >> 2) & 1) << shift
            value >>= 3
        palette += [r, g, b]
    return palette


def flat_palette(colours: Colours | None = None) -> list[int]:
    """The 256-entry palette [r0, g0, b0, r1, ...] of a palette PNG: ``colours`` (r, g, b) for
    labels 0..C-1, VOC's palette for the rest (255, "void", is (224, 224, 192)); VOC's whole
    palette for None."""
    palette = voc_palette()
    for label, colour in enumerate(colours or ()):
        palette[3 * label : 3 * label + 3] = [int(c) for c in colour]
    return palette
