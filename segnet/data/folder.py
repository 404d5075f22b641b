"""``data=folder``: pair ``DIR/images/...`` with ``DIR/masks/...`` by relative path, no file opened.

    DIR/images/<split>/<any subfolders>/NAME.<jpg|jpeg|png|bmp|tif|tiff|webp>
    DIR/masks/<split>/<same subfolders>/NAME<mask_suffix>.png

Splits are the first-level folders of ``images/`` when that level holds folders only. When it
holds a file, there are no split folders: every subfolder is organisation, and the val images
are chosen by a hash (sha1) of each relative path without its extension against
``val_fraction``. The hash of an image never changes, so adding images never moves an old one
to the other split.

Listing only reads folder entries (``os.scandir``), so 100,000 pairs list in seconds; what is
inside the files is checked elsewhere. Every pairing problem is collected, then raised at once.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from segnet.data.images import DataError

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"})
MASK_EXTENSION = ".png"
_SHOWN = 5


@dataclass
class FolderListing:
    """What :func:`list_folder_pairs` found.

    Attributes:
        splits: split name -> ``(image path, mask path)`` pairs, sorted by relative path.
        hashed: True when the splits were chosen by hash (no split folders).
        problems: one line per problem; empty when the dataset pairs cleanly.
    """

    splits: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    hashed: bool = False
    problems: list[str] = field(default_factory=list)

    def raise_problems(self) -> None:
        """DataError listing every problem, one line each, if there is any."""
        if self.problems:
            lines = "\n".join(f"  - {p}" for p in self.problems)
            raise DataError(f"{len(self.problems)} problems with the dataset:\n{lines}")


def in_val(relative_path: str, val_fraction: float) -> bool:
    """Whether the hash split puts ``relative_path`` (posix, below images/, no extension: a
    re-encoded image keeps its split) into val."""
    digest = hashlib.sha1(relative_path.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") < val_fraction * 2**64


def _walk(top: str, relative: str = ""):
    """``(relative folder, file name)`` of every file below ``top``; hidden entries skipped."""
    with os.scandir(top) as entries:
        for entry in entries:
            if entry.name.startswith("."):
                continue
            if entry.is_dir():
                yield from _walk(entry.path, f"{relative}{entry.name}/")
            else:
                yield relative, entry.name


def _first_level(top: Path) -> tuple[list[str], bool]:
    """The first-level folder names of ``top`` and whether that level also holds files."""
    folders, has_files = [], False
    with os.scandir(top) as entries:
        for entry in entries:
            if entry.name.startswith("."):
                continue
            if entry.is_dir():
                folders.append(entry.name)
            else:
                has_files = True
    return sorted(folders), has_files


def shown_names(names: list[str]) -> str:
    """The first few of ``names``, sorted, and how many more there are."""
    more = f" and {len(names) - _SHOWN} more" if len(names) > _SHOWN else ""
    return ", ".join(sorted(names)[:_SHOWN]) + more


def _images(top: Path, problems: list[str]) -> tuple[dict[str, str], set[str]]:
    """Key (relative folder + stem) -> image path, and the keys of two images with one stem
    (problems: which of them a mask belongs to is ambiguous)."""
    found: dict[str, list[str]] = defaultdict(list)
    skipped = 0
    for relative, name in _walk(str(top)):
        stem, ext = os.path.splitext(name)
        if ext.lower() in IMAGE_EXTENSIONS:
            found[relative + stem].append(name)
        else:
            skipped += 1
    if skipped:
        log.warning(
            "%d files in %s are not images (%s) and are not used",
            skipped,
            top,
            " ".join(sorted(IMAGE_EXTENSIONS)),
        )
    images, ambiguous = {}, set()
    for key, names in found.items():
        folder = top / key.rpartition("/")[0]
        if len(names) > 1:
            problems.append(
                f"{folder}: {' and '.join(sorted(names))} have the same name: which one the mask "
                f"{Path(key).name}.png belongs to is ambiguous; rename or remove all but one"
            )
            ambiguous.add(key)
        else:
            images[key] = str(folder / names[0])
    return images, ambiguous


def _masks(top: Path, mask_suffix: str, problems: list[str]) -> tuple[dict[str, str], set[str]]:
    """Key (relative folder + image stem) -> mask path, and the keys of JPEG masks (problems,
    like every other non-PNG mask)."""
    masks, lossy, lossy_keys, other = {}, [], set(), []
    for relative, name in _walk(str(top)):
        stem, ext = os.path.splitext(name)
        ext = ext.lower()
        key = relative + (stem[: len(stem) - len(mask_suffix)] if mask_suffix else stem)
        if ext == MASK_EXTENSION:
            # A name without the suffix pairs with no image: it is reported as unpaired.
            masks[key if stem.endswith(mask_suffix) else relative + name] = str(
                top / relative / name
            )
        elif ext in (".jpg", ".jpeg"):
            lossy.append(relative + name)
            lossy_keys.add(key)
        elif ext in IMAGE_EXTENSIONS:
            other.append(relative + name)
    if lossy:
        problems.append(
            f"{top}: {len(lossy)} masks are JPEG ({shown_names(lossy)}): JPEG is lossy and smears "
            "mask values along every edge into values of no class; save the masks as PNG"
        )
    if other:
        problems.append(
            f"{top}: {len(other)} masks are not PNG ({shown_names(other)}); save masks as "
            "single-channel PNG (L or P) or RGB PNG"
        )
    return masks, lossy_keys


def _pair(
    images_top: Path, masks_top: Path, mask_suffix: str, problems: list[str]
) -> list[tuple[str, str, str]]:
    """``(relative key, image, mask)`` of every pair below the two folders, sorted by key."""
    images, ambiguous = _images(images_top, problems)
    if not masks_top.is_dir():
        problems.append(
            f"{masks_top} does not exist: the masks of {images_top} are expected there, "
            f"NAME{mask_suffix}.png for each NAME.jpg, in the same subfolders"
        )
        return []
    masks, lossy_keys = _masks(masks_top, mask_suffix, problems)
    lonely_keys = images.keys() - masks.keys()
    lonely_images = [images[k] for k in lonely_keys]
    lonely_masks = [masks[k] for k in masks.keys() - images.keys() - ambiguous]
    if lonely_images:
        # JPEG masks are never paired: say which images have one, so "no mask" is not a riddle.
        jpeg_only = [os.path.relpath(images[k], images_top) for k in lonely_keys & lossy_keys]
        jpeg = (
            f"; {len(jpeg_only)} of them have only a JPEG mask NAME{mask_suffix}.jpg, which is "
            f"refused (lossy; save it as PNG): {shown_names(jpeg_only)}"
            if jpeg_only
            else ""
        )
        problems.append(
            f"{len(lonely_images)} images in {images_top} have no mask NAME{mask_suffix}.png in "
            f"{masks_top}: {shown_names([os.path.relpath(p, images_top) for p in lonely_images])}"
            + jpeg
        )
    if lonely_masks:
        problems.append(
            f"{len(lonely_masks)} masks in {masks_top} have no image in {images_top}: "
            f"{shown_names([os.path.relpath(p, masks_top) for p in lonely_masks])}"
        )
    return [(k, images[k], masks[k]) for k in sorted(images.keys() & masks.keys())]


def list_folder_pairs(
    root: str | Path,
    images_dir: str = "images",
    masks_dir: str = "masks",
    mask_suffix: str = "",
    val_fraction: float = 0.1,
    train_split: str = "train",
    val_split: str = "val",
) -> FolderListing:
    """List and pair a folder dataset (see the module docstring); problems are collected.

    ``train_split``/``val_split`` name the two splits of a hash split; with split folders they
    are only required to exist.
    """
    root = Path(root)
    images_top, masks_top = root / images_dir, root / masks_dir
    listing = FolderListing()
    if not images_top.is_dir():
        listing.problems.append(
            f"{images_top} does not exist: data=folder expects the images in "
            f"{root}/{images_dir}/<split>/NAME.jpg and their masks in "
            f"{root}/{masks_dir}/<split>/NAME{mask_suffix}.png (set data.root, data.images_dir)"
        )
        return listing
    if not masks_top.is_dir():
        listing.problems.append(
            f"{masks_top} does not exist: the masks of {images_top} are expected there "
            f"(NAME{mask_suffix}.png for each image NAME.jpg, in the same subfolders; set "
            "data.masks_dir, data.mask_suffix)"
        )
        return listing
    folders, has_files = _first_level(images_top)
    if has_files or not folders:
        listing.hashed = True
        pairs = _pair(images_top, masks_top, mask_suffix, listing.problems)
        listing.splits = {train_split: [], val_split: []}
        for key, image, mask in pairs:
            split = val_split if in_val(key, val_fraction) else train_split
            listing.splits[split].append((image, mask))
    else:
        for split in folders:
            pairs = _pair(images_top / split, masks_top / split, mask_suffix, listing.problems)
            listing.splits[split] = [(image, mask) for _, image, mask in pairs]
    for split, pairs in listing.splits.items():
        if not pairs:
            where = (
                f"the hash split (data.val_fraction={val_fraction}) put no image there"
                if listing.hashed
                else f"{images_top / split} holds no image with a mask"
            )
            listing.problems.append(f"split {split!r} is empty: {where}")
    return listing
