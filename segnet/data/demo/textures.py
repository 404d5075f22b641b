"""The demo classes' textures: ``TEXTURES[cls](x, y, rng)`` -> float32 (H, W) in [0, 1].

x and y are pixel offsets from the object's centre (after a small random turn and stretch), so
a texture is fixed to its object. Every texture is its own mirror image, since training flips
images left-right; see the table in :mod:`segnet.data.demo`.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from PIL import Image

Array = np.ndarray


def _frac(a: Array) -> Array:
    return a - np.floor(a)


def _stripes(u: Array, period: float, duty: float = 0.5) -> Array:
    return (_frac(u / period) < duty).astype(np.float32)


def _cell(a: Array, period: float) -> Array:
    """Offset from the centre of the grid cell, in [-period/2, period/2)."""
    return (_frac(a / period) - 0.5) * period


def _lines(x: Array, y: Array, period: float = 12.0, width: float = 3.5) -> Array:
    return ((_frac(x / period) * period < width) | (_frac(y / period) * period < width)).astype(
        np.float32
    )


def _checker(x: Array, y: Array, cell: float = 7.0) -> Array:
    return ((np.floor(x / cell) + np.floor(y / cell)) % 2).astype(np.float32)


def smooth_noise(rng: np.random.Generator, shape: tuple[int, int], spacing: float) -> Array:
    """Bicubic-upsampled uniform noise: blobs about ``spacing`` px across, in [0, 1]."""
    h, w = shape
    gh, gw = int(h / spacing) + 3, int(w / spacing) + 3
    coarse = Image.fromarray(rng.random((gh, gw), dtype=np.float32))
    fine = np.asarray(coarse.resize((int(gw * spacing), int(gh * spacing)), Image.BICUBIC))
    fine = fine[:h, :w]
    return (fine - fine.min()) / max(float(np.ptp(fine)), 1e-6)


def _grain(x: Array, y: Array, rng: np.random.Generator) -> Array:
    h, w = x.shape
    blocks = rng.random((h // 4 + 1, w // 4 + 1)) < 0.5
    return np.repeat(np.repeat(blocks, 4, 0), 4, 1)[:h, :w].astype(np.float32)


def _marble(x: Array, y: Array, rng: np.random.Generator) -> Array:
    """Continuous-tone, full-contrast blobs about 7 px across (the background's are 24-64 px)."""
    return smooth_noise(rng, x.shape, 7.0)


def _bricks(x: Array, y: Array) -> Array:
    row = np.floor(y / 10)
    shifted = x + (row % 2) * 10
    return ((_frac(y / 10) * 10 < 3) | (_frac(shifted / 20) * 20 < 3)).astype(np.float32)


def _basket_weave(x: Array, y: Array) -> Array:
    """16 px cells of three stripes, horizontal and vertical in turn."""
    across = (np.floor(x / 16) + np.floor(y / 16)) % 2 == 1
    return _stripes(np.where(across, x, y), 16 / 3)


def _contours(x: Array, y: Array, rng: np.random.Generator) -> Array:
    """Thin wandering lines: level lines of smooth noise, like a topographic map."""
    return _stripes(smooth_noise(rng, x.shape, 12.0) * 4, 1, 0.25)


_R45 = 0.7071
TEXTURES: dict[int, Callable[[Array, Array, np.random.Generator], Array]] = {
    1: lambda x, y, r: _stripes(y, 10),
    2: lambda x, y, r: _stripes(x, 10),
    3: lambda x, y, r: _stripes((x + y) * _R45, 10),
    4: lambda x, y, r: _checker((x + y) * _R45, (x - y) * _R45),
    5: lambda x, y, r: _checker(x, y),
    6: lambda x, y, r: _basket_weave(x, y),
    7: lambda x, y, r: (np.hypot(_cell(x, 12), _cell(y, 12)) < 4.0).astype(np.float32),
    8: lambda x, y, r: _stripes(np.hypot(x, y), 10, 0.35),
    9: lambda x, y, r: _frac(x / 12).astype(np.float32),
    10: _grain,
    11: lambda x, y, r: _lines(x, y),
    12: lambda x, y, r: _bricks(y, x),
    13: lambda x, y, r: _stripes(y + 5 * np.abs(2 * _frac(x / 12) - 1), 10),
    14: lambda x, y, r: _stripes(x + 3 * np.sin(y * (2 * np.pi / 14)), 10),
    15: lambda x, y, r: _bricks(x, y),
    16: _marble,
    17: lambda x, y, r: (np.abs(np.hypot(_cell(x, 12), _cell(y, 12)) - 3.8) < 1.3).astype(
        np.float32
    ),
    18: lambda x, y, r: _lines((x + y) * _R45, (x - y) * _R45, 14, 2.5),
    19: lambda x, y, r: 0.5 * (_stripes(x, 12) + _stripes(y, 12)),
    20: _contours,
}
