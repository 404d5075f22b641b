"""``scripts/check_data.py``: scan a dataset and print what is wrong with it.

    python scripts/check_data.py data=folder data.root=DIR [splits=[train,val]] [output_dir=DIR]
    python scripts/check_data.py root=DIR       (VOC's layout; the same as data=voc data.root=DIR)

Prints the problems (one line each), the images and problems per split, the label pixel
histogram, each class's share of the labelled pixels with the rare classes named, and (given
``output_dir``) writes ``preview.png``: a few images per split with their masks over them.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from pathlib import Path

import hydra
from omegaconf import DictConfig

from segnet.data.check import (
    CheckReport,
    check_dataset,
    class_names_for,
    format_frequencies,
    format_report,
)
from segnet.data.classes import class_colours
from segnet.data.datamodule import VOCDataModule
from segnet.data.folder_datamodule import FolderDataModule
from segnet.data.images import DataError, read_mask
from segnet.data.label_map import read_label_mask
from segnet.data.voc import voc_split_files
from segnet.outputs import check_output_dir
from segnet.tasks.check_preview import PREVIEW_NAME, LabelReader, preview_pairs, write_preview
from segnet.tasks.cli import EXIT_OK, EXIT_PARTIAL
from segnet.tasks.config import ConfigError


def check_command(cfg: DictConfig) -> int:
    """Scan the dataset (configs/check_data.yaml), print the report; 1 if anything is wrong.

    Raises:
        ConfigError: no dataset named, or both ``root`` and ``data``; a data group other than
            voc or folder.
        DataError: no dataset there (root missing, no VOCdevkit, no images/ or masks/ folder,
            no classes.txt).
        OutputError: ``output_dir`` cannot be written (checked before the scan).
    """
    output_dir = cfg.get("output_dir")
    if output_dir is not None:
        check_output_dir(output_dir)
    splits = list(cfg.splits) if cfg.get("splits") is not None else None
    if cfg.get("data") is None:
        if cfg.get("root") is None:
            raise ConfigError(
                "no dataset: give root=DIR (the folder holding VOCdevkit/) or "
                "data=folder data.root=DIR"
            )
        num_classes = cfg.num_classes if cfg.class_names is None else len(cfg.class_names)
        names = class_names_for(num_classes, cfg.class_names)
        return _check_voc(cfg.root, str(cfg.year), splits, names, None, cfg)
    if cfg.get("root") is not None:
        raise ConfigError(
            f"root={cfg.root} is the shortcut for VOC's layout; with data=... set data.root=DIR"
        )
    module = hydra.utils.instantiate(cfg.data)
    if isinstance(module, FolderDataModule):
        return _check_folder(module, splits, cfg)
    if isinstance(module, VOCDataModule):
        names, colours = module.class_names, module.class_colours
        return _check_voc(module.root, module.year, splits, names, colours, cfg)
    raise ConfigError(f"check_data checks data=voc and data=folder, not {type(module).__name__}")


def _check_voc(
    root: str,
    year: str,
    splits: Sequence[str] | None,
    names: list[str],
    colours: Sequence[Sequence[int]] | None,
    cfg: DictConfig,
) -> int:
    splits = list(splits or ("train", "val"))
    report = check_dataset(root, year, splits, len(names))
    if report.dataset_problems:  # no dataset at root: nothing was scanned
        raise DataError("; ".join(report.dataset_problems))
    pairs = {}
    for split in splits:
        try:
            pairs[split] = list(zip(*voc_split_files(root, split, year), strict=True))
        except DataError:  # the report names it
            pairs[split] = []
    reader = functools.partial(read_mask, num_classes=len(names))
    return _finish(report, names, colours or class_colours(len(names)), pairs, reader, cfg)


def _check_folder(module: FolderDataModule, splits: Sequence[str] | None, cfg: DictConfig) -> int:
    listing = module.listing()
    if not listing.splits:  # no images/ or masks/ folder: nothing to scan
        raise DataError("; ".join(listing.problems))
    splits = list(splits or listing.splits)
    report = module.check_report([s for s in splits if s in listing.splits])
    report.dataset_problems += [
        f"split {s!r} does not exist: {Path(module.root) / module.images_dir} has the splits "
        f"{', '.join(listing.splits)}"
        for s in splits
        if s not in listing.splits
    ]
    pairs = {s.name: listing.splits[s.name] for s in report.splits}
    reader = functools.partial(read_label_mask, label_map=module.label_map)
    return _finish(report, module.class_names, module.class_colours, pairs, reader, cfg)


def _finish(
    report: CheckReport,
    names: list[str],
    colours: Sequence[Sequence[int]],
    pairs: Mapping[str, Sequence[tuple[str, str]]],
    read_labels: LabelReader,
    cfg: DictConfig,
) -> int:
    """Print the report, write the preview; the exit status."""
    print(format_report(report, names))
    print(format_frequencies(report, names))
    output_dir = cfg.get("output_dir")
    if output_dir is None:
        print(f"\n(set output_dir=DIR to draw {PREVIEW_NAME}: a few images with their masks)")
    else:
        chosen = preview_pairs(pairs, int(cfg.get("preview_per_split", 3)))
        path = Path(output_dir) / PREVIEW_NAME
        drawn = write_preview(path, chosen, read_labels, names, colours)
        print(f"\n{path}: {drawn} images with their masks" if drawn else "\nno image to preview")
    return EXIT_OK if report.ok else EXIT_PARTIAL
