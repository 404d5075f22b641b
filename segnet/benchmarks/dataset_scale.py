"""A practitioner's dataset at scale: the ``data`` section's figures on listing and importing.

* seconds ``data=folder`` takes to list and pair 100,000 image/mask pairs (target <= 10 s;
  5,000 with ``--quick``): a generated tree of empty files, 90% train / 10% val in subfolders
  of 1,000, listed as the data module lists them (no file is opened, so empty files are exact;
  just written, the folder entries are in the OS's cache, as on a second run);
* images/s of ``import_coco`` over a COCO file of 100,000 polygons (target >= 200 images/s per
  core; 5,000 polygons with ``--quick``): 640x480 images with 7 instances each (COCO 2017
  train averages 7.3), polygons of 8-24 vertices over 80 sparse category ids. The importer
  never decodes an image, so the image files are empty. It runs in one process; its rate per
  core is images per second of that process's CPU time (robust to other processes sharing the
  machine), given beside the wall-clock rate;
* how many times as fast :mod:`segnet.data.importers.coco_rle` gives an instance's box mask as
  ``pycocotools.mask.decode`` of its whole frame (3,000 such polygons, 500 with ``--quick``;
  median of interleaved rounds of CPU time): the reason the importer reads runs itself.
"""

from __future__ import annotations

import json
import math
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from pycocotools import mask as coco_mask

from segnet.benchmarks import Result
from segnet.data.folder import list_folder_pairs
from segnet.data.importers import import_coco
from segnet.data.importers.coco_rle import decode_columns, run_lengths

SECTION = "data"
FOLDER_PAIRS, FOLDER_PAIRS_QUICK = 100_000, 5_000
FOLDER_TARGET_S = 10.0
_PER_SUBFOLDER = 1000
COCO_POLYGONS, COCO_POLYGONS_QUICK = 100_000, 5_000
COCO_TARGET_RATE = 200.0
COCO_SIZE = (480, 640)  # height, width
COCO_INSTANCES_PER_IMAGE = 7
COCO_CATEGORIES = 80
COCO_DECODE_INSTANCES, COCO_DECODE_INSTANCES_QUICK = 3000, 500
COCO_DECODE_ROUNDS = 10


def write_empty_folder_tree(root: Path, count: int) -> None:
    """``count`` empty ``images/<split>/<group>/NAME.jpg`` + ``masks/.../NAME.png`` pairs."""
    made: set[Path] = set()
    for i in range(count):
        split = "val" if i % 10 == 9 else "train"
        group = f"g{i // _PER_SUBFOLDER:03d}"
        for folder, ext in (("images", ".jpg"), ("masks", ".png")):
            where = root / folder / split / group
            if where not in made:
                where.mkdir(parents=True)
                made.add(where)
            (where / f"im_{i:06d}{ext}").touch()


def folder_listing_seconds(count: int) -> float:
    """Seconds :func:`list_folder_pairs` takes over a tree of ``count`` empty pairs."""
    with tempfile.TemporaryDirectory(prefix="segnet-bench-folder-") as tmp:
        root = Path(tmp)
        write_empty_folder_tree(root, count)
        start = time.perf_counter()
        listing = list_folder_pairs(root)
        seconds = time.perf_counter() - start
    paired = sum(len(pairs) for pairs in listing.splits.values())
    if listing.problems or paired != count:
        raise RuntimeError(f"the benchmark's tree did not pair: {listing.problems[:3]}")
    return seconds


def star_polygon(rng: np.random.Generator) -> list[float]:
    """A COCO polygon ``[x0, y0, x1, y1, ...]`` of 8-24 vertices around a random centre of a
    :data:`COCO_SIZE` image, 10-120 pixels in radius."""
    height, width = COCO_SIZE
    vertices = int(rng.integers(8, 25))
    angles = np.sort(rng.uniform(0, 2 * np.pi, vertices))
    radii = rng.uniform(10, 120) * rng.uniform(0.6, 1.0, vertices)
    cx, cy = rng.uniform(50, width - 50), rng.uniform(50, height - 50)
    xs = np.clip(cx + radii * np.cos(angles), 0, width)
    ys = np.clip(cy + radii * np.sin(angles), 0, height)
    return np.stack([xs, ys], 1).ravel().round(2).tolist()


def write_coco_export(root: Path, polygons: int, seed: int = 0) -> int:
    """A COCO export at ``root`` (split ``train``) holding ``polygons`` star-shaped polygon
    instances, :data:`COCO_INSTANCES_PER_IMAGE` per image; returns the number of images."""
    rng = np.random.default_rng(seed)
    height, width = COCO_SIZE
    categories = [{"id": 2 * i + 1, "name": f"class{i}"} for i in range(COCO_CATEGORIES)]
    count = math.ceil(polygons / COCO_INSTANCES_PER_IMAGE)
    (root / "train").mkdir(parents=True)
    images, annotations = [], []
    for image_id in range(count):
        name = f"{image_id:012d}.jpg"
        images.append({"id": image_id, "file_name": name, "height": height, "width": width})
        (root / "train" / name).touch()
        for _ in range(min(COCO_INSTANCES_PER_IMAGE, polygons - len(annotations))):
            polygon = star_polygon(rng)
            annotations.append(
                {
                    "id": len(annotations),
                    "image_id": image_id,
                    "category_id": categories[int(rng.integers(COCO_CATEGORIES))]["id"],
                    "segmentation": [polygon],
                    "iscrowd": 0,
                    "area": 0.0,
                    "bbox": [0, 0, 0, 0],
                }
            )
    (root / "annotations").mkdir()
    document = {"images": images, "annotations": annotations, "categories": categories}
    (root / "annotations" / "instances_train.json").write_text(json.dumps(document))
    return count


def coco_import_rates(polygons: int) -> tuple[float, float]:
    """Images per wall-clock second and per CPU second of :func:`import_coco` (json read,
    decoding, masks written) over :func:`write_coco_export`'s export of ``polygons`` instances."""
    with tempfile.TemporaryDirectory(prefix="segnet-bench-coco-") as tmp:
        count = write_coco_export(Path(tmp) / "coco", polygons)
        start, start_cpu = time.perf_counter(), time.process_time()
        summary = import_coco(Path(tmp) / "coco", Path(tmp) / "imported")
        seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - start_cpu
    if summary.images != {"train": count} or summary.skipped:
        raise RuntimeError(f"the benchmark's export did not import whole: {summary.images}")
    return count / seconds, count / cpu_seconds


def box_reading_speedup(instances: int, rounds: int = COCO_DECODE_ROUNDS) -> float:
    """How many times as fast :mod:`~segnet.data.importers.coco_rle` gives ``instances``
    star-polygon instances' box masks as ``pycocotools.mask.decode`` of their whole frames
    does: the median over ``rounds`` interleaved rounds, in alternating order."""
    rng = np.random.default_rng(1)
    height, width = COCO_SIZE
    rles = [coco_mask.frPyObjects([star_polygon(rng)], height, width)[0] for _ in range(instances)]
    boxes = [[int(side) for side in coco_mask.toBbox(rle)] for rle in rles]

    def whole_frames() -> None:
        for rle, (left, top, box_width, box_height) in zip(rles, boxes, strict=True):
            coco_mask.decode(rle)[top : top + box_height, left : left + box_width].astype(bool)

    def box_windows() -> None:
        for rle, (left, top, box_width, box_height) in zip(rles, boxes, strict=True):
            lengths = run_lengths(rle["counts"], height, width)
            decode_columns(lengths, height, left, left + box_width)[top : top + box_height]

    ratios = []
    for round_ in range(rounds):
        seconds = {}
        for way in (whole_frames, box_windows) if round_ % 2 else (box_windows, whole_frames):
            start = time.process_time()
            way()
            seconds[way] = time.process_time() - start
        ratios.append(seconds[whole_frames] / seconds[box_windows])
    return statistics.median(ratios)


def run(quick: bool) -> list[Result]:
    pairs = FOLDER_PAIRS_QUICK if quick else FOLDER_PAIRS
    seconds = folder_listing_seconds(pairs)
    polygons = COCO_POLYGONS_QUICK if quick else COCO_POLYGONS
    rate, rate_per_core = coco_import_rates(polygons)
    coco_case = (
        f"import_coco: {polygons:,} polygons, {COCO_INSTANCES_PER_IMAGE} per "
        f"{COCO_SIZE[1]}x{COCO_SIZE[0]} image, 1 process"
    )
    instances = COCO_DECODE_INSTANCES_QUICK if quick else COCO_DECODE_INSTANCES
    speedup = box_reading_speedup(instances)
    return [
        Result(
            SECTION,
            f"data=folder: list and pair {pairs:,} pairs (empty files)",
            "time",
            seconds,
            "s",
            f"<= {FOLDER_TARGET_S:g} s for {FOLDER_PAIRS:,}",
            seconds * FOLDER_PAIRS / pairs <= FOLDER_TARGET_S,
        ),
        Result(SECTION, coco_case, "throughput (wall clock)", rate, "img/s"),
        Result(
            SECTION,
            coco_case,
            "throughput per core (CPU time)",
            rate_per_core,
            "img/s",
            f">= {COCO_TARGET_RATE:g} img/s per core",
            rate_per_core >= COCO_TARGET_RATE,
        ),
        Result(
            SECTION,
            f"COCO instance masks: coco_rle's box vs pycocotools' whole frame, {instances:,} "
            f"{COCO_SIZE[1]}x{COCO_SIZE[0]} polygons",
            "speed ratio (median of interleaved rounds)",
            speedup,
            "x",
            "> 1 (why coco_rle exists)",
            speedup > 1,
        ),
    ]
