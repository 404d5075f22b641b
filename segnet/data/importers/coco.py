"""COCO instance annotations -> the segnet folder layout (see :mod:`segnet.data.importers.writer`).

Reads COCO's own layout: ``annotations/instances_<split>.json`` and the images of that split in
``<split>/``. Rules (docs/importing.md):

- classes: background 0, then every category of the json in ascending id order as 1..K (COCO's
  ids are sparse: 1..90 for 80 categories), named from the categories, with or without
  instances;
- every instance gets the pixels ``COCO.annToMask`` gives it: pycocotools builds its RLE as
  ``annToRLE`` does (polygons, uncompressed and compressed RLE) and
  :mod:`~segnet.data.importers.coco_rle` reads those runs inside the instance's box;
- pixels covered by instances of two different categories become 255, as in torchvision's
  references/segmentation/coco_utils.py, and so do crowd (``iscrowd=1``) regions: they hold
  many objects under one outline, not a boundary a model should learn;
- an image without annotations is all background; an image listed in the json whose file is
  missing is skipped, with its reason in the summary.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from pycocotools import mask as coco_mask
from tqdm import tqdm

from segnet.data.class_file import CLASSES_FILE, write_class_file
from segnet.data.classes import IGNORE_INDEX, class_colours, flat_palette
from segnet.data.images import DataError
from segnet.data.importers import writer
from segnet.data.importers.coco_rle import decode_columns, run_lengths
from segnet.data.importers.summary import ImportSummary, SkippedItem

ANNOTATIONS_GLOB = "instances_*.json"
_IMAGE_KEYS = ("id", "file_name", "height", "width")


def import_coco(
    input_dir: str | Path, output_dir: str | Path, overwrite: bool = False, progress: bool = False
) -> ImportSummary:
    """Convert the COCO export in ``input_dir`` into the folder layout at ``output_dir``;
    ``progress`` draws a bar over the images on stderr.

    Raises:
        DataError: no ``annotations/instances_<split>.json``, an unreadable or malformed json,
            splits with different categories, more than 254 categories, or ``output_dir``
            exists and ``overwrite`` is False. Nothing is left at ``output_dir`` then.
    """
    input_dir = Path(input_dir)
    annotation_files = sorted((input_dir / "annotations").glob(ANNOTATIONS_GLOB))
    if not annotation_files:
        raise DataError(f"{input_dir / 'annotations'}: no {ANNOTATIONS_GLOB} (COCO's layout)")
    datasets = {_split_name(path): (path, _load_json(path)) for path in annotation_files}
    categories = _categories(datasets)
    names = ["background", *(category["name"] for category in categories)]
    colours = class_colours(len(names))
    palette = flat_palette(colours)
    label_of = {category["id"]: label for label, category in enumerate(categories, start=1)}
    summary = ImportSummary(images={}, classes=names)
    total = sum(len(dataset["images"]) for _, dataset in datasets.values())
    with (
        writer.atomic_output(output_dir, overwrite) as staging,
        tqdm(total=total, unit="img", desc="import coco", disable=not progress) as bar,
    ):
        for split, (path, dataset) in datasets.items():
            summary.images[split] = _import_split(
                input_dir / split, path, dataset, label_of, staging, split, palette, summary, bar
            )
        write_class_file(staging / CLASSES_FILE, names, colours)
    return summary


def _import_split(
    image_dir: Path,
    json_path: Path,
    dataset: dict,
    label_of: dict[int, int],
    staging: Path,
    split: str,
    palette: list[int],
    summary: ImportSummary,
    bar: tqdm,
) -> int:
    annotations_of: dict[int, list[dict]] = {image["id"]: [] for image in dataset["images"]}
    for annotation in dataset.get("annotations", []):
        if annotation.get("image_id") not in annotations_of:
            raise DataError(
                f"{json_path}: annotation {annotation.get('id')} refers to image "
                f"{annotation.get('image_id')!r}, which the json does not list"
            )
        annotations_of[annotation["image_id"]].append(annotation)
    written = 0
    for image in dataset["images"]:
        bar.update()
        source = image_dir / image["file_name"]
        if not source.is_file():
            summary.skipped.append(SkippedItem(source, "listed in the json, file missing"))
            continue
        mask_path = staging / writer.MASKS_DIR / split / f"{source.stem}.png"
        if mask_path.exists():
            summary.skipped.append(SkippedItem(source, f"a second image named {source.stem}"))
            continue
        mask = semantic_mask(annotations_of[image["id"]], image, label_of, json_path)
        writer.write_pair(staging, Path(split, source.stem), source, mask, palette)
        written += 1
    return written


def semantic_mask(
    annotations: list[dict], image: dict, label_of: dict[int, int], json_path: Path
) -> np.ndarray:
    """(H, W) uint8 class map of one image: 0 background, ``label_of[category_id]`` where
    instances of one category lie, 255 where categories overlap or a crowd region lies."""
    height, width = int(image["height"]), int(image["width"])
    labels = np.zeros((height, width), dtype=np.uint8)
    ignored = np.zeros((height, width), dtype=bool)
    for annotation in annotations:
        category = annotation.get("category_id")
        if category not in label_of:
            raise DataError(
                f"{json_path}: annotation {annotation.get('id')} has category {category!r}, "
                "which the json's categories do not list"
            )
        # Only the instance's bounding box is touched: an object covers a small part of an
        # image, and full-frame array operations per instance dominated the import's time.
        box, covered = _decode(annotation, height, width, json_path)
        if annotation.get("iscrowd", 0):
            ignored[box] |= covered
            continue
        label = label_of[category]
        region = labels[box]
        ignored[box] |= covered & (region != 0) & (region != label)
        region[covered] = label
    labels[ignored] = IGNORE_INDEX
    return labels


def _decode(
    annotation: dict, height: int, width: int, json_path: Path
) -> tuple[tuple[slice, slice], np.ndarray]:
    """The instance's bounding box (rows, columns) and its (h, w) bool mask within that box."""
    # The three encodings COCO.annToRLE accepts: polygons, uncompressed RLE, compressed RLE.
    segmentation = annotation.get("segmentation")
    try:
        if isinstance(segmentation, list):
            rle = coco_mask.merge(coco_mask.frPyObjects(segmentation, height, width))
        elif isinstance(segmentation.get("counts"), list):
            rle = coco_mask.frPyObjects(segmentation, height, width)
        else:
            rle = segmentation
        size = tuple(int(side) for side in rle["size"])
        counts = rle["counts"]
    except (AttributeError, TypeError, ValueError, KeyError) as err:
        raise _undecodable(annotation, json_path, err) from err
    if size != (height, width):
        raise DataError(
            f"{json_path}: annotation {annotation.get('id')}: mask {size} but the "
            f"image is {(height, width)}"
        )
    try:
        lengths = run_lengths(counts, height, width)
        left, top, box_width, box_height = (int(side) for side in coco_mask.toBbox(rle))
    except (TypeError, ValueError) as err:
        raise _undecodable(annotation, json_path, err) from err
    box = (slice(top, top + box_height), slice(left, left + box_width))
    return box, decode_columns(lengths, height, left, left + box_width)[box[0]]


def _undecodable(annotation: dict, json_path: Path, err: Exception) -> DataError:
    return DataError(
        f"{json_path}: annotation {annotation.get('id')}: cannot decode its segmentation ({err})"
    )


def _split_name(path: Path) -> str:
    return path.stem.removeprefix("instances_")


def _load_json(path: Path) -> dict:
    try:
        dataset = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DataError(f"{path}: cannot read COCO annotations ({err})") from err
    if not isinstance(dataset, dict) or not isinstance(dataset.get("images"), list):
        raise DataError(f"{path}: not COCO instance annotations (no 'images' list)")
    if not isinstance(dataset.get("categories"), list) or not dataset["categories"]:
        raise DataError(f"{path}: no 'categories' list")
    for image in dataset["images"]:
        missing = [key for key in _IMAGE_KEYS if key not in image]
        if missing:
            raise DataError(f"{path}: image {image.get('id')!r} lacks {', '.join(missing)}")
    return dataset


def _categories(datasets: dict[str, tuple[Path, dict]]) -> list[dict]:
    """The categories, ascending id, the same in every split (class i must mean one thing)."""
    first_path, first = next(iter(datasets.values()))
    reference = sorted((c["id"], c["name"]) for c in first["categories"])
    for path, dataset in datasets.values():
        if sorted((c["id"], c["name"]) for c in dataset["categories"]) != reference:
            raise DataError(f"{path}: its categories differ from those of {first_path}")
    if len(reference) >= IGNORE_INDEX:
        raise DataError(
            f"{first_path}: {len(reference)} categories; masks hold at most {IGNORE_INDEX - 1} "
            f"besides background ({IGNORE_INDEX} is 'ignore')"
        )
    return [{"id": id_, "name": name} for id_, name in reference]
