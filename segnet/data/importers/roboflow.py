"""Roboflow's "Semantic Segmentation Masks" export -> the segnet folder layout (see
:mod:`segnet.data.importers.writer`).

Roboflow's layout (luxonis-ml's SegmentationMaskDirectoryParser reads the same)::

    <split>/NAME.jpg          train/, valid/, test/; NAME as Roboflow renamed it, e.g.
                              "img1_jpg.rf.3f2a9c..." (the original name, then a hash)
    <split>/NAME_mask.png     grayscale: pixel value -> class, as _classes.csv says
    <split>/_classes.csv      "Pixel Value, Class" (a space after the comma), then "0, background"

Rules (docs/importing.md):

- classes: the csv's pixel values in ascending order become 0..K-1 (values may be sparse:
  0, 1, 5 -> 0, 1, 2), named from the csv; every split's csv (and one at the root, read for a
  split without its own) must list the same classes;
- ``valid`` is written as the split ``val``, which ``data=folder`` validates on; the other
  split folders keep their names, the files keep Roboflow's names;
- a mask with a value the csv does not list, a colour mask, a mask whose size differs from its
  image's, an image without mask or a mask without image is skipped with its reason.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from tqdm import tqdm

from segnet.data.class_file import CLASSES_FILE, write_class_file
from segnet.data.classes import IGNORE_INDEX, class_colours, flat_palette
from segnet.data.folder import IMAGE_EXTENSIONS
from segnet.data.images import DataError, read_image, read_raw_mask, require_same_size
from segnet.data.importers import writer
from segnet.data.importers.summary import ImportSummary, SkippedItem

CLASSES_CSV = "_classes.csv"
MASK_SUFFIX = "_mask.png"
SPLIT_NAMES = {"valid": "val"}  # Roboflow's split folder -> segnet's split
_HEADER = ["pixel value", "class"]
_SHOWN_VALUES = 10


def import_roboflow(
    input_dir: str | Path, output_dir: str | Path, overwrite: bool = False, progress: bool = False
) -> ImportSummary:
    """Convert the Roboflow "Semantic Segmentation Masks" export (unzipped) in ``input_dir``
    into the folder layout at ``output_dir``; ``progress`` draws a bar over the images.

    Raises:
        DataError: no split folder with masks, a split without ``_classes.csv`` (in it or at
            the root), a malformed csv, csvs that disagree, or ``output_dir`` exists and
            ``overwrite`` is False. Nothing is left at ``output_dir`` then.
    """
    input_dir = Path(input_dir)
    folders = _split_folders(input_dir)
    values, names = _classes(input_dir, folders)
    lookup = np.full(256, -1, dtype=np.int16)  # pixel value -> class, -1: not in the csv
    lookup[values] = np.arange(len(values))
    colours = class_colours(len(names))
    palette = flat_palette(colours)
    summary = ImportSummary(images={}, classes=names)
    listed = {split: _pairs(folder, summary) for split, folder in folders.items()}
    with (
        writer.atomic_output(output_dir, overwrite) as staging,
        tqdm(
            total=sum(map(len, listed.values())),
            unit="img",
            desc="import roboflow",
            disable=not progress,
        ) as bar,
    ):
        for split, pairs in listed.items():
            written = 0
            for image_path, mask_path in pairs:
                bar.update()
                try:
                    labels = class_map(read_raw_mask(mask_path), lookup)
                    require_same_size(image_path, read_image(image_path), mask_path, labels)
                except DataError as err:
                    summary.skipped.append(SkippedItem(mask_path, str(err)))
                    continue
                writer.write_pair(
                    staging, Path(split, image_path.stem), image_path, labels, palette
                )
                written += 1
            summary.images[split] = written
        write_class_file(staging / CLASSES_FILE, names, colours)
    return summary


def class_map(raw: np.ndarray, lookup: np.ndarray) -> np.ndarray:
    """(H, W) uint8 class indices of a (H, W) mask of pixel values through ``lookup`` (256,)
    (value -> class, -1 for a value of no class).

    Raises:
        DataError: a colour (H, W, 3) mask, or values of no class, with their pixel counts.
    """
    if raw.ndim != 2:
        raise DataError("a colour mask; Roboflow's masks hold one pixel value (class) a pixel")
    in_range = (raw >= 0) & (raw < len(lookup))
    labels = np.where(in_range, lookup[np.clip(raw, 0, len(lookup) - 1)], -1)
    unknown = labels < 0
    if unknown.any():
        found, counts = np.unique(raw[unknown], return_counts=True)
        shown = ", ".join(
            f"{v} ({n} px)"
            for v, n in zip(found[:_SHOWN_VALUES].tolist(), counts.tolist(), strict=False)
        )
        more = f" and {len(found) - _SHOWN_VALUES} more" if len(found) > _SHOWN_VALUES else ""
        raise DataError(f"pixel values {CLASSES_CSV} does not list: {shown}{more}")
    return labels.astype(np.uint8)


def _split_folders(input_dir: Path) -> dict[str, Path]:
    """Split name -> its folder: every folder of ``input_dir`` holding a ``*_mask.png``."""
    folders: dict[str, Path] = {}
    for folder in (
        sorted(p for p in input_dir.iterdir() if p.is_dir()) if input_dir.is_dir() else []
    ):
        if not any(folder.glob(f"*{MASK_SUFFIX}")):
            continue
        split = SPLIT_NAMES.get(folder.name, folder.name)
        if split in folders:
            raise DataError(f"{folder} and {folders[split]} would both be the split {split!r}")
        folders[split] = folder
    if not folders:
        raise DataError(
            f"{input_dir}: no split folder (train/, valid/, test/) holding NAME{MASK_SUFFIX} "
            "masks (Roboflow's Semantic Segmentation Masks layout)"
        )
    return folders


def _classes(input_dir: Path, folders: dict[str, Path]) -> tuple[list[int], list[str]]:
    """The pixel values (ascending) and their class names, the same in every csv."""
    root_csv = input_dir / CLASSES_CSV
    reference: tuple[Path, dict[int, str]] | None = None
    for folder in folders.values():
        path = folder / CLASSES_CSV if (folder / CLASSES_CSV).is_file() else root_csv
        if not path.is_file():
            raise DataError(f"{folder}: no {CLASSES_CSV}, neither there nor in {input_dir}")
        classes = read_classes_csv(path)
        if reference is None:
            reference = path, classes
        elif classes != reference[1]:
            raise DataError(f"{path}: its classes differ from those of {reference[0]}")
    assert reference is not None  # _split_folders found at least one folder
    values = sorted(reference[1])
    return values, [reference[1][v] for v in values]


def read_classes_csv(path: Path) -> dict[int, str]:
    """Pixel value -> class name of a Roboflow ``_classes.csv`` (header ``Pixel Value, Class``;
    spaces around the fields are Roboflow's and are stripped).

    Raises:
        DataError: naming the file and row: unreadable, another header, a value outside 0..255
            or listed twice, a blank or repeated name, fewer than 2 or more than 255 classes.
    """
    try:
        rows = list(csv.reader(path.read_text(encoding="utf-8-sig").splitlines()))
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise DataError(f"{path}: cannot read Roboflow's class list ({err})") from err
    rows = [[field.strip() for field in row] for row in rows if any(f.strip() for f in row)]
    if not rows or [field.lower() for field in rows[0]] != _HEADER:
        raise DataError(f"{path}: expected the header 'Pixel Value, Class', got {rows[:1]}")
    classes: dict[int, str] = {}
    for number, row in enumerate(rows[1:], start=2):
        if len(row) != 2 or not row[0].isdigit() or int(row[0]) > 255 or not row[1]:
            raise DataError(f"{path}:{number}: expected 'pixel value (0..255), class', got {row}")
        value, name = int(row[0]), row[1]
        if value in classes or name in classes.values():
            raise DataError(f"{path}:{number}: pixel value {value} or class {name!r} listed twice")
        classes[value] = name
    if not 2 <= len(classes) <= IGNORE_INDEX:
        raise DataError(f"{path}: {len(classes)} classes; a dataset needs 2..{IGNORE_INDEX}")
    return classes


def _pairs(folder: Path, summary: ImportSummary) -> list[tuple[Path, Path]]:
    """``(image, mask)`` of ``folder``, by name: NAME.ext with NAME_mask.png; an image without
    mask, a mask without image or a second image of one NAME goes to ``summary.skipped``."""
    files = sorted(p for p in folder.iterdir() if p.is_file())
    masks = {p.name[: -len(MASK_SUFFIX)]: p for p in files if p.name.endswith(MASK_SUFFIX)}
    pairs: dict[str, tuple[Path, Path]] = {}
    for image in files:
        if image.name.endswith(MASK_SUFFIX) or image.suffix.lower() not in IMAGE_EXTENSIONS:
            continue
        if image.stem in pairs:
            summary.skipped.append(SkippedItem(image, f"a second image named {image.stem}"))
        elif image.stem not in masks:
            summary.skipped.append(SkippedItem(image, f"no mask {image.stem}{MASK_SUFFIX}"))
        else:
            pairs[image.stem] = image, masks[image.stem]
    for stem, mask in masks.items():
        if stem not in pairs:
            summary.skipped.append(SkippedItem(mask, f"a mask without image {stem}.*"))
    return list(pairs.values())
