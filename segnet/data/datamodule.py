"""Lightning data module for Pascal VOC segmentation and any dataset in VOC's layout.

    python scripts/train.py data=voc data.root=/path/holding/VOCdevkit

``prepare_data`` downloads VOC (``download=True``) or generates the offline demo dataset
(``demo=True``); ``setup`` builds the datasets. The loaders are those of every data module
(:mod:`segnet.data.segmentation_datamodule`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from torch.utils.data import Dataset

from segnet.data.classes import VOC_CLASSES
from segnet.data.demo import demo_dataset_ready, generate_demo_dataset
from segnet.data.images import DataError
from segnet.data.sbd import VOCTrainAugDataset
from segnet.data.segmentation_datamodule import (
    MAX_DEFAULT_WORKERS,
    SegmentationDataModule,
    checked_class_names,
    default_num_workers,
    positive_int,
    whole_image_collate,
)
from segnet.data.voc import VOCSegmentationDataset, download_voc, require_voc_dir, voc_dir

__all__ = ["MAX_DEFAULT_WORKERS", "VOCDataModule", "default_num_workers", "whole_image_collate"]

log = logging.getLogger(__name__)


class VOCDataModule(SegmentationDataModule):
    """Train/val loaders over ``root/VOCdevkit/VOC<year>`` (all arguments are plain values).

    Args:
        root: the folder that HOLDS ``VOCdevkit/``.
        year: VOC year ("2007".."2012").
        train_split, val_split: names of ImageSets/Segmentation/<split>.txt.
        class_names: the dataset's classes, background first (None: VOC's 21). Sets
            ``num_classes``; mask labels must lie in 0..num_classes-1 or be 255.
        crop_size: training crop [height, width]; smaller images are padded, not dropped.
        scale_range: [low, high] of the random training scale, relative to the image's size.
        batch_size: training batch size (incomplete last batch dropped).
        eval_batch_size: images per validation/evaluation batch (each kept at its own size).
        num_workers: DataLoader worker processes (0: load in the main process; None:
            :func:`default_num_workers`, min(4, the CPUs this process may use)).
        trainaug: train on SBD + VOC train minus VOC val (10,582 images; needs SBD in root/SBD).
        download: download VOC (and SBD for trainaug) with torchvision in ``prepare_data``.
        demo: generate the synthetic demo dataset into ``root`` if it is not there yet.
        demo_num_train, demo_num_val, demo_seed: what to generate.
        seed: the training order's and augmentation's seed (the run's ``seed``): see
            :mod:`segnet.data.resumable`.
    """

    def __init__(
        self,
        root: str,
        year: str = "2012",
        train_split: str = "train",
        val_split: str = "val",
        class_names: list[str] | None = None,
        crop_size: Sequence[int] = (320, 480),
        scale_range: Sequence[float] = (0.5, 2.0),
        batch_size: int = 8,
        eval_batch_size: int = 4,
        num_workers: int | None = None,
        trainaug: bool = False,
        download: bool = False,
        demo: bool = False,
        demo_num_train: int = 600,
        demo_num_val: int = 150,
        demo_seed: int = 0,
        seed: int = 0,
    ) -> None:
        if not root:
            raise ValueError("root must be the folder holding VOCdevkit/ (set data.root)")
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
        self.root = str(root)
        self.year = str(year)
        voc_dir(self.root, self.year)  # ValueError for an unknown year
        self._class_names = checked_class_names(class_names)
        if demo and (download or trainaug):
            raise ValueError("demo=True generates its own data: set download and trainaug false")
        if demo and self.year != "2012":
            raise ValueError(f"the demo dataset is written as VOC2012; got year={self.year!r}")
        if demo and len(self._class_names) != len(VOC_CLASSES):
            raise ValueError(
                f"the demo dataset has VOC's {len(VOC_CLASSES)} classes, "
                f"but class_names has {len(self._class_names)}"
            )
        if trainaug and train_split != "train":
            raise ValueError(
                f"trainaug=True replaces the train split; got train_split={train_split!r}"
            )
        self.trainaug, self.download, self.demo = bool(trainaug), bool(download), bool(demo)
        self.demo_num_train = positive_int("demo_num_train", demo_num_train)
        self.demo_num_val = positive_int("demo_num_val", demo_num_val)
        self.demo_seed = int(demo_seed)

    @property
    def dataset_dir(self) -> str:
        """The folder holding the dataset's files (outputs must not go inside it)."""
        return str(voc_dir(self.root, self.year))

    @property
    def train_set_name(self) -> str:
        return "trainaug" if self.trainaug else self.train_split

    def prepare_data(self) -> None:
        """Generate the demo dataset or download VOC/SBD (Lightning calls it on one process)."""
        if self.demo:
            counts = (self.demo_num_train, self.demo_num_val, self.demo_seed)
            if not demo_dataset_ready(self.root, *counts):
                log.info(
                    "generating the demo dataset (%d train, %d val, seed %d) into %s",
                    *counts,
                    voc_dir(self.root, self.year),
                )
                generate_demo_dataset(self.root, *counts)
        elif self.download:
            if self.trainaug:
                VOCTrainAugDataset(self.root, self.year, self.num_classes, download=True)
            else:
                download_voc(self.root, self.year)

    def _train_dataset(self, transforms: Callable) -> Dataset:
        if self.trainaug:
            return VOCTrainAugDataset(self.root, self.year, self.num_classes, transforms)
        return self._dataset(self.train_split, transforms)

    def _dataset(self, split: str, transforms: Callable) -> VOCSegmentationDataset:
        return VOCSegmentationDataset(self.root, split, self.year, self.num_classes, transforms)

    def _require_data(self, splits: Sequence[str]) -> None:
        """DataError if root/VOCdevkit/VOC<year> is missing, saying which arguments to set (each
        of ``splits`` is checked as its split file is read)."""
        try:
            require_voc_dir(self.root, self.year)
        except DataError as err:
            raise DataError(
                f"{err}. Set root (data.root=...) to the folder that holds VOCdevkit/, or "
                "download=true to fetch VOC (needs internet), or demo=true to generate the "
                "demo dataset there"
            ) from err
