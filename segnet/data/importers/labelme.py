"""labelme json files -> the segnet folder layout (see :mod:`segnet.data.importers.writer`).

Reads a folder of labelme's json files (any labelme version's format: ``shapes``,
``imagePath``, ``imageData``, ``imageHeight``, ``imageWidth``). Rules (docs/importing.md):

- splits: when the folder holds no json directly, each first-level subfolder (``train/``,
  ``val/``, ...) is a split; otherwise there are no split folders (``data=folder`` then splits
  by hash). Deeper subfolders are kept, and each json's image and mask take its name;
- the image: the bytes embedded as ``imageData`` when the json has them (labelme draws those),
  written in their own format, else the file at ``imagePath`` (relative to the json, either
  slash), hard-linked;
- classes: ``labels.txt`` in the folder, as labelme2voc.py reads it (``__ignore__``, then
  ``_background_`` = 0, then one class a line), or, without one, background then every label
  of the jsons in sorted order; ``__ignore__`` always paints 255;
- masks: the shapes drawn as labelme's ``shapes_to_label`` draws them
  (:mod:`segnet.data.importers.labelme_shapes`), 0 where no shape lies;
- a json that cannot be read, with a shape labelme cannot draw, a label labels.txt lacks, no
  image, or an image of another size than the json states is skipped, with its reason.
"""

from __future__ import annotations

from pathlib import Path

from tqdm import tqdm

from segnet.data.class_file import CLASSES_FILE, write_class_file
from segnet.data.classes import IGNORE_INDEX, class_colours, flat_palette
from segnet.data.images import DataError
from segnet.data.importers import writer
from segnet.data.importers.labelme_file import SkippedFile, check_size, image_of, read_label_file
from segnet.data.importers.labelme_shapes import ShapeError, paint, parse_shapes
from segnet.data.importers.summary import ImportSummary, SkippedItem

LABELS_FILE = "labels.txt"
IGNORE_LABEL = "__ignore__"
BACKGROUND_LABEL = "_background_"
NO_SPLIT = "(no split folders)"


def import_labelme(
    input_dir: str | Path, output_dir: str | Path, overwrite: bool = False, progress: bool = False
) -> ImportSummary:
    """Convert the labelme json files below ``input_dir`` into the folder layout at
    ``output_dir``; ``progress`` draws a bar over the files on stderr.

    Raises:
        DataError: no json below ``input_dir``, a bad ``labels.txt``, no class to learn, a label
            that cannot be a class name, more than 254 classes, or ``output_dir`` exists and
            ``overwrite`` is False. Nothing is left at ``output_dir`` then.
    """
    input_dir = Path(input_dir)
    json_paths = _label_files(input_dir)
    labels_file = input_dir / LABELS_FILE
    if labels_file.is_file():
        names = read_labels_file(labels_file)
    else:
        names = _labels_seen(input_dir, json_paths, progress)
    value_of = {name: value for value, name in enumerate(names)}
    value_of |= {BACKGROUND_LABEL: 0, "background": 0, IGNORE_LABEL: IGNORE_INDEX}
    colours = class_colours(len(names))
    palette = flat_palette(colours)
    split_folders = all(path.parent != input_dir for path in json_paths)
    summary = ImportSummary(images={}, classes=names)
    with (
        writer.atomic_output(output_dir, overwrite) as staging,
        tqdm(json_paths, unit="file", desc="import labelme", disable=not progress) as files,
    ):
        _write_classes(staging / CLASSES_FILE, names, colours)
        for json_path in files:
            relative = json_path.relative_to(input_dir)
            split = relative.parts[0] if split_folders else NO_SPLIT
            summary.images.setdefault(split, 0)
            try:
                _import_file(json_path, relative, value_of, staging, palette)
            except SkippedFile as skipped:
                summary.skipped.append(SkippedItem(json_path, str(skipped)))
                continue
            summary.images[split] += 1
    return summary


def read_labels_file(path: Path) -> list[str]:
    """The class names of labelme2voc.py's ``labels.txt``: ``background`` (its line
    ``_background_``, value 0), then each following line, value 1, 2, ...

    Raises:
        DataError: naming the file and line: unreadable, no ``_background_`` first (after an
            optional ``__ignore__``), a name twice, no class besides background, over 254.
    """
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: cannot read the labels ({err})") from err
    numbered = [(number, line.strip()) for number, line in enumerate(lines, 1) if line.strip()]
    if numbered and numbered[0][1] == IGNORE_LABEL:
        numbered.pop(0)
    if not numbered or numbered[0][1] != BACKGROUND_LABEL:
        raise DataError(
            f"{path}: its first label must be {BACKGROUND_LABEL} (after an optional "
            f"{IGNORE_LABEL}), as labelme2voc.py reads it: that line is mask value 0"
        )
    names = ["background"]
    for number, name in numbered[1:]:
        if name in names or name in (IGNORE_LABEL, BACKGROUND_LABEL):
            raise DataError(f"{path}:{number}: {name!r} is already a class (or is reserved)")
        names.append(name)
    return _checked_class_count(names, path)


def _label_files(input_dir: Path) -> list[Path]:
    """Every ``*.json`` below ``input_dir``, sorted; hidden files and folders skipped."""
    if not input_dir.is_dir():
        raise DataError(f"{input_dir}: no such folder")
    paths = sorted(
        path
        for path in input_dir.rglob("*")
        if path.suffix.lower() == ".json"
        and path.is_file()
        and not any(part.startswith(".") for part in path.relative_to(input_dir).parts)
    )
    if not paths:
        raise DataError(f"{input_dir}: no labelme .json file in it or its subfolders")
    return paths


def _labels_seen(input_dir: Path, json_paths: list[Path], progress: bool) -> list[str]:
    """Without labels.txt: background, then every label of every readable json, sorted."""
    seen: set[str] = set()
    for path in tqdm(json_paths, unit="file", desc="labelme labels", disable=not progress):
        try:
            seen |= {shape.label for shape in parse_shapes(read_label_file(path).get("shapes"))}
        except (SkippedFile, ShapeError):
            continue  # skipped, with its reason, when the files are imported
    names = ["background", *sorted(seen - {IGNORE_LABEL, BACKGROUND_LABEL, "background"})]
    if len(names) < 2:
        raise DataError(
            f"{input_dir}: no json holds a labelled shape, and there is no {LABELS_FILE} "
            "naming the classes: there is nothing to learn"
        )
    return _checked_class_count(names, input_dir)


def _checked_class_count(names: list[str], source: Path) -> list[str]:
    if len(names) < 2:
        raise DataError(f"{source}: no class besides {BACKGROUND_LABEL}")
    if len(names) > IGNORE_INDEX:
        raise DataError(
            f"{source}: {len(names) - 1} classes; masks hold at most {IGNORE_INDEX - 1} "
            f"besides background ({IGNORE_INDEX} is 'ignore')"
        )
    return names


def _write_classes(path: Path, names: list[str], colours: list) -> None:
    try:
        write_class_file(path, names, colours)
    except ValueError as err:
        raise DataError(f"a labelme label cannot be a class name: {err}") from err


def _import_file(
    json_path: Path, relative: Path, value_of: dict[str, int], staging: Path, palette: list[int]
) -> None:
    """Write the image and mask of one json, or raise SkippedFile saying why not."""
    annotation = read_label_file(json_path)
    try:
        shapes = parse_shapes(annotation.get("shapes"))
    except ShapeError as err:
        raise SkippedFile(str(err)) from err
    unknown = sorted({shape.label for shape in shapes} - value_of.keys())
    if unknown:
        listed = ", ".join(map(repr, unknown))
        verb = "is" if len(unknown) == 1 else "are"
        raise SkippedFile(f"label {listed} {verb} not in {LABELS_FILE}")
    mask_path = staging / writer.MASKS_DIR / relative.with_suffix(".png")
    if mask_path.exists():
        raise SkippedFile(f"a second json named {relative.stem}")
    source, suffix, (width, height) = image_of(json_path, annotation)
    check_size(annotation, width, height)
    try:
        mask = paint(shapes, value_of, height, width)
    except ShapeError as err:
        raise SkippedFile(str(err)) from err
    image_path = staging / writer.IMAGES_DIR / relative.with_suffix(suffix)
    if isinstance(source, Path):
        writer.place_image(source, image_path)
    else:
        image_path.parent.mkdir(parents=True, exist_ok=True)
        image_path.write_bytes(source)
    writer.write_mask(mask_path, mask, palette)
