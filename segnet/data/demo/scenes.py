"""One demo scene: a textured background and 1-4 occluding objects, with VOC's void band.

Colours come from one palette shared by every class and the background, so colour never tells
the class; see :mod:`segnet.data.demo` for the design.
"""

from __future__ import annotations

import colorsys

import numpy as np
from PIL import Image, ImageFilter

from segnet.data.classes import IGNORE_INDEX
from segnet.data.demo.shapes import draw_shape, fill_fraction
from segnet.data.demo.textures import TEXTURES, smooth_noise

Array = np.ndarray


# One palette shared by all classes and the background.
def _make_palette() -> Array:
    colours = [
        colorsys.hsv_to_rgb(hue / 12, sat, val)
        for sat, val in ((0.85, 0.35), (0.75, 0.7), (0.35, 0.95))
        for hue in range(12)
    ]
    colours += [(0.12,) * 3, (0.5,) * 3, (0.9,) * 3]
    return np.array(colours, np.float32) * 255


_PALETTE = _make_palette()
_LUMA = _PALETTE @ np.array([0.299, 0.587, 0.114], np.float32)


def _colour_pair(rng: np.random.Generator, min_contrast: float) -> tuple[Array, Array]:
    first = rng.integers(len(_PALETTE))
    partners = np.flatnonzero(np.abs(_LUMA - _LUMA[first]) >= min_contrast)
    second = rng.choice(partners)
    jitter = rng.uniform(-20, 20, (2, 3)).astype(np.float32)
    return _PALETTE[first] + jitter[0], _PALETTE[second] + jitter[1]


def _background(rng: np.random.Generator, h: int, w: int, x: Array, y: Array) -> Array:
    """Float (H, W, 3): low-contrast clouds blended with a linear gradient."""
    first, second = _colour_pair(rng, 0.0)
    second = first + 0.6 * (second - first)
    clouds = smooth_noise(rng, (h, w), rng.uniform(24, 64))
    angle = rng.uniform(0, 2 * np.pi)
    ramp = x * np.cos(angle) + y * np.sin(angle)
    ramp = (ramp - ramp.min()) / max(float(np.ptp(ramp)), 1e-6)
    mix = rng.uniform(0.4, 0.8)
    field = mix * clouds + (1 - mix) * ramp
    return first + field[..., None] * (second - first)


# --- scenes
def _side(rng: np.random.Generator) -> int:
    while True:
        side = int(rng.integers(96, 257))
        if side % 32:
            return side


def _place(
    rng: np.random.Generator, cls: int, owner: Array, areas: list[int], size: float
) -> tuple[Array, float, float] | None:
    """Mask and centre of a new object that leaves every earlier one >= half visible, or None."""
    h, w = owner.shape
    before = np.bincount(owner[owner >= 0], minlength=len(areas))
    for _ in range(20):
        half = size / (2 * np.sqrt(fill_fraction(cls)))
        aspect = rng.uniform(0.8, 1.25)
        cx, cy = rng.uniform(0.15, 0.85) * w, rng.uniform(0.15, 0.85) * h
        angle = rng.uniform(0, 2 * np.pi)
        mask = draw_shape(cls, (h, w), cx, cy, (half * aspect, half / aspect), angle)
        hidden = np.bincount(owner[mask & (owner >= 0)], minlength=len(areas))
        if mask.sum() >= 0.6 * size**2 and np.all(before - hidden >= 0.5 * np.array(areas)):
            return mask, cx, cy
        size *= 0.95
    return None


def render_scene(rng: np.random.Generator, classes: list[int]) -> tuple[Array, Array]:
    """One scene: uint8 image (H, W, 3) and uint8 label map (H, W) in 0..20 and 255.

    ``classes`` are drawn back to front; one that cannot be placed visibly is skipped.
    """
    h, w = _side(rng), _side(rng)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    image = _background(rng, h, w, x, y)
    label = np.zeros((h, w), np.uint8)
    owner = np.full((h, w), -1, np.int64)
    areas: list[int] = []
    crowding = 1.0 if len(classes) <= 2 else 0.85
    for cls in classes:
        size = np.sqrt(h * w) * crowding * np.exp(rng.uniform(np.log(0.3), np.log(0.9)))
        size = max(size, 32.0)
        placed = _place(rng, cls, owner, areas, size)
        if placed is None:
            continue
        mask, cx, cy = placed
        owner[mask] = len(areas)
        areas.append(int(mask.sum()))
        label[mask] = cls
        # A few degrees of jitter and +-12% in period keep textures from being pixel-exact.
        turn = np.deg2rad(rng.uniform(-6, 6))
        stretch = rng.uniform(0.88, 1.12)
        dx, dy = (x - cx) / stretch, (y - cy) / stretch
        u, v = dx * np.cos(turn) + dy * np.sin(turn), -dx * np.sin(turn) + dy * np.cos(turn)
        texture = TEXTURES[cls](u, v, rng)
        first, second = _colour_pair(rng, 80.0)
        image[mask] = first + texture[mask][:, None] * (second - first)
    image += rng.normal(0, 3, image.shape).astype(np.float32)
    label[_boundary(label)] = IGNORE_INDEX
    return np.clip(image, 0, 255).round().astype(np.uint8), label


def _boundary(label: Array) -> Array:
    """Pixels within 2 px (chessboard distance) of a label change: VOC's void band."""
    img = Image.fromarray(label)
    return np.asarray(img.filter(ImageFilter.MaxFilter(5))) != np.asarray(
        img.filter(ImageFilter.MinFilter(5))
    )
