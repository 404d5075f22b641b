"""A synthetic dataset in Pascal VOC 2012's exact on-disk layout, for offline demos and tests.

Each scene is a textured background (class 0) with 1-4 objects of the 20 VOC object classes
drawn over it, later objects occluding earlier ones (every object keeps at least half of its
area visible). A class is its *shape and texture*, never its colour: every object gets two
colours drawn from one shared, jittered palette (at least 80 levels of luma apart, so the texture
is high-contrast), and so does the background.

=============  ===========================  ==============================================
class          silhouette                   texture (period in px, orientation in image)
=============  ===========================  ==============================================
aeroplane      fuselage, wings and tail     horizontal stripes, 10
bicycle        two rings joined by a bar    vertical stripes, 10
bird           long triangle                diagonal stripes (45 deg), 10
boat           crescent                     diamond checkerboard (45 deg), 14
bottle         body with a neck             checkerboard, 14
bus            rectangle with 3 windows     basket weave: 16 px cells of 3 stripes
car            body with a cabin            filled dots on a grid, 12
cat            five-pointed star            thin concentric rings about the centre, 10
chair          L shape                      soft ramps with a hard edge, along x, 12
cow            ellipse                      grain: random 4 px blocks
diningtable    T shape                      axis-aligned grid lines, 12
dog            hexagon                      vertical bricks, 20 x 10
horse          arrow                        horizontal zigzag (chevron) stripes, 10
motorbike      ring                         vertical wavy stripes, 10
person         head over a trapezoid body   bricks, 10 x 20
pottedplant    dome on a pot                marble: continuous-tone blobs about 7 px across
sheep          flower of six discs          hollow rings on a grid, 12
sofa           U shape                      thin diagonal cross-hatch, 14
train          parallelogram                plaid (three tones), 12
tvmonitor      square frame                 contour lines of smooth noise
=============  ===========================  ==============================================

The background is smooth, low-frequency clouds plus a linear gradient, lower in contrast than
any object texture, so a 16-32 px receptive field is enough to tell every class apart, while
the silhouettes (shapes rotate freely, texture orientation is fixed up to a few degrees) give
the boundaries. Training flips images left-right, so every texture is its own mirror image
(bird's 45 deg stripes mirror to 135 deg, which no other class uses). Objects vary 3x in scale
(square root of area 0.3-0.9 of the image's, at least 32 px); image sides are 96-256 px and
never multiples of 32; a 255 ("void") band 4-5 px wide covers every label boundary, as in VOC.
Every image has its own seed derived from (seed, split, index), and the classes of a split are
dealt out of shuffled decks of all 20, so class counts are balanced and files are
byte-identical for a given seed.

Generation writes into ``root/.demo_partial/`` and writes a completion marker last, then renames
the finished ``VOCdevkit`` into place, so an interrupted run never looks complete.
"""

from __future__ import annotations

import colorsys
import json
import shutil
from collections.abc import Callable
from functools import cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from segnet.data.voc import IGNORE_INDEX, VOC_CLASSES, voc_palette

FORMAT_VERSION = 2
"""Stamped into the completion marker: bump it whenever the drawing changes, so that trees made
by an older generator are regenerated instead of reused."""
MARKER = "demo_complete.json"
_PARTIAL = ".demo_partial"
_SPLIT_CODES = {"train": 0, "val": 1}

Array = np.ndarray


# --- textures: (x, y, rng) -> float32 in [0, 1]; x, y are pixel offsets from the object centre.
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


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], spacing: float) -> Array:
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
    return _smooth_noise(rng, x.shape, 7.0)


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
    return _stripes(_smooth_noise(rng, x.shape, 12.0) * 4, 1, 0.25)


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


# --- silhouettes: lists of (polygon in [-1, 1]^2, fill) drawn in order; fill 0 cuts a hole.
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
def _fill_fraction(cls: int) -> float:
    """Share of the [-1, 1]^2 box that class ``cls``'s silhouette covers."""
    mask = _draw_shape(cls, (128, 128), 64.0, 64.0, (60.0, 60.0), 0.0)
    return float(mask.mean()) * (128 / 120) ** 2


def _draw_shape(
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


# --- colours: one palette shared by all classes and the background.
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
    clouds = _smooth_noise(rng, (h, w), rng.uniform(24, 64))
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
        half = size / (2 * np.sqrt(_fill_fraction(cls)))
        aspect = rng.uniform(0.8, 1.25)
        cx, cy = rng.uniform(0.15, 0.85) * w, rng.uniform(0.15, 0.85) * h
        angle = rng.uniform(0, 2 * np.pi)
        mask = _draw_shape(cls, (h, w), cx, cy, (half * aspect, half / aspect), angle)
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


# --- the VOC tree
def _deal_classes(n: int, seed: int, split: str) -> list[list[int]]:
    """1-4 classes per image, dealt from shuffled decks of the 20 so counts stay balanced."""
    rng = np.random.default_rng([seed, _SPLIT_CODES[split]])
    counts = rng.integers(1, 5, n)
    decks = -(-int(counts.sum()) // 20)
    dealt = np.concatenate([rng.permutation(20) + 1 for _ in range(decks)]).tolist()
    bounds = np.concatenate([[0], np.cumsum(counts)])
    return [dealt[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


def _write_split(voc: Path, split: str, n: int, seed: int) -> list[str]:
    palette = voc_palette()
    ids = []
    for index, classes in enumerate(_deal_classes(n, seed, split)):
        rng = np.random.default_rng([seed, _SPLIT_CODES[split], index])
        image, label = render_scene(rng, classes)
        name = f"demo_{split}_{index:05d}"
        Image.fromarray(image).save(voc / "JPEGImages" / f"{name}.jpg", quality=90)
        mask = Image.fromarray(label)
        mask.putpalette(palette)
        mask.save(voc / "SegmentationClass" / f"{name}.png")
        ids.append(name)
    return ids


def generate_demo_dataset(
    root: str | Path, num_train: int = 600, num_val: int = 150, seed: int = 0
) -> Path:
    """Write ``root/VOCdevkit/VOC2012`` (images, palette masks, split files) and return ``root``.

    ``torchvision.datasets.VOCSegmentation(root, year="2012", image_set=...)`` reads the result
    for image_set train, val and trainval. A previous demo dataset under ``root`` is replaced;
    a ``VOCdevkit`` that is not one is never touched (FileExistsError).
    """
    if num_train < 1 or num_val < 1:
        raise ValueError(f"num_train and num_val must be >= 1, got {num_train} and {num_val}")
    root = Path(root)
    final = root / "VOCdevkit"
    if final.exists() and not (final / "VOC2012" / MARKER).is_file():
        raise FileExistsError(
            f"{final} exists and is not a finished segnet demo dataset (no VOC2012/{MARKER}); "
            "refusing to overwrite it: choose another root or remove that folder"
        )
    partial = root / _PARTIAL
    shutil.rmtree(partial, ignore_errors=True)  # what an interrupted run left
    voc = partial / "VOCdevkit" / "VOC2012"
    for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (voc / sub).mkdir(parents=True)
    splits = {s: _write_split(voc, s, n, seed) for s, n in (("train", num_train), ("val", num_val))}
    splits["trainval"] = splits["train"] + splits["val"]
    for name, ids in splits.items():
        (voc / "ImageSets" / "Segmentation" / f"{name}.txt").write_text("\n".join(ids) + "\n")
    params = {"version": FORMAT_VERSION, "num_train": num_train, "num_val": num_val, "seed": seed}
    params["classes"] = list(VOC_CLASSES)
    (voc / MARKER).write_text(json.dumps(params, indent=1) + "\n")
    if final.exists():
        final.rename(partial / "replaced")
    (partial / "VOCdevkit").rename(final)
    shutil.rmtree(partial)
    return root


def demo_dataset_ready(
    root: str | Path,
    num_train: int | None = None,
    num_val: int | None = None,
    seed: int | None = None,
) -> bool:
    """True if a generation under ``root`` finished (with these parameters, where given)."""
    voc = Path(root) / "VOCdevkit" / "VOC2012"
    try:
        params = json.loads((voc / MARKER).read_text())
    except (OSError, ValueError):
        return False
    wanted = {"version": FORMAT_VERSION, "num_train": num_train, "num_val": num_val, "seed": seed}
    if any(v is not None and params.get(k) != v for k, v in wanted.items()):
        return False
    return all(
        (voc / "ImageSets" / "Segmentation" / f"{s}.txt").is_file()
        for s in ("train", "val", "trainval")
    )
