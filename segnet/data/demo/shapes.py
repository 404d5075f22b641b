"""The demo classes' silhouettes: ``SHAPES[cls]`` lists (polygon in [-1, 1]^2, fill) drawn in
order, fill 0 cutting a hole; :func:`draw_shape` rasterises one scaled, rotated and placed."""

from __future__ import annotations

from functools import cache

import numpy as np
from PIL import Image, ImageDraw

Array = np.ndarray


def _disc(cx: float, cy: float, r: float, n: int = 40, arc: float = 2 * np.pi) -> Array:
    t = np.linspace(0, arc, n, endpoint=arc < 2 * np.pi)
    return np.stack([cx + r * np.cos(t), cy + r * np.sin(t)], 1)


def _box(x0: float, y0: float, x1: float, y1: float) -> Array:
    return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], float)


def _poly(*points: tuple[float, float]) -> Array:
    return np.array(points, float)


def _star(points: int, inner: float) -> Array:
    t = np.linspace(0, 2 * np.pi, 2 * points, endpoint=False) - np.pi / 2
    r = np.where(np.arange(2 * points) % 2 == 0, 1.0, inner)
    return np.stack([r * np.cos(t), r * np.sin(t)], 1)


_FLOWER = [(_disc(0.6 * np.cos(a), 0.6 * np.sin(a), 0.4), 1) for a in np.arange(6) * np.pi / 3]
SHAPES: dict[int, list[tuple[Array, int]]] = {
    1: [(_box(-1, -0.2, 1, 0.2), 1), (_poly((-0.3, -1), (0.2, 0), (-0.3, 1), (-0.05, 0)), 1)]
    + [(_poly((-1, -0.5), (-0.7, 0), (-1, 0.5)), 1)],
    2: [(_disc(-0.5, 0, 0.48), 1), (_disc(0.5, 0, 0.48), 1), (_box(-0.5, -0.15, 0.5, 0.15), 1)]
    + [(_disc(-0.5, 0, 0.22), 0), (_disc(0.5, 0, 0.22), 0)],
    3: [(_poly((-1, -0.8), (1, 0), (-1, 0.8)), 1)],
    4: [(_disc(0, 0, 1), 1), (_disc(0.6, 0, 0.8), 0)],
    5: [(_box(-1, -0.5, 0.3, 0.5), 1), (_box(0.2, -0.25, 1, 0.25), 1)],
    6: [(_box(-1, -0.6, 1, 0.6), 1)]
    + [(_box(x, -0.4, x + 0.45, 0.0), 0) for x in (-0.8, -0.22, 0.36)],
    7: [
        (_box(-1, -0.05, 1, 0.5), 1),
        (_poly((-0.6, -0.05), (-0.3, -0.6), (0.4, -0.6), (0.7, -0.05)), 1),
    ],
    8: [(_star(5, 0.45), 1)],
    9: [(_box(-0.8, -1, -0.2, 1), 1), (_box(-0.8, 0.3, 0.8, 0.9), 1)],
    10: [(_disc(0, 0, 1, 48) * [1, 0.65], 1)],
    11: [(_box(-1, -0.9, 1, -0.4), 1), (_box(-0.26, -0.45, 0.26, 1), 1)],
    12: [(_disc(0, 0, 1, 6), 1)],
    13: [(_box(-1, -0.26, 0.2, 0.26), 1), (_poly((0.1, -0.75), (1, 0), (0.1, 0.75)), 1)],
    14: [(_disc(0, 0, 1), 1), (_disc(0, 0, 0.5), 0)],
    15: [
        (_disc(0, -0.62, 0.36), 1),
        (_poly((-0.3, -0.32), (0.3, -0.32), (0.55, 1), (-0.55, 1)), 1),
    ],
    16: [(_disc(0, 0.1, 0.9, 21, -np.pi), 1)]
    + [(_poly((-0.45, 0.1), (0.45, 0.1), (0.3, 1), (-0.3, 1)), 1)],
    17: [*_FLOWER, (_disc(0, 0, 0.55), 1)],
    18: [(_box(-1, -0.7, 1, 0.7), 1), (_box(-0.45, -0.7, 0.45, 0.15), 0)],
    19: [(_poly((-1, -0.45), (0.6, -0.45), (1, 0.45), (-0.6, 0.45)), 1)],
    20: [(_box(-1, -1, 1, 1), 1), (_box(-0.5, -0.5, 0.5, 0.5), 0)],
}


@cache
def fill_fraction(cls: int) -> float:
    """Share of the [-1, 1]^2 box that class ``cls``'s silhouette covers."""
    mask = draw_shape(cls, (128, 128), 64.0, 64.0, (60.0, 60.0), 0.0)
    return float(mask.mean()) * (128 / 120) ** 2


def draw_shape(
    cls: int, size: tuple[int, int], cx: float, cy: float, half: tuple[float, float], angle: float
) -> Array:
    """Boolean (H, W) mask of the silhouette scaled by ``half`` px, rotated, centred at (cx, cy)."""
    h, w = size
    canvas = Image.new("L", (w, h), 0)
    draw = ImageDraw.Draw(canvas)
    c, s = np.cos(angle), np.sin(angle)
    rotation = np.array([[c, s], [-s, c]])
    for points, fill in SHAPES[cls]:
        xy = (points * half) @ rotation + (cx, cy)
        draw.polygon(xy.ravel().tolist(), fill=255 * fill)
    return np.asarray(canvas) > 0
