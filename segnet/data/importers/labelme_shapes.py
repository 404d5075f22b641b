"""labelme shapes -> a class map, pixel for pixel as labelme's own ``shapes_to_label`` does.

The reference is labelme 7.9.1 (``labelme/_utils/_mask.py``; the same code as
``examples/utils.py``, which ``labelme2voc.py`` uses): each shape is drawn with Pillow's
``ImageDraw`` with outline and fill, in file order, a later shape painting over an earlier one:

- ``polygon`` (and a shape without ``shape_type``, as labelme's first versions wrote) and
  ``oriented_rectangle``: ``polygon(points)``;
- ``rectangle``: ``rectangle`` between its two corners, in either order;
- ``circle``: ``ellipse`` around the first point, radius = its distance to the second;
- ``line``: ``line`` 10 px wide; ``linestrip``: the same, joints rounded (``joint="curve"``);
- ``point``: ``ellipse`` of radius 5;
- ``mask``: the shape's own PNG (base64), its top-left corner at the first point, rounded.

The same point counts as labelme's are required (a polygon 3 or more, a linestrip 2 or more,
a rectangle, line, circle or mask 2, a point 1, an oriented rectangle 4): labelme itself
refuses to draw any other, so such a file is better left out than guessed at.
"""

from __future__ import annotations

import base64
import binascii
import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

LINE_WIDTH = 10
POINT_RADIUS = 5
EXACT_POINTS = {
    "point": 1,
    "rectangle": 2,
    "line": 2,
    "circle": 2,
    "mask": 2,
    "oriented_rectangle": 4,
}
MIN_POINTS = {"polygon": 3, "linestrip": 2}
SHAPE_TYPES = frozenset(EXACT_POINTS) | frozenset(MIN_POINTS)


class ShapeError(ValueError):
    """A shape labelme would not draw; the message says which shape and why."""


@dataclass(frozen=True)
class Shape:
    """One labelme shape: ``points`` are (x, y) in pixels; ``mask`` (h, w) bool, only for
    ``shape_type == "mask"``."""

    label: str
    shape_type: str
    points: list[tuple[float, float]]
    mask: np.ndarray | None = None


def parse_shapes(raw_shapes: object) -> list[Shape]:
    """The ``shapes`` list of a labelme json as :class:`Shape` objects, in file order.

    Raises:
        ShapeError: not a list, or a shape without a text label, with malformed or too few or
            too many points, an unknown ``shape_type``, or a ``mask`` that is not a 2-D PNG.
    """
    if not isinstance(raw_shapes, list):
        raise ShapeError("'shapes' is not a list")
    return [_parse_shape(index, raw) for index, raw in enumerate(raw_shapes)]


def _parse_shape(index: int, raw: object) -> Shape:
    where = f"shapes[{index}]"
    if not isinstance(raw, dict):
        raise ShapeError(f"{where} is not an object")
    label = raw.get("label")
    if not isinstance(label, str):
        raise ShapeError(f"{where}: label {label!r} is not text")
    shape_type = raw.get("shape_type") or "polygon"
    if shape_type not in SHAPE_TYPES:
        raise ShapeError(
            f"{where} ({label}): shape_type {shape_type!r} is not one labelme draws into a "
            f"mask ({', '.join(sorted(SHAPE_TYPES))})"
        )
    points = _points(raw.get("points"), where)
    count = len(points)
    if count != EXACT_POINTS.get(shape_type, count) or count < MIN_POINTS.get(shape_type, 0):
        wanted = EXACT_POINTS.get(shape_type) or f"{MIN_POINTS[shape_type]} or more"
        raise ShapeError(f"{where} ({label}): a {shape_type} has {wanted} points, not {count}")
    mask = _decode_mask(raw.get("mask"), where) if shape_type == "mask" else None
    return Shape(label, shape_type, points, mask)


def _points(raw: object, where: str) -> list[tuple[float, float]]:
    def is_number(value: object) -> bool:
        return isinstance(value, int | float) and not isinstance(value, bool)

    if not isinstance(raw, list) or not all(
        isinstance(p, list) and len(p) == 2 and all(map(is_number, p)) for p in raw
    ):
        raise ShapeError(f"{where}: points must be a list of [x, y] numbers")
    if not all(math.isfinite(c) for point in raw for c in point):
        raise ShapeError(f"{where}: points must be finite")
    return [(point[0], point[1]) for point in raw]


def _decode_mask(encoded: object, where: str) -> np.ndarray:
    # labelme stores a mask shape's pixels as a base64 PNG (mode L, 0/1) of its bounding box.
    if not isinstance(encoded, str):
        raise ShapeError(f"{where}: a mask shape without its mask (a base64 PNG)")
    try:
        with Image.open(io.BytesIO(base64.b64decode(encoded))) as image:
            mask = np.asarray(image).astype(bool)
    except (OSError, ValueError, binascii.Error) as err:
        raise ShapeError(f"{where}: its mask is not a base64 PNG ({err})") from err
    if mask.ndim != 2:
        raise ShapeError(f"{where}: its mask is not a one-channel PNG")
    return mask


def shape_area(shape: Shape, height: int, width: int) -> np.ndarray:
    """(height, width) bool: the pixels ``shape`` covers, as labelme's ``shape_to_mask``.

    Raises:
        ShapeError: a mask shape whose PNG does not fill the box its two points give.
    """
    if shape.shape_type == "mask":
        return _placed_mask(shape, height, width)
    canvas = Image.fromarray(np.zeros((height, width), dtype=np.uint8))
    draw = ImageDraw.Draw(canvas)
    points = shape.points
    # outline=1 as labelme passes it: Pillow 13's fill already covers the outline's pixels
    # (no difference on 3,000 random polygons, boxes and ellipses), another Pillow may not.
    if shape.shape_type in ("polygon", "oriented_rectangle"):
        draw.polygon(points, outline=1, fill=1)
    elif shape.shape_type == "rectangle":
        (x0, y0), (x1, y1) = points
        box = ((min(x0, x1), min(y0, y1)), (max(x0, x1), max(y0, y1)))
        draw.rectangle(box, outline=1, fill=1)
    elif shape.shape_type in ("circle", "point"):
        (cx, cy) = points[0]
        radius = POINT_RADIUS
        if shape.shape_type == "circle":
            # labelme's formula: math.dist may round the last bit differently.
            (px, py) = points[1]
            radius = math.sqrt((cx - px) ** 2 + (cy - py) ** 2)
        draw.ellipse(((cx - radius, cy - radius), (cx + radius, cy + radius)), outline=1, fill=1)
    elif shape.shape_type == "line":
        draw.line(points, fill=1, width=LINE_WIDTH)
    else:  # linestrip: its joints rounded, so a wide line has no notch at a turn
        draw.line(points, fill=1, width=LINE_WIDTH, joint="curve")
    return np.array(canvas, dtype=bool)


def _placed_mask(shape: Shape, height: int, width: int) -> np.ndarray:
    assert shape.mask is not None
    corners = np.asarray(shape.points)
    (x1, y1), (x2, y2) = corners.round().astype(int)
    # labelme's rule: whole-pixel corners give an inclusive box (the PNG cropped to it);
    # fractional corners, whose rounding could shrink or grow the box, keep the PNG's size.
    if np.array_equal(corners, np.trunc(corners)):
        box_height, box_width = y2 - y1 + 1, x2 - x1 + 1
    else:
        box_height, box_width = shape.mask.shape
    covered = np.zeros((height, width), dtype=bool)
    top, bottom = max(y1, 0), min(y1 + box_height, height)
    left, right = max(x1, 0), min(x1 + box_width, width)
    if top < bottom and left < right:
        patch = shape.mask[top - y1 : bottom - y1, left - x1 : right - x1]
        if patch.shape != (bottom - top, right - left):
            raise ShapeError(
                f"mask shape ({shape.label}): its PNG is {shape.mask.shape[1]}x"
                f"{shape.mask.shape[0]} px, smaller than its box {box_width}x{box_height}"
            )
        covered[top:bottom, left:right] = patch
    return covered


def paint(
    shapes: Sequence[Shape], value_of: Mapping[str, int], height: int, width: int
) -> np.ndarray:
    """(height, width) uint8 map: 0 where no shape lies, else ``value_of[label]`` of the last
    shape (in file order) covering the pixel.

    Raises:
        ShapeError: see :func:`shape_area`. KeyError: a label ``value_of`` lacks.
    """
    labels = np.zeros((height, width), dtype=np.uint8)
    for shape in shapes:
        labels[shape_area(shape, height, width)] = value_of[shape.label]
    return labels
