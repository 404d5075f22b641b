"""The traps in a ``data=folder`` dataset that would otherwise train silently wrong, or fail late.

After :mod:`segnet.data.folder` paired the files, this reads every mask of the splits once
(:mod:`segnet.data.mask_scan`, cached) and judges them against the classes and the label map.
Every problem is one line naming the files and the fix; a kind of problem shared by many files
is one line per split with counts and the first names:

- an image and its mask of different sizes (width and height swapped: EXIF orientation);
- unreadable files (Pillow's reason);
- mask values, or colours, that are no class and that the label map does not name;
- RGB masks while no class has a colour (the colours found, and the map to write);
- 255 (ignore) covering most of the non-background pixels of a split in which a class never
  occurs: binary masks stored 0/255, whose 255 is the foreground and would be ignored.
  ``data.label_map={255:255}`` says 255 does mean ignore, and silences this.

The per-split label histograms (pixels per label after the label map) come back in the
:class:`~segnet.data.check.CheckReport` for ``check_data``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from segnet.data.check import CheckReport, SplitReport
from segnet.data.classes import IGNORE_INDEX
from segnet.data.folder import FolderListing, shown_names
from segnet.data.label_map import LabelMap, format_key
from segnet.data.mask_scan import FactsCache, PairFacts, scan_pairs

_LINES_PER_KIND = 10
"""Per split and kind of per-file problem, lines beyond these are summed up in one."""
_MOSTLY = 0.5


def check_folder(
    root: str | Path,
    listing: FolderListing,
    splits: Sequence[str],
    label_map: LabelMap,
    class_names: Sequence[str],
    cache: FactsCache | None = None,
) -> CheckReport:
    """One :class:`SplitReport` per split of ``splits`` that the listing has (problems and
    label histogram); ``listing.problems`` (pairing) become the report's dataset problems."""
    reports = []
    for split in splits:
        pairs = listing.splits.get(split, [])
        facts = scan_pairs(pairs, cache)
        reports.append(_judge_split(Path(root), split, pairs, facts, label_map, class_names))
    return CheckReport(reports, list(listing.problems))


def _judge_split(
    root: Path,
    split: str,
    pairs: Sequence[tuple[str, str]],
    facts: Sequence[PairFacts],
    label_map: LabelMap,
    class_names: Sequence[str],
) -> SplitReport:
    report = SplitReport(split, len(pairs))
    unreadable: list[str] = []
    sizes: list[str] = []
    unknown: dict[tuple[bool, int], list] = {}  # (colour, key) -> [pixels, files]
    unknown_files: dict[bool, list[str]] = {False: [], True: []}
    uncoloured: dict[int, int] = {}  # colour of an RGB mask while no class has one -> pixels
    uncoloured_files: list[str] = []
    ignored_255 = 0  # pixels of raw value 255 no label map entry renames
    for (image, mask), pair in zip(pairs, facts, strict=True):
        unreadable += [e for e in (pair.image_error, pair.mask_error) if e]
        if pair.image_error or pair.mask_error:
            continue
        size_problem = _size_problem(image, mask, pair)
        if size_problem:
            sizes.append(size_problem)
        name = os.path.relpath(mask, root)
        keys = np.array([k for k, _ in pair.counts], dtype=np.int64)
        counts = np.array([n for _, n in pair.counts], dtype=np.int64)
        if pair.colour and not label_map.colours:
            uncoloured_files.append(name)
            for key, count in zip(keys.tolist(), counts.tolist(), strict=True):
                uncoloured[key] = uncoloured.get(key, 0) + count
            continue
        labels = label_map.labels_of(keys, pair.colour)
        if (labels < 0).any():
            unknown_files[pair.colour].append(name)
            for key, count in zip(keys[labels < 0].tolist(), counts[labels < 0], strict=True):
                entry = unknown.setdefault((pair.colour, key), [0, 0])
                entry[0] += int(count)
                entry[1] += 1
            continue
        if size_problem:
            continue
        np.add.at(report.histogram, labels.astype(np.int64), counts)
        if not pair.colour and IGNORE_INDEX not in label_map.values:
            ignored_255 += int(counts[keys == IGNORE_INDEX].sum())
    where = f"split {split!r}"
    report.problems += _capped(unreadable, f"{where}: {{n}} more unreadable files")
    report.problems += _capped(sizes, f"{where}: {{n}} more images whose mask differs in size")
    for colour in (False, True):
        if unknown_files[colour]:
            found = {k: v for (c, k), v in unknown.items() if c == colour}
            report.problems.append(
                _unknown_line(where, found, unknown_files[colour], colour, label_map)
            )
    if uncoloured_files:
        report.problems.append(_uncoloured_line(where, uncoloured, uncoloured_files, root))
    missing = [c for c in range(1, len(class_names)) if report.histogram[c] == 0]
    non_zero = int(report.histogram.sum() - report.histogram[0])
    if missing and ignored_255 and ignored_255 > _MOSTLY * non_zero:
        report.problems.append(
            _ignore_trap_line(where, missing, ignored_255 / non_zero, class_names)
        )
    return report


def _capped(lines: list[str], more: str) -> list[str]:
    if len(lines) <= _LINES_PER_KIND:
        return lines
    return lines[:_LINES_PER_KIND] + [more.format(n=len(lines) - _LINES_PER_KIND)]


def _size_problem(image: str, mask: str, pair: PairFacts) -> str | None:
    """The line for an image and mask of different sizes (None when they match as read:
    segnet reads images upright, EXIF orientation applied)."""
    width, height = pair.image_size
    turned = pair.orientation >= 5  # 5..8 turn the picture by 90 degrees
    shown = [height, width] if turned else [width, height]
    if pair.mask_size == shown:
        return None
    mask_width, mask_height = pair.mask_size
    if turned and pair.mask_size == [width, height]:
        return (
            f"image {image} is stored {width}x{height} with EXIF orientation "
            f"{pair.orientation} (turned by 90 degrees: segnet reads it upright, {height}x{width}, "
            f"as viewers show it), but its mask {mask} is {width}x{height}: the mask was drawn "
            "on the stored, unturned pixels; remove the image's orientation tag without "
            "turning its pixels (exiftool -Orientation= IMAGE), or turn the mask as the tag says"
        )
    if pair.mask_size == shown[::-1]:
        return (
            f"image {image} is {shown[0]}x{shown[1]} but its mask {mask} is "
            f"{mask_width}x{mask_height}: width and height are swapped, probably EXIF "
            "orientation: the image is stored rotated (its orientation tag lost, or the mask "
            "saved from a rotated view); rotate one of the two by 90 degrees so they match"
        )
    read_as = f" (as read, EXIF orientation {pair.orientation} applied)" if turned else ""
    return (
        f"image {image} is {shown[0]}x{shown[1]}{read_as} but its mask {mask} is "
        f"{mask_width}x{mask_height} (width x height): a mask must cover its image pixel for "
        "pixel; save it at the image's size (resized with nearest, never interpolated)"
    )


def _unknown_line(
    where: str, found: dict[int, list], files: list[str], colour: bool, label_map: LabelMap
) -> str:
    keys = np.array(sorted(found))
    pixels = np.array([found[k][0] for k in keys])
    in_files = np.array([found[k][1] for k in keys])
    name = "colours" if colour else "values"
    phrase = label_map.describe_unknown(keys, pixels, name, in_files)
    if colour:
        fix = "give them a class in classes.txt or data.label_map, or correct the masks"
    else:
        entries = ",".join(f"{k}:CLASS" for k in keys[:10].tolist())
        fix = (
            f'map them with "data.label_map={{{entries}}}" (CLASS: a class index, or 255 to '
            "ignore), or correct the masks"
        )
    return f"{where}: {len(files)} masks hold {phrase}: {shown_names(files)}; {fix}"


def _uncoloured_line(where: str, colours: dict[int, int], files: list[str], root: Path) -> str:
    by_pixels = sorted(colours, key=lambda k: -colours[k])
    shown = ", ".join(f"{format_key(k, 'colours')} ({colours[k]} px)" for k in by_pixels[:10])
    more = f" and {len(by_pixels) - 10} more" if len(by_pixels) > 10 else ""
    example = ", ".join(
        f"'{format_key(k, 'colours')}': {i}" for i, k in enumerate(sorted(colours)[:10])
    )
    grey = all((k >> 16) == ((k >> 8) & 255) == (k & 255) for k in colours)
    hint = (
        "; every colour is a grey (r = g = b): these are probably grayscale masks saved as RGB, "
        "save them as single-channel (L) PNG"
        if grey
        else ""
    )
    return (
        f"{where}: {len(files)} masks are RGB colour images ({shown_names(files)}), but no class "
        f"has a colour; the colours found: {shown}{more}; give each class its colour in "
        f"{root / 'classes.txt'} (line i: 'NAME #rrggbb'), or map the colours in a data config "
        f"of your own (Hydra's command line cannot spell '#'): label_map: {{{example}}}{hint}"
    )


def _ignore_trap_line(
    where: str, missing: list[int], share: float, class_names: Sequence[str]
) -> str:
    share_text = f"{100 * share:.1f}%"
    escape = "or data.label_map={255:255} if 255 does mean ignore"
    if len(class_names) == 2:
        return (
            f"{where}: class 1 {class_names[1]!r} never occurs, while 255 (ignore) covers "
            f"{share_text} of the non-zero pixels: binary masks stored 0/255, whose 255 is the "
            f'foreground and would be ignored; set "data.label_map={{255:1}}" ({escape})'
        )
    named = ", ".join(f"{c} {class_names[c]!r}" for c in missing[:10])
    target = missing[0] if len(missing) == 1 else "CLASS"
    return (
        f"{where}: class{'es' * (len(missing) > 1)} {named} never occur"
        f"{'s' * (len(missing) == 1)}, while 255 (ignore) covers {share_text} of the non-zero "
        f"pixels: 255 probably marks a class, and would be ignored; set "
        f'"data.label_map={{255:{target}}}" ({escape})'
    )
