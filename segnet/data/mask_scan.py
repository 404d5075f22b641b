"""What the files of image/mask pairs hold, read in parallel and remembered between runs.

For each pair: the image's stored size and EXIF orientation (from its header: no pixel is
decoded), and the mask's size, kind (values or RGB colours) and pixel count per raw value.
These are facts about the files alone, not verdicts: they do not depend on the classes or the
label map, so changing ``data.label_map`` re-uses them (:mod:`segnet.data.folder_check` judges).

Masks are decoded on a thread pool (Pillow's decoders release the GIL). The facts are kept in a
JSON file per dataset in the user's cache folder (``$SEGNET_CACHE``, else
``$XDG_CACHE_HOME/segnet``, else ``~/.cache/segnet``), never inside the dataset: each pair's
entry is re-used only while both its files keep their size and modification time, so a second
run reads no mask again and a changed mask is read again alone. A cache folder that cannot be
written only costs the re-reading.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from PIL import ExifTags, Image

from segnet.data.images import DataError, read_raw_mask
from segnet.data.label_map import pack_colours

log = logging.getLogger(__name__)

_CACHE_VERSION = 1
_MAX_THREADS = 8


@dataclass
class PairFacts:
    """One pair's files (JSON-able). Sizes are ``[width, height]`` as stored.

    Attributes:
        image_size: the image's stored size, None if its header cannot be read (``image_error``).
        orientation: its EXIF orientation 1..8 (1: upright; 5..8 turn it by 90 degrees).
        mask_size: None if the mask cannot be read (``mask_error``).
        colour: True for an RGB mask: ``counts`` keys are packed colours (see
            :func:`~segnet.data.label_map.pack_colours`), else raw values.
        counts: ``[raw key, pixels]`` for every key present, ascending.
    """

    image_size: list[int] | None = None
    orientation: int = 1
    image_error: str | None = None
    mask_size: list[int] | None = None
    mask_error: str | None = None
    colour: bool = False
    counts: list[list[int]] = field(default_factory=list)


def read_pair_facts(image_path: str, mask_path: str) -> PairFacts:
    """Read the image's header and decode the mask; a file that fails is recorded, not raised."""
    facts = PairFacts()
    try:
        with Image.open(image_path) as image:
            facts.image_size = list(image.size)
            orientation = image.getexif().get(ExifTags.Base.Orientation, 1)
            facts.orientation = orientation if orientation in range(1, 9) else 1
    except Exception as err:  # any Pillow error means the header is unreadable
        facts.image_error = f"{image_path}: cannot read image ({type(err).__name__}: {err})"
    try:
        raw = read_raw_mask(mask_path)
    except DataError as err:
        facts.mask_error = str(err)
        return facts
    facts.mask_size = [int(raw.shape[1]), int(raw.shape[0])]
    facts.colour = raw.ndim == 3
    keys = pack_colours(raw).ravel() if facts.colour else raw.ravel()
    if keys.dtype in (np.uint8, np.uint16):
        per_value = np.bincount(keys)
        values = np.flatnonzero(per_value)
        counts = per_value[values]
    else:
        values, counts = np.unique(keys, return_counts=True)
    facts.counts = [[int(v), int(n)] for v, n in zip(values, counts, strict=True)]
    return facts


def cache_dir() -> Path:
    """Where segnet keeps what it may forget: ``$SEGNET_CACHE``, else the XDG cache folder."""
    if os.environ.get("SEGNET_CACHE"):
        return Path(os.environ["SEGNET_CACHE"])
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(xdg) / "segnet"


def _stamp(image_path: str, mask_path: str) -> list[int] | None:
    """Size and modification time (ns) of both files; None if one is gone."""
    try:
        image, mask = os.stat(image_path), os.stat(mask_path)
    except OSError:
        return None
    return [image.st_size, image.st_mtime_ns, mask.st_size, mask.st_mtime_ns]


class FactsCache:
    """The facts of one dataset's pairs, in ``folder/<hash of the dataset folder>.json``."""

    def __init__(self, dataset_dir: str | Path, folder: str | Path | None = None) -> None:
        dataset = os.path.abspath(dataset_dir)
        name = hashlib.sha1(dataset.encode("utf-8")).hexdigest()[:16]
        self.path = Path(folder or cache_dir() / "folder-check") / f"{name}.json"
        self.dataset = dataset

    def load(self) -> dict[str, dict]:
        """mask path -> ``{"image", "stamp", "facts"}``; empty if absent, corrupt or stale."""
        try:
            stored = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        if stored.get("version") != _CACHE_VERSION or stored.get("dataset") != self.dataset:
            return {}
        return stored.get("pairs", {})

    def save(self, entries: dict[str, dict]) -> None:
        """Replace the file whole (a temporary file renamed into place); failures are logged."""
        text = json.dumps({"version": _CACHE_VERSION, "dataset": self.dataset, "pairs": entries})
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, temporary = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=self.path.parent)
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as f:
                    f.write(text)
                os.replace(temporary, self.path)
            except BaseException:
                os.unlink(temporary)
                raise
        except OSError as err:
            log.warning(
                "cannot keep the mask scan in %s (%s): the next run reads again", self.path, err
            )


def scan_pairs(
    pairs: Sequence[tuple[str, str]], cache: FactsCache | None = None, threads: int | None = None
) -> list[PairFacts]:
    """The facts of every ``(image, mask)`` pair, in order; unchanged pairs come from ``cache``."""
    entries = cache.load() if cache is not None else {}
    stamps = [_stamp(image, mask) for image, mask in pairs]
    facts: list[PairFacts | None] = []
    for (image, mask), stamp in zip(pairs, stamps, strict=True):
        entry = entries.get(mask)
        known = entry is not None and entry["image"] == image and entry["stamp"] == stamp
        facts.append(PairFacts(**entry["facts"]) if known and stamp is not None else None)
    missing = [i for i, f in enumerate(facts) if f is None]
    if missing:
        workers = threads or min(_MAX_THREADS, len(os.sched_getaffinity(0)))
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            read = pool.map(lambda i: read_pair_facts(*pairs[i]), missing)
            for i, pair_facts in zip(missing, read, strict=True):
                facts[i] = pair_facts
        log.info(
            "read %d of %d masks (%d known from before)",
            len(missing),
            len(pairs),
            len(pairs) - len(missing),
        )
        if cache is not None:
            for i in missing:
                if stamps[i] is not None:
                    image, mask = pairs[i]
                    entries[mask] = {"image": image, "stamp": stamps[i], "facts": asdict(facts[i])}
            cache.save(entries)
    return facts
