"""Write the demo dataset in VOC 2012's layout, atomically, and tell whether one is complete."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from segnet.data.classes import VOC_CLASSES, voc_palette
from segnet.data.demo import scenes
from segnet.data.images import DataError

FORMAT_VERSION = 2
"""Stamped into the completion marker: bump it whenever the drawing changes, so that trees made
by an older generator are regenerated instead of reused."""
MARKER = "demo_complete.json"
_PARTIAL = ".demo_partial"
_SPLIT_CODES = {"train": 0, "val": 1}


def _deal_classes(n: int, seed: int, split: str) -> list[list[int]]:
    """1-4 classes per image, dealt from shuffled decks of the 20 so counts stay balanced."""
    rng = np.random.default_rng([seed, _SPLIT_CODES[split]])
    counts = rng.integers(1, 5, n)
    decks = -(-int(counts.sum()) // 20)
    dealt = np.concatenate([rng.permutation(20) + 1 for _ in range(decks)]).tolist()
    bounds = np.concatenate([[0], np.cumsum(counts)])
    return [dealt[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


def _write_split(voc: Path, split: str, n: int, seed: int) -> list[str]:
    palette = voc_palette()
    ids = []
    for index, classes in enumerate(_deal_classes(n, seed, split)):
        rng = np.random.default_rng([seed, _SPLIT_CODES[split], index])
        image, label = scenes.render_scene(rng, classes)
        name = f"demo_{split}_{index:05d}"
        Image.fromarray(image).save(voc / "JPEGImages" / f"{name}.jpg", quality=90)
        mask = Image.fromarray(label)
        mask.putpalette(palette)
        mask.save(voc / "SegmentationClass" / f"{name}.png")
        ids.append(name)
    return ids


def generate_demo_dataset(
    root: str | Path, num_train: int = 600, num_val: int = 150, seed: int = 0
) -> Path:
    """Write ``root/VOCdevkit/VOC2012`` (images, palette masks, split files) and return ``root``.

    ``torchvision.datasets.VOCSegmentation(root, year="2012", image_set=...)`` reads the result
    for image_set train, val and trainval. A previous demo dataset under ``root`` is replaced;
    a ``VOCdevkit`` that is not one is never touched (FileExistsError). A failure part-way
    (full disk, Ctrl-C) leaves ``root`` as it was.

    Raises:
        ValueError: a count below 1, a negative seed, or one that is not an integer.
        DataError: ``root`` is a file, or cannot be created or written.
        FileExistsError: ``root/VOCdevkit`` exists and is not a finished demo dataset.
    """
    for name, value, low in (
        ("num_train", num_train, 1),
        ("num_val", num_val, 1),
        ("seed", seed, 0),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    root = Path(root)
    _require_writable_folder(root)
    final = root / "VOCdevkit"
    if final.exists() and not (final / "VOC2012" / MARKER).is_file():
        raise FileExistsError(
            f"{final} exists and is not a finished segnet demo dataset (no VOC2012/{MARKER}); "
            "refusing to overwrite it: choose another root or remove that folder"
        )
    partial = root / _PARTIAL
    shutil.rmtree(partial, ignore_errors=True)  # what a killed run left
    try:
        _write_tree(partial / "VOCdevkit" / "VOC2012", num_train, num_val, seed)
        if final.exists():
            final.rename(partial / "replaced")
        (partial / "VOCdevkit").rename(final)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return root


def _require_writable_folder(root: Path) -> None:
    """DataError unless ``root`` is (or can be made) a folder this process can write into."""
    if root.exists() and not root.is_dir():
        raise DataError(f"demo dataset root {root} is a file, not a folder; choose another root")
    try:
        root.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=root):  # the only sure test of "writable" is a write
            pass
    except OSError as err:
        raise DataError(
            f"cannot write the demo dataset into {root} ({err.strerror}); choose a writable root"
        ) from err


def _write_tree(voc: Path, num_train: int, num_val: int, seed: int) -> None:
    """Images, masks, split files, and last the completion marker, under ``voc``."""
    for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (voc / sub).mkdir(parents=True)
    splits = {s: _write_split(voc, s, n, seed) for s, n in (("train", num_train), ("val", num_val))}
    splits["trainval"] = splits["train"] + splits["val"]
    for name, ids in splits.items():
        (voc / "ImageSets" / "Segmentation" / f"{name}.txt").write_text("\n".join(ids) + "\n")
    params = {"version": FORMAT_VERSION, "num_train": num_train, "num_val": num_val, "seed": seed}
    params["classes"] = list(VOC_CLASSES)
    (voc / MARKER).write_text(json.dumps(params, indent=1) + "\n")


def demo_dataset_ready(
    root: str | Path,
    num_train: int | None = None,
    num_val: int | None = None,
    seed: int | None = None,
) -> bool:
    """True if a generation under ``root`` finished (with these parameters, where given)."""
    voc = Path(root) / "VOCdevkit" / "VOC2012"
    try:
        params = json.loads((voc / MARKER).read_text())
    except (OSError, ValueError):
        return False
    wanted = {"version": FORMAT_VERSION, "num_train": num_train, "num_val": num_val, "seed": seed}
    if any(v is not None and params.get(k) != v for k, v in wanted.items()):
        return False
    return all(
        (voc / "ImageSets" / "Segmentation" / f"{s}.txt").is_file()
        for s in ("train", "val", "trainval")
    )
