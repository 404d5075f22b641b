"""CVAT's "Segmentation mask 1.1" export -> the segnet folder layout (see
:mod:`segnet.data.importers.writer`).

CVAT writes this export through datumaro's ``voc_segmentation`` converter::

    labelmap.txt                        "# label:color_rgb:parts:actions", then "name:r,g,b::"
    ImageSets/Segmentation/<subset>.txt one item id a line (the path below JPEGImages/, no
                                        extension); "default" for items of no subset
    SegmentationClass/<id>.png          each pixel painted in its label's labelmap colour
    SegmentationObject/<id>.png         instance masks: not read
    JPEGImages/<id>.<ext>               the images, when exported with "Save images"

Rules (docs/importing.md):

- classes: the labelmap's lines in order (class i = label line i; the black label, usually
  ``background``, comes first), with the labelmap's colours;
- every mask colour maps to its label's class; a mask holding a colour no label has, a mask
  whose size differs from its image's, an item without image or without mask (CVAT writes no
  mask for an item without annotations) is skipped with its reason in the summary;
- each subset becomes a split of the same name; an export whose only subset is ``default``
  (a task without subsets) is written without split folders, so ``data=folder`` splits it by
  hash (``data.val_fraction``).
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np
from tqdm import tqdm

from segnet.data.class_file import CLASSES_FILE, Colour, format_colour, write_class_file
from segnet.data.classes import IGNORE_INDEX, flat_palette
from segnet.data.folder import IMAGE_EXTENSIONS
from segnet.data.images import DataError, read_image, require_same_size
from segnet.data.importers import writer
from segnet.data.importers.summary import ImportSummary, SkippedItem

LABELMAP_FILE = "labelmap.txt"
SUBSETS_DIR = Path("ImageSets") / "Segmentation"
CLASS_MASKS_DIR = "SegmentationClass"
IMAGES_DIR = "JPEGImages"
DEFAULT_SUBSET = "default"
_SHOWN_COLOURS = 5


def import_cvat(
    input_dir: str | Path, output_dir: str | Path, overwrite: bool = False, progress: bool = False
) -> ImportSummary:
    """Convert the CVAT "Segmentation mask 1.1" export (unzipped) in ``input_dir`` into the
    folder layout at ``output_dir``; ``progress`` draws a bar over the items on stderr.

    Raises:
        DataError: no or a malformed ``labelmap.txt``, no subset list, no ``JPEGImages/``
            (exported without images), or ``output_dir`` exists and ``overwrite`` is False.
            Nothing is left at ``output_dir`` then.
    """
    input_dir = Path(input_dir)
    names, colours = read_labelmap(input_dir / LABELMAP_FILE)
    subsets = _subsets(input_dir / SUBSETS_DIR)
    images = _images_by_id(input_dir / IMAGES_DIR)
    palette = flat_palette(colours)
    summary = ImportSummary(images={}, classes=names)
    # A lone "default" subset is a task without subsets: no split of its own, hash-split later.
    flat = list(subsets) == [DEFAULT_SUBSET]
    with (
        writer.atomic_output(output_dir, overwrite) as staging,
        tqdm(
            total=sum(map(len, subsets.values())),
            unit="img",
            desc="import cvat",
            disable=not progress,
        ) as bar,
    ):
        for subset, ids in subsets.items():
            split = "" if flat else subset
            written = 0
            for item_id in ids:
                bar.update()
                written += _import_item(
                    input_dir, item_id, images, colours, staging, split, palette, summary
                )
            summary.images[subset] = written
        write_class_file(staging / CLASSES_FILE, names, colours)
    return summary


def _import_item(
    input_dir: Path,
    item_id: str,
    images: dict[str, list[Path]],
    colours: list[Colour],
    staging: Path,
    split: str,
    palette: list[int],
    summary: ImportSummary,
) -> bool:
    """Write one item's image and class mask; False (and a skipped item) when it cannot be."""
    sources = images.get(item_id, [])
    mask_path = input_dir / CLASS_MASKS_DIR / f"{item_id}.png"
    if len(sources) != 1:
        reason = (
            f"two images with this name: {', '.join(p.name for p in sources)}"
            if sources
            else f"listed in {SUBSETS_DIR}, no image in {IMAGES_DIR}/"
        )
        summary.skipped.append(SkippedItem(input_dir / IMAGES_DIR / item_id, reason))
        return False
    if not mask_path.is_file():
        reason = (
            f"no mask {CLASS_MASKS_DIR}/{item_id}.png (CVAT writes none for an item without "
            "annotations)"
        )
        summary.skipped.append(SkippedItem(sources[0], reason))
        return False
    try:
        labels = class_map(np.asarray(read_image(mask_path)), colours)
        require_same_size(sources[0], read_image(sources[0]), mask_path, labels)
    except DataError as err:
        summary.skipped.append(SkippedItem(mask_path, str(err)))
        return False
    relative = Path(split, item_id)
    writer.write_pair(staging, relative, sources[0], labels, palette)
    return True


def class_map(painted: np.ndarray, colours: list[Colour]) -> np.ndarray:
    """(H, W) uint8 class indices of a (H, W, 3) uint8 RGB mask: pixel of colour
    ``colours[i]`` -> i.

    Raises:
        DataError: colours no class has, each with its pixel count (the caller names the file).
    """
    packed = _pack(painted)
    known = _pack(np.asarray(colours, dtype=np.uint8))
    order = np.argsort(known)
    position = np.minimum(np.searchsorted(known[order], packed), len(known) - 1)
    unknown = known[order][position] != packed
    if unknown.any():
        values, counts = np.unique(packed[unknown], return_counts=True)
        shown = ", ".join(
            f"{format_colour(((v >> 16) & 255, (v >> 8) & 255, v & 255))} ({n} px)"
            for v, n in zip(values[:_SHOWN_COLOURS].tolist(), counts.tolist(), strict=False)
        )
        more = f" and {len(values) - _SHOWN_COLOURS} more" if len(values) > _SHOWN_COLOURS else ""
        raise DataError(f"colours of no label in {LABELMAP_FILE}: {shown}{more}")
    return order[position].astype(np.uint8)


def _pack(rgb: np.ndarray) -> np.ndarray:
    """(..., 3) uint8 -> (...) uint32 r << 16 | g << 8 | b: one comparable number a colour."""
    rgb = rgb.astype(np.uint32)
    return (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]


def read_labelmap(path: Path) -> tuple[list[str], list[Colour]]:
    """The labels of a ``labelmap.txt`` in line order, and their colours, read as datumaro
    reads them: comment (``#``) and blank lines skipped, the name before the first ``:``, the
    colour ``r,g,b`` after it.

    Raises:
        DataError: naming the file and line: unreadable, a label without a valid colour, a
            name or colour listed twice, fewer than 2 or more than 255 labels.
    """
    if not path.is_file():
        raise DataError(f"{path}: missing; a CVAT Segmentation mask export has it at its root")
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: cannot read CVAT's label map ({err})") from err
    names: list[str] = []
    colours: list[Colour] = []
    for number, line in enumerate(lines, start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, _, rest = line.partition(":")
        colour = _parse_rgb(rest.partition(":")[0])
        if not name or colour is None:
            raise DataError(f"{path}:{number}: expected 'name:r,g,b::', got {line!r}")
        for kind, earlier, what in (("name", names, name), ("colour", colours, colour)):
            if what in earlier:
                other = names[earlier.index(what)]
                raise DataError(
                    f"{path}:{number}: {name!r} repeats the {kind} of {other!r}; masks could "
                    "not tell the two apart"
                )
        names.append(name)
        colours.append(colour)
    if not 2 <= len(names) <= IGNORE_INDEX:
        raise DataError(f"{path}: {len(names)} labels; a dataset needs 2..{IGNORE_INDEX}")
    return names, colours


def _parse_rgb(text: str) -> Colour | None:
    parts = text.split(",")
    if len(parts) != 3 or not all(p.strip().isdigit() and int(p) <= 255 for p in parts):
        return None
    r, g, b = (int(p) for p in parts)
    return r, g, b


def _subsets(folder: Path) -> dict[str, list[str]]:
    """Subset name -> item ids, from ``ImageSets/Segmentation/<subset>.txt``."""
    files = sorted(folder.glob("*.txt"))
    if not files:
        raise DataError(f"{folder}: no <subset>.txt (CVAT's Segmentation mask layout)")
    subsets = {}
    for path in files:
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as err:
            raise DataError(f"{path}: cannot read the subset list ({err})") from err
        subsets[path.stem] = list(dict.fromkeys(line.strip() for line in lines if line.strip()))
    return subsets


def _images_by_id(folder: Path) -> dict[str, list[Path]]:
    """Item id (path below ``folder``, no extension) -> the image files of that id."""
    found: dict[str, list[Path]] = defaultdict(list)
    if folder.is_dir():
        for path in sorted(folder.rglob("*")):
            if path.suffix.lower() in IMAGE_EXTENSIONS and path.is_file():
                found[path.relative_to(folder).with_suffix("").as_posix()].append(path)
    if not found:
        raise DataError(
            f"{folder}: no images; export from CVAT with 'Save images' checked, or copy the "
            f"images there as {IMAGES_DIR}/<item id>.jpg"
        )
    return found
