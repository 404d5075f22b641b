"""The folder layout every importer writes, written atomically.

::

    OUT/images/<split>/NAME.ext   the image file, hard-linked when on the same filesystem
    OUT/masks/<split>/NAME.png    palette-mode PNG of class indices (255: ignore)
    OUT/classes.txt               line i names mask value i (see segnet.data.class_file)

An import writes into a temporary sibling of ``OUT`` and renames it into place only when
everything is written: an interrupted or failed import leaves neither ``OUT`` nor the temporary
folder, so a half-written dataset is never mistaken for a whole one.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image

from segnet.data.images import DataError

IMAGES_DIR = "images"
MASKS_DIR = "masks"


@contextmanager
def atomic_output(output_dir: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a fresh temporary folder beside ``output_dir``; rename it to ``output_dir`` when the
    block ends without an exception, delete it when it raises.

    Raises:
        DataError: ``output_dir`` exists and ``overwrite`` is False.
    """
    output_dir = Path(output_dir)
    if output_dir.exists() and not overwrite:
        raise DataError(f"{output_dir}: already exists; choose another folder or overwrite it")
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    temporary = Path(tempfile.mkdtemp(prefix=f".{output_dir.name}.", dir=output_dir.parent))
    try:
        yield temporary
        if output_dir.exists():
            # Renamed aside first, so a crash between the two renames still leaves a whole
            # dataset under one of the two names.
            old = Path(tempfile.mkdtemp(prefix=f".{output_dir.name}.old.", dir=output_dir.parent))
            os.replace(output_dir, old / output_dir.name)
            os.replace(temporary, output_dir)
            shutil.rmtree(old)
        else:
            os.replace(temporary, output_dir)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise


def place_image(source: Path, destination: Path) -> None:
    """Hard-link ``source`` to ``destination`` (no copy of the bytes); copy it where a link is
    impossible (another filesystem, or one without links)."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, destination)
    except OSError:
        shutil.copy2(source, destination)


def write_mask(destination: Path, mask: np.ndarray, palette: list[int]) -> None:
    """Write ``mask`` (H, W) uint8 class indices as a palette-mode PNG drawn in ``palette``
    (768 values, see segnet.data.classes.flat_palette)."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(np.ascontiguousarray(mask, dtype=np.uint8), mode="P")
    image.putpalette(palette)
    # zlib's fastest level: a third of the default's time, and masks (long runs of one value)
    # come out under twice the default's size, a few kB.
    image.save(destination, compress_level=1)


def write_pair(
    staging: Path, relative: Path, image: Path, mask: np.ndarray, palette: list[int]
) -> None:
    """One imported pair: ``image`` placed as ``images/<relative's folder>/<image's name>``,
    ``mask`` written as ``masks/<relative>.png`` (``relative``: split and subfolders, then the
    item's stem; see :func:`place_image` and :func:`write_mask`)."""
    place_image(image, staging / IMAGES_DIR / relative.parent / image.name)
    write_mask(staging / MASKS_DIR / f"{relative}.png", mask, palette)
