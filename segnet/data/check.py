"""Scan a dataset in VOC's layout once and report every problem, not just the first.

Behind ``scripts/check_data.py``. Each image and mask is fully decoded by the same readers
the training pipeline uses, so what passes here also loads in training.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from segnet.data.classes import IGNORE_INDEX, default_class_names
from segnet.data.images import DataError, read_image, read_mask, require_same_size
from segnet.data.voc import require_voc_dir, voc_split_file, voc_split_files

UNION_SPLITS = ("trainval",)
"""Splits that are unions of others by definition, so sharing their ids is no leak."""


@dataclass
class SplitReport:
    """One split: how many entries its file lists, what is wrong, and label pixel counts.

    ``histogram`` is int64 (256,): pixels per label value over the split's readable masks.
    """

    name: str
    num_images: int = 0
    problems: list[str] = field(default_factory=list)
    histogram: np.ndarray = field(default_factory=lambda: np.zeros(256, dtype=np.int64))


@dataclass
class CheckReport:
    """Per-split reports, plus ``dataset_problems`` (root or VOCdevkit missing)."""

    splits: list[SplitReport]
    dataset_problems: list[str] = field(default_factory=list)

    @property
    def problems(self) -> list[str]:
        return self.dataset_problems + [p for split in self.splits for p in split.problems]

    @property
    def ok(self) -> bool:
        return not self.problems


def _check_pair(image_path: str, mask_path: str, num_classes: int, report: SplitReport) -> None:
    """Record every problem of one sample, and count its mask's labels if it is usable."""
    image = mask = None
    try:
        image = read_image(image_path)
    except DataError as err:
        report.problems.append(str(err))
    try:
        mask = read_mask(mask_path, num_classes, IGNORE_INDEX)
    except DataError as err:
        report.problems.append(str(err))
    if image is None or mask is None:
        return
    try:
        require_same_size(image_path, image, mask_path, mask)
    except DataError as err:
        report.problems.append(str(err))
        return
    report.histogram += np.bincount(mask.ravel(), minlength=256)


def check_dataset(
    root: str | Path,
    year: str = "2012",
    splits: Sequence[str] = ("train", "val"),
    num_classes: int = 21,
) -> CheckReport:
    """Decode every image and mask of ``splits`` under ``root`` (the folder holding VOCdevkit/).

    Problems recorded: missing root/VOCdevkit/split file, ids listed twice in a split or in
    two disjoint splits (any two but ``trainval``), missing/undecodable images or masks,
    colour (RGB) masks, labels outside 0..num_classes-1 and 255, image/mask size mismatch.
    """
    reports = [SplitReport(name) for name in splits]
    try:
        require_voc_dir(root, year)
    except DataError as err:
        return CheckReport(reports, [str(err)])
    seen: dict[str, str] = {}  # image id -> first split listing it
    for name, report in zip(splits, reports, strict=True):
        try:
            images, masks = voc_split_files(root, name, year)
        except DataError as err:
            report.problems.append(str(err))
            continue
        report.num_images = len(images)
        split_file = voc_split_file(root, name, year)
        listed: set[str] = set()
        for image_path, mask_path in zip(images, masks, strict=True):
            image_id = Path(image_path).stem
            if image_id in listed:
                report.problems.append(f"{split_file}: lists {image_id!r} more than once")
                continue
            listed.add(image_id)
            if name not in UNION_SPLITS and image_id in seen:
                report.problems.append(
                    f"{split_file}: {image_id!r} is also in split {seen[image_id]!r} "
                    "(the same image in two splits leaks training data into evaluation)"
                )
            elif name not in UNION_SPLITS:
                seen[image_id] = name
            _check_pair(image_path, mask_path, num_classes, report)
    return CheckReport(reports)


def class_names_for(num_classes: int, class_names: Sequence[str] | None = None) -> list[str]:
    """``class_names`` if given, VOC's for 21 classes, else class_0, class_1, ..."""
    if class_names is not None:
        if len(class_names) != num_classes:
            raise ValueError(f"{len(class_names)} class names given for {num_classes} classes")
        return list(class_names)
    return default_class_names(num_classes)


def format_report(report: CheckReport, class_names: Sequence[str]) -> str:
    """Problems, per-split counts, and the label histogram (pixels and % per split)."""
    lines = [f"{len(report.problems)} problems found"]
    lines += [f"  {problem}" for problem in report.problems]
    lines += ["", f"{'split':<12}{'images':>10}{'problems':>10}"]
    for split in report.splits:
        lines.append(f"{split.name:<12}{split.num_images:>10}{len(split.problems):>10}")
    rows = [*enumerate(class_names), (IGNORE_INDEX, "void")]
    lines += ["", f"{'label':>5}  {'class':<16}" + "".join(f"{s.name:>22}" for s in report.splits)]
    for label, name in rows:
        cells = ""
        for split in report.splits:
            total = max(int(split.histogram.sum()), 1)
            count = int(split.histogram[label])
            cells += f"{count:>13} ({100 * count / total:5.1f}%)"
        lines.append(f"{label:>5}  {name:<16}{cells}")
    return "\n".join(lines)


RARE_SHARE = 0.005
"""A class below this share of a split's labelled pixels (255 excluded) is named as rare."""


def format_frequencies(report: CheckReport, class_names: Sequence[str]) -> str:
    """Each class's share of each split's labelled pixels (255 left out), and per split the
    classes below :data:`RARE_SHARE` named (with their share, or "absent")."""
    header = f"{'label':>5}  {'class':<16}" + "".join(f"{s.name:>14}" for s in report.splits)
    lines = ["", "share of labelled pixels (255, ignore, left out)", header]
    labelled = [max(int(s.histogram[: len(class_names)].sum()), 1) for s in report.splits]
    for label, name in enumerate(class_names):
        cells = "".join(
            f"{100 * int(s.histogram[label]) / total:>13.2f}%"
            for s, total in zip(report.splits, labelled, strict=True)
        )
        lines.append(f"{label:>5}  {name:<16}{cells}")
    lines.append("")
    for split, total in zip(report.splits, labelled, strict=True):
        if not split.histogram[: len(class_names)].any():
            lines.append(f"split {split.name!r}: no labelled pixel counted")
            continue
        rare = [
            f"{name} " + (f"{100 * count / total:.2f}%" if count else "absent")
            for name, count in zip(class_names, split.histogram.tolist(), strict=False)
            if count < RARE_SHARE * total
        ]
        lines.append(
            f"split {split.name!r}: rare classes (< {100 * RARE_SHARE:g}% of its labelled "
            f"pixels): {', '.join(rare)}"
            if rare
            else f"split {split.name!r}: no rare class (each >= {100 * RARE_SHARE:g}%)"
        )
    return "\n".join(lines)
