"""What infer reads and writes: the images an ``input`` names, and their output paths.

``input`` is a file, a folder (searched recursively, symlinked folders followed, loops
noted) or a glob. Every image gets a mask, an overlay and optionally a probabilities file under
``output_dir``, named by a rule that is one-to-one over any set of inputs and never names an
input (:func:`plan_jobs`). Masks and overlays record the input they were made from
(:func:`recorded_source`), so a rerun knows its own finished work from any other file.
"""

from __future__ import annotations

import fnmatch
import glob
import itertools
import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from PIL import Image
from torch.utils.data import Dataset
from torchvision.transforms.v2.functional import pil_to_tensor

from segnet.data.images import DataError, frame_count, read_image
from segnet.predict.segmenter import SOURCE_KEY

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm")


@dataclass
class Job:
    """One input image (``rel``: its path below the input root) and where its outputs go."""

    source: Path
    rel: Path
    mask: Path
    overlay: Path
    probs: Path | None

    @property
    def outputs(self) -> list[Path]:
        return [p for p in (self.mask, self.overlay, self.probs) if p is not None]

    @property
    def marker(self) -> str:
        """``rel`` as recorded in the outputs (any bytes of a file name survive UTF-8)."""
        return os.fsencode(self.rel.as_posix()).decode("utf-8", "backslashreplace")


@dataclass
class Inputs:
    """What an ``input`` setting names: ``(file, path below the input root)``, sorted, and the
    entries that look like images but cannot be read (``(path, reason)``)."""

    files: list[tuple[Path, Path]] = field(default_factory=list)
    unusable: list[tuple[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def find_inputs(pattern: str, output_dir: Path | None = None) -> Inputs:
    """The images of a file, a folder (recursive) or a glob.

    Folders and globs keep image extensions only (case-insensitive) and follow symlinked
    folders, except one leading back to its own ancestor (noted); a single file is taken
    whatever its name. Broken links, non-regular files and unreadable folders come back as
    ``unusable``. Files under ``output_dir`` that infer wrote (:func:`recorded_source`) are
    left out, so output_dir may be the input folder or contain it.

    Raises:
        FileNotFoundError: nothing usable matches ``pattern``.
    """
    path, found = Path(pattern), Inputs()
    if path.is_file():
        found.files.append((path, Path(path.name)))
    elif path.is_dir():
        for file in _walk(path, None, found):
            if file.suffix.lower() in IMAGE_EXTENSIONS:
                _take(file, file.relative_to(path), found)
    elif path.is_symlink():
        raise FileNotFoundError(f"input {pattern!r} is a broken link (to {os.readlink(path)})")
    elif not glob.has_magic(pattern):
        raise FileNotFoundError(f"input {pattern!r} does not exist")
    else:
        magic = next(i for i, part in enumerate(path.parts) if glob.has_magic(part))
        root, rest = Path(*path.parts[:magic]), path.parts[magic:]
        for file in _walk(root, None if "**" in rest else len(rest) - 1, found):
            rel = file.relative_to(root)
            if rel.suffix.lower() in IMAGE_EXTENSIONS and _glob_match(rel.parts, rest):
                _take(file, rel, found)
    found.files.sort()
    own = 0
    if output_dir is not None:
        out = output_dir.resolve()
        kept = [
            (f, rel)
            for f, rel in found.files
            if not f.resolve().is_relative_to(out) or recorded_source(f) is None
        ]
        own, found.files = len(found.files) - len(kept), kept
    if own:
        found.notes.append(f"left out {own} files under output_dir that infer wrote")
    if not found.files:
        why = f"; {own} files there are infer's own outputs under output_dir" if own else ""
        why += "".join(f"; {p}: {reason}" for p, reason in found.unusable[:3])
        raise FileNotFoundError(
            f"input {pattern!r} matches no image files (a file, a folder searched recursively "
            f"for {', '.join(IMAGE_EXTENSIONS)}, or a glob){why}"
        )
    return found


def _take(file: Path, rel: Path, found: Inputs) -> None:
    if file.is_file():
        found.files.append((file, rel))
    elif file.is_symlink():
        found.unusable.append((str(file), f"broken link (to {os.readlink(file)})"))
    elif not file.is_dir():
        found.unusable.append((str(file), "not a regular file"))


def _walk(root: Path, depth: int | None, found: Inputs) -> Iterator[Path]:
    """Every entry but folders below ``root``, at most ``depth`` folders down (None: all),
    symlinked folders followed unless they lead back to an ancestor (a loop)."""

    def unreadable(err: OSError) -> None:
        found.unusable.append((str(err.filename), f"cannot list folder: {err.strerror}"))

    if not root.is_dir():
        return
    chains = {str(root): (frozenset([_identity(root)]), 0)}  # ancestors' identities, level
    for folder, dirs, files in os.walk(root, onerror=unreadable, followlinks=True):
        ancestors, level = chains.pop(folder)
        entered = []
        for name in sorted(dirs) if depth is None or level < depth else ():
            sub = os.path.join(folder, name)
            identity = _identity(sub)
            if identity in ancestors:
                found.notes.append(f"{sub} links back to {os.path.realpath(sub)}: not followed")
                continue
            entered.append(name)
            chains[sub] = (ancestors | {identity}, level + 1)
        dirs[:] = entered
        yield from (Path(folder, name) for name in files)


def _identity(folder: str | Path) -> tuple[int, int]:
    stat = os.stat(folder)
    return stat.st_dev, stat.st_ino


def _glob_match(names: tuple[str, ...], patterns: tuple[str, ...]) -> bool:
    """``glob``'s rules for a path split into names: ``**`` spans any number of folders,
    and a wildcard never matches a leading dot."""
    if not patterns:
        return not names
    if patterns[0] == "**":
        return _glob_match(names, patterns[1:]) or bool(
            names and not names[0].startswith(".") and _glob_match(names[1:], patterns)
        )
    if not names or (names[0].startswith(".") and not patterns[0].startswith(".")):
        return False
    return fnmatch.fnmatchcase(names[0], patterns[0]) and _glob_match(names[1:], patterns[1:])


def plan_jobs(inputs: list[tuple[Path, Path]], output_dir: Path, save_probs: bool) -> list[Job]:
    """Output paths for every input: one-to-one over any set of inputs, never an input file.

    NAME is the input's name without its extension (``a.jpg`` -> ``a.png``) unless another
    input has the same stem or an input is called that stem (``a.jpg`` beside ``a.png`` or
    ``a.jpg.png``); then the full name is kept (``a.jpg.png``). These are distinct by
    construction: stems used are unique among stems, full names are unique, and no stem used
    equals a full name. A name whose files would replace a folder the outputs need, or an
    input file or folder (output_dir holding the inputs), takes ``NAME.ext~2``, ``~3``, ...
    instead, the first whose files nobody else has. Names do not depend on ``save_probs``.
    (Folders are kept as they are: if one the outputs need is an input file, which only an
    output_dir above the input folder allows, writing that image fails and is reported.)
    """
    rels = [rel.as_posix() for _, rel in inputs]
    stems = [rel.as_posix().removesuffix(rel.suffix) for _, rel in inputs]
    counts, fulls = Counter(stems), set(rels)
    folders = {"overlays", "probs"}
    for _, rel in inputs:
        for parent in rel.parents[:-1]:
            folders |= {parent.as_posix(), f"overlays/{parent}", f"probs/{parent}"}

    @cache
    def real_folder(folder: Path) -> str:
        return os.path.realpath(folder)

    def real(path: Path) -> str:  # a directory entry, seen through symlinked folders
        return os.path.join(real_folder(path.parent), path.name)

    # Input files are taken under their own names and (links) their targets' names, and so
    # are the folders holding them: no output may replace either.
    taken: set[str] = set()
    for source, _ in inputs:
        taken |= {real(source), os.path.realpath(source)}
        folder = real_folder(source.parent)
        while folder not in taken:
            taken.add(folder)
            folder = os.path.dirname(folder)

    def files(base: str) -> tuple[str, str, str]:
        return f"{base}.png", f"overlays/{base}.jpg", f"probs/{base}.npy"

    def free(base: str, used: set[str]) -> bool:
        return not any(
            f in folders or f in used or real(output_dir / f) in taken for f in files(base)
        )

    bases = [
        s if counts[s] == 1 and s not in fulls else r for s, r in zip(stems, rels, strict=True)
    ]
    bases = [b if free(b, set()) else None for b in bases]
    used = {f for b in bases if b is not None for f in files(b)}
    for i, rel in enumerate(rels):
        if bases[i] is None:
            candidates = (rel if k == 1 else f"{rel}~{k}" for k in itertools.count(1))
            bases[i] = next(b for b in candidates if free(b, used))
            used.update(files(bases[i]))
    return [
        Job(
            source=source,
            rel=rel,
            mask=output_dir / f"{base}.png",
            overlay=output_dir / "overlays" / f"{base}.jpg",
            probs=output_dir / "probs" / f"{base}.npy" if save_probs else None,
        )
        for (source, rel), base in zip(inputs, bases, strict=True)
    ]


def recorded_source(path: Path) -> str | None:
    """The input recorded in a mask or overlay that infer wrote; None for any other file."""
    if path.suffix.lower() not in (".png", ".jpg"):
        return None
    try:
        with Image.open(path) as image:
            if image.format == "PNG":
                return image.info.get(SOURCE_KEY)
            comment = image.info.get("comment", b"").decode("utf-8", "replace")
    except Exception:  # unreadable: certainly not a file infer finished
        return None
    key, _, source = comment.partition("=")
    return source if key == SOURCE_KEY else None


class DecodedImages(Dataset):
    """The jobs' images, decoded in DataLoader workers: item ``index`` is
    ``(index, uint8 (3, H, W) or None, error or None, number of frames)``."""

    def __init__(self, jobs: list[Job]) -> None:
        self.jobs = jobs

    def __len__(self) -> int:
        return len(self.jobs)

    def __getitem__(self, index: int):
        source = self.jobs[index].source
        try:
            image = pil_to_tensor(read_image(source))
        except DataError as err:  # reported by the main process; the message names the file
            return index, None, str(err).removeprefix(f"{source}: "), 1
        return index, image, None, _frames(source)


def _frames(path: Path) -> int:
    try:
        return frame_count(path)
    except DataError:  # decoded a moment ago: one frame is the honest answer
        return 1
