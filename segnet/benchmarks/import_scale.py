"""The CVAT and Roboflow importers at scale: the ``data`` section's figures on importing
exports that hold every image and mask.

* images/s of ``import_cvat`` over a CVAT "Segmentation mask 1.1" export (10 labels of distinct
  RGB colours in ``labelmap.txt``, RGB colour masks);
* images/s of ``import_roboflow`` over a Roboflow "Semantic Segmentation Masks" export (10
  sparse pixel values in ``_classes.csv``, grayscale masks, split ``train``).

Both exports hold :data:`IMAGES` 640x480 pairs (:data:`IMAGES_QUICK` with ``--quick``): JPEG
photos (smooth colour fields with grain, about 100 kB, not trivially compressible) and masks of
5-10 class regions (rectangles and ellipses). Unlike ``import_coco`` these importers decode
every mask and every image (the size check), so their rates are lower. Each runs in one
process; its rate per core is images per second of that process's CPU time (robust to other
processes sharing the machine), given beside the wall-clock rate.

The files are :data:`DESIGNS` distinct images and masks, cycled: writing thousands of JPEGs
would cost more than the import it sets up, and the decoders do the same work on a repeated
file. Target: >= :data:`TARGET_RATE` (33) images per CPU second: a 10,000-image export (a large
hand-labelled project) imported in under 5 minutes on one core, a wait one sits through once
per dataset; both importers measured about twice that on the project's 2-core machine.
"""

from __future__ import annotations

import io
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from segnet.benchmarks import Result
from segnet.data.importers import import_cvat, import_roboflow
from segnet.data.importers.summary import ImportSummary

SECTION = "data"
IMAGES, IMAGES_QUICK = 2_000, 200
SIZE = (480, 640)  # height, width
CLASSES = 10
DESIGNS = 16
TARGET_RATE = 10_000 / 300  # images per CPU second: 10,000 images in 5 minutes
CVAT_COLOURS = [
    (0, 0, 0),
    (128, 0, 0),
    (0, 128, 0),
    (128, 128, 0),
    (0, 0, 128),
    (128, 0, 128),
    (0, 128, 128),
    (250, 50, 83),
    (61, 245, 61),
    (255, 204, 51),
]
ROBOFLOW_VALUES = [0, 1, 2, 3, 5, 8, 13, 21, 34, 55]  # sparse, as Roboflow's may be


def textured_photo(rng: np.random.Generator) -> Image.Image:
    """A :data:`SIZE` RGB photo: a bicubic colour field with Gaussian grain."""
    height, width = SIZE
    coarse = Image.fromarray(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8))
    smooth = np.asarray(coarse.resize((width, height), Image.BICUBIC), dtype=np.float32)
    grain = rng.normal(0.0, 12.0, (height, width, 3))
    return Image.fromarray(np.clip(smooth + grain, 0, 255).astype(np.uint8))


def class_regions(rng: np.random.Generator) -> np.ndarray:
    """(H, W) uint8 class indices 0..CLASSES-1: background 0 with 5-10 rectangles and
    ellipses of random classes drawn over each other."""
    height, width = SIZE
    labels = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(labels)
    for _ in range(int(rng.integers(5, 11))):
        x0, y0 = int(rng.integers(0, width - 80)), int(rng.integers(0, height - 80))
        box = (x0, y0, x0 + int(rng.integers(60, 300)), y0 + int(rng.integers(60, 240)))
        shape = draw.ellipse if rng.random() < 0.5 else draw.rectangle
        shape(box, fill=int(rng.integers(1, CLASSES)))
    return np.asarray(labels)


def _designs(seed: int) -> list[tuple[bytes, np.ndarray]]:
    """:data:`DESIGNS` (JPEG bytes, class indices) pairs to cycle through."""
    rng = np.random.default_rng(seed)
    return [(_encoded(textured_photo(rng), "JPEG"), class_regions(rng)) for _ in range(DESIGNS)]


def _encoded(image: Image.Image, fmt: str) -> bytes:
    """``image`` as a JPEG (quality 90) or PNG (Pillow's default level) file's bytes."""
    buffer = io.BytesIO()
    image.save(buffer, fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    return buffer.getvalue()


def write_cvat_export(root: Path, count: int, seed: int = 0) -> list[np.ndarray]:
    """A CVAT Segmentation mask 1.1 export of ``count`` items (subset ``train``) at ``root``;
    returns each item's (H, W) class indices, in item order."""
    designs = _designs(seed)
    colours = np.asarray(CVAT_COLOURS, dtype=np.uint8)
    masks = [_encoded(Image.fromarray(colours[labels]), "PNG") for _, labels in designs]
    for folder in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (root / folder).mkdir(parents=True)
    lines = ["# label:color_rgb:parts:actions"]
    lines += [f"class{i}:{r},{g},{b}::" for i, (r, g, b) in enumerate(CVAT_COLOURS)]
    (root / "labelmap.txt").write_text("\n".join(lines) + "\n")
    names = [f"frame_{i:06d}" for i in range(count)]
    for i, name in enumerate(names):
        (root / "JPEGImages" / f"{name}.jpg").write_bytes(designs[i % DESIGNS][0])
        (root / "SegmentationClass" / f"{name}.png").write_bytes(masks[i % DESIGNS])
    (root / "ImageSets" / "Segmentation" / "train.txt").write_text("\n".join(names) + "\n")
    return [designs[i % DESIGNS][1] for i in range(count)]


def write_roboflow_export(root: Path, count: int, seed: int = 0) -> list[np.ndarray]:
    """A Roboflow Semantic Segmentation Masks export of ``count`` pairs (split ``train``) at
    ``root``; returns each pair's (H, W) class indices, in name order."""
    designs = _designs(seed)
    values = np.asarray(ROBOFLOW_VALUES, dtype=np.uint8)
    masks = [_encoded(Image.fromarray(values[labels]), "PNG") for _, labels in designs]
    split = root / "train"
    split.mkdir(parents=True)
    rows = ["Pixel Value, Class"] + [f"{v}, class{i}" for i, v in enumerate(ROBOFLOW_VALUES)]
    (split / "_classes.csv").write_text("\n".join(rows) + "\n")
    for i in range(count):
        name = f"img{i:06d}_jpg.rf.{i:032x}"
        (split / f"{name}.jpg").write_bytes(designs[i % DESIGNS][0])
        (split / f"{name}_mask.png").write_bytes(masks[i % DESIGNS])
    return [designs[i % DESIGNS][1] for i in range(count)]


def timed_import(
    importer: Callable[[Path, Path], ImportSummary], export: Path, output: Path
) -> tuple[ImportSummary, float, float]:
    """``importer(export, output)``'s summary, wall-clock seconds and CPU seconds of this
    process."""
    start, start_cpu = time.perf_counter(), time.process_time()
    summary = importer(export, output)
    return summary, time.perf_counter() - start, time.process_time() - start_cpu


def import_rates(fmt: str, count: int) -> tuple[float, float]:
    """Images per wall-clock second and per CPU second of the ``fmt`` ("cvat" or "roboflow")
    importer over its generated export of ``count`` pairs.

    Raises:
        RuntimeError: the import skipped an item or wrote another count (a failed import must
            not pass for a fast one).
    """
    write, importer = {
        "cvat": (write_cvat_export, import_cvat),
        "roboflow": (write_roboflow_export, import_roboflow),
    }[fmt]
    with tempfile.TemporaryDirectory(prefix=f"segnet-bench-{fmt}-") as tmp:
        write(Path(tmp) / "export", count)
        summary, seconds, cpu_seconds = timed_import(
            importer, Path(tmp) / "export", Path(tmp) / "imported"
        )
    if summary.images != {"train": count} or summary.skipped:
        raise RuntimeError(
            f"the benchmark's {fmt} export did not import whole: {summary.images}, "
            f"skipped {[str(s) for s in summary.skipped[:3]]}"
        )
    return count / seconds, count / cpu_seconds


def run(quick: bool) -> list[Result]:
    count = IMAGES_QUICK if quick else IMAGES
    results = []
    for fmt in ("cvat", "roboflow"):
        rate, rate_per_core = import_rates(fmt, count)
        case = (
            f"import_{fmt}: {count:,} {SIZE[1]}x{SIZE[0]} JPEG + PNG mask pairs, "
            f"{CLASSES} classes, 1 process"
        )
        results += [
            Result(SECTION, case, "throughput (wall clock)", rate, "img/s"),
            Result(
                SECTION,
                case,
                "throughput per core (CPU time)",
                rate_per_core,
                "img/s",
                f">= {TARGET_RATE:.3g} img/s per core (10,000 in 5 min)",
                rate_per_core >= TARGET_RATE,
            ),
        ]
    return results
