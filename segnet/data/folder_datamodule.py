"""``data=folder``: train and evaluate on two folders of image/mask pairs.

    python scripts/train.py data=folder data.root=DIR

Pairs are listed by :mod:`segnet.data.folder`; masks are read through a
:class:`~segnet.data.label_map.LabelMap` (raw values or colours -> labels). Classes come from
``data.class_names`` or ``DIR/classes.txt`` (whose colours, when given, are the dataset's
colours and also map RGB masks).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from segnet.data.check import CheckReport
from segnet.data.class_file import CLASSES_FILE, read_class_file
from segnet.data.classes import class_colours
from segnet.data.folder import FolderListing, list_folder_pairs
from segnet.data.folder_check import check_folder
from segnet.data.images import DataError
from segnet.data.label_map import LabelMap, read_label_mask
from segnet.data.mask_scan import FactsCache
from segnet.data.segmentation_datamodule import SegmentationDataModule, checked_class_names
from segnet.data.voc import SegmentationPairs

log = logging.getLogger(__name__)


class FolderDataModule(SegmentationDataModule):
    """Loaders over ``root/<images_dir>`` and ``root/<masks_dir>`` (all arguments plain values).

    Args:
        root: the dataset folder (holding ``images_dir``, ``masks_dir`` and ``classes.txt``).
        images_dir, masks_dir: the two folders' names below ``root``.
        mask_suffix: the mask of ``NAME.jpg`` is ``NAME<mask_suffix>.png`` (e.g. "_mask").
        val_fraction: without split folders, the share of images the hash split puts in val.
        train_split, val_split: the splits trained and validated on.
        class_names: the classes, mask value i = class i (None: from ``root/classes.txt``).
        label_map: raw mask value (or ``"#rrggbb"`` colour) -> class index or 255, see
            :meth:`LabelMap.from_config`.
        crop_size, scale_range, batch_size, eval_batch_size, num_workers, seed: as for every
            data module (:class:`SegmentationDataModule`).

    Raises:
        ValueError: a bad argument. DataError: no class list (neither ``class_names`` nor a
            ``classes.txt``), or a bad ``classes.txt``.
    """

    def __init__(
        self,
        root: str,
        images_dir: str = "images",
        masks_dir: str = "masks",
        mask_suffix: str = "",
        val_fraction: float = 0.1,
        train_split: str = "train",
        val_split: str = "val",
        class_names: list[str] | None = None,
        label_map: dict | None = None,
        crop_size: Sequence[int] = (320, 480),
        scale_range: Sequence[float] = (0.5, 2.0),
        batch_size: int = 8,
        eval_batch_size: int = 4,
        num_workers: int | None = None,
        seed: int = 0,
    ) -> None:
        if not root:
            raise ValueError("root must be the dataset folder (set data.root=DIR)")
        super().__init__(
            train_split,
            val_split,
            crop_size,
            scale_range,
            batch_size,
            eval_batch_size,
            num_workers,
            seed,
        )
        if not 0 < val_fraction < 1:
            raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction!r}")
        self.root = str(root)
        self.images_dir, self.masks_dir = str(images_dir), str(masks_dir)
        self.mask_suffix = str(mask_suffix or "")
        self.val_fraction = float(val_fraction)
        colours = None
        if class_names is None:
            class_file = Path(self.root) / CLASSES_FILE
            if not class_file.is_file():
                raise DataError(
                    f"{class_file} does not exist: write the class names there (one a line, "
                    "line i names mask value i, optionally 'NAME #rrggbb'), or set "
                    "data.class_names=[background,...]"
                )
            class_names, colours = read_class_file(class_file)
        self._class_names = checked_class_names(class_names)
        self._colours = colours
        self.label_map = LabelMap.from_config(_plain_mapping(label_map), self.num_classes, colours)
        self._listing: FolderListing | None = None
        self._checked: set[str] = set()  # splits whose masks passed check()

    @property
    def class_colours(self) -> list[list[int]]:
        """``[r, g, b]`` per class: ``classes.txt``'s colours, else VOC's palette."""
        colours = self._colours or class_colours(self.num_classes)
        return [list(rgb) for rgb in colours]

    @property
    def dataset_dir(self) -> str:
        """The folder holding the dataset's files (outputs must not go inside it)."""
        return self.root

    def listing(self) -> FolderListing:
        """The pairs of every split, listed once (no file is opened)."""
        if self._listing is None:
            self._listing = list_folder_pairs(
                self.root,
                self.images_dir,
                self.masks_dir,
                self.mask_suffix,
                self.val_fraction,
                self.train_split,
                self.val_split,
            )
            if self._listing.hashed:
                sizes = {s: len(p) for s, p in self._listing.splits.items()}
                log.info(
                    "%s has no split folders: %d images to %r and %d to %r by a hash of each "
                    "path (data.val_fraction=%s)",
                    Path(self.root) / self.images_dir,
                    sizes[self.train_split],
                    self.train_split,
                    sizes[self.val_split],
                    self.val_split,
                    self.val_fraction,
                )
        return self._listing

    def check(self, splits: Sequence[str] | None = None) -> None:
        """DataError listing every problem of the dataset at once, one line each: the pairing
        (this listing) and any of ``splits`` (default: train and val) missing; once they pair,
        what the masks of ``splits`` hold (:mod:`segnet.data.folder_check`: sizes, values,
        colours, 0/255 binary masks). ``setup`` runs it before any training,
        ``eval_dataloader`` before an evaluation of another split."""
        listing = self.listing()
        problems = list(listing.problems)
        splits = list(splits or (self.train_split, self.val_split))
        for split in splits:
            if split not in listing.splits and listing.splits:
                problems.append(
                    f"split {split!r} does not exist: {Path(self.root) / self.images_dir} has "
                    f"the splits {', '.join(listing.splits)}"
                )
        if not problems:
            unchecked = [s for s in splits if s not in self._checked]
            problems = self.check_report(unchecked).problems
            self._checked.update(unchecked)
        FolderListing(listing.splits, listing.hashed, problems).raise_problems()

    def check_report(self, splits: Sequence[str]) -> CheckReport:
        """What the masks of ``splits`` hold, judged (problems, label histograms); the
        pairing problems are its ``dataset_problems``."""
        return check_folder(
            self.root,
            self.listing(),
            splits,
            self.label_map,
            self.class_names,
            FactsCache(Path(self.root) / self.masks_dir),
        )

    def _require_data(self, splits: Sequence[str]) -> None:
        self.check(splits)

    def _dataset(self, split: str, transforms: Callable) -> SegmentationPairs:
        pairs = self.listing().splits[split]
        return SegmentationPairs(
            [image for image, _ in pairs],
            [mask for _, mask in pairs],
            self.num_classes,
            transforms,
            functools.partial(read_label_mask, label_map=self.label_map),
        )


def _plain_mapping(label_map: Mapping | None) -> dict | None:
    """A label map from the command line may have string keys of numbers: "7" -> 7."""
    if label_map is None:
        return None
    return {
        int(k) if isinstance(k, str) and k.strip().isdigit() else k: v
        for k, v in dict(label_map).items()
    }
