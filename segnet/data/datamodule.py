"""Lightning data module for Pascal VOC segmentation and any dataset in VOC's layout.

    python scripts/train.py data=voc data.root=/path/holding/VOCdevkit

``prepare_data`` downloads VOC (``download=True``) or generates the offline demo dataset
(``demo=True``); ``setup`` builds the datasets. Training batches are random crops of one size,
``(images float32 (N, 3, H, W), masks int64 (N, H, W))`` with 255 = ignore. Validation and
evaluation batches keep every image whole and at its own size (:func:`whole_image_collate`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence

import pytorch_lightning as pl
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from segnet.data.classes import IGNORE_INDEX, VOC_CLASSES, class_colours
from segnet.data.demo import demo_dataset_ready, generate_demo_dataset
from segnet.data.images import DataError
from segnet.data.resumable import (
    PerSampleSeed,
    ResumableShuffle,
    epoch_position,
    limited_batches,
)
from segnet.data.sampler import eval_sampler
from segnet.data.sbd import VOCTrainAugDataset
from segnet.data.transforms import (
    check_crop_size,
    check_scale_range,
    eval_transforms,
    train_transforms,
)
from segnet.data.voc import VOCSegmentationDataset, download_voc, require_voc_dir, voc_dir

log = logging.getLogger(__name__)


def _positive_int(name: str, value: int, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


# Each worker holds a copy of the dataset and its prefetched batches; past 4, decoding is rarely
# what a training step waits for.
MAX_DEFAULT_WORKERS = 4


def default_num_workers() -> int:
    """min(4, CPUs this process may run on): more workers than cores only compete for them."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS and Windows have no affinity masks
        cpus = os.cpu_count() or 1
    return min(MAX_DEFAULT_WORKERS, cpus)


def whole_image_collate(
    batch: Sequence[tuple[Tensor, Tensor]],
) -> tuple[list[Tensor], list[Tensor]]:
    """``[(image (3, h_i, w_i), mask (h_i, w_i)), ...]`` -> ``([image, ...], [mask, ...])``.

    Nothing is padded: padding an image to a larger neighbour's size changes what the network
    sees near its border, and under DDP its neighbours depend on the number of processes, so
    validation would no longer give the single-process (and ``scripts/evaluate.py``) numbers.
    """
    images, masks = zip(*batch, strict=True)
    return list(images), list(masks)


def _class_names(class_names: Sequence[str] | None) -> list[str]:
    names = list(VOC_CLASSES) if class_names is None else [str(n) for n in class_names]
    if not 2 <= len(names) <= IGNORE_INDEX:
        raise ValueError(f"class_names must hold 2..{IGNORE_INDEX} names, got {len(names)}")
    if len(set(names)) != len(names) or not all(names):
        raise ValueError(f"class_names must be distinct and non-empty, got {names}")
    return names


class VOCDataModule(pl.LightningDataModule):
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
        super().__init__()
        if not root:
            raise ValueError("root must be the folder holding VOCdevkit/ (set data.root)")
        self.root = str(root)
        self.year = str(year)
        voc_dir(self.root, self.year)  # ValueError for an unknown year
        for name, split in (("train_split", train_split), ("val_split", val_split)):
            if not isinstance(split, str) or not split:
                raise ValueError(f"{name} must be a split name such as 'train', got {split!r}")
        self.train_split, self.val_split = train_split, val_split
        self._class_names = _class_names(class_names)
        self.crop_size = list(check_crop_size(crop_size))
        self.scale_range = list(check_scale_range(scale_range))
        self.batch_size = _positive_int("batch_size", batch_size)
        self.eval_batch_size = _positive_int("eval_batch_size", eval_batch_size)
        self.num_workers = (
            default_num_workers()
            if num_workers is None
            else _positive_int("num_workers", num_workers, minimum=0)
        )
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
        self.demo_num_train = _positive_int("demo_num_train", demo_num_train)
        self.demo_num_val = _positive_int("demo_num_val", demo_num_val)
        self.demo_seed = int(demo_seed)
        self.seed = int(seed)
        self.train_dataset: Dataset | None = None
        self.val_dataset: Dataset | None = None
        self.resume_step = 0

    def resume_at(self, global_step: int) -> None:
        """Make the training loader start where a fit resumed at ``global_step`` stands: at
        that step's epoch and batch. Told by the code that resumes rather than read from the
        trainer: Lightning may build the loader before it restores the checkpoint (the lr
        schedule asks for the run's length first)."""
        self.resume_step = int(global_step)

    @property
    def class_names(self) -> list[str]:
        return list(self._class_names)

    @property
    def class_colours(self) -> list[list[int]]:
        """``[r, g, b]`` per class: VOC's palette (a dataset in VOC's layout has no colours
        of its own in its index masks)."""
        return [list(rgb) for rgb in class_colours(self.num_classes)]

    @property
    def num_classes(self) -> int:
        return len(self._class_names)

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

    def setup(self, stage: str | None = None) -> None:
        """Build the train (stage "fit") and val (stages "fit", "validate") datasets."""
        self._require_voc()
        if stage in (None, "fit") and self.train_dataset is None:
            transforms = train_transforms(self.crop_size, self.scale_range)
            if self.trainaug:
                self.train_dataset = VOCTrainAugDataset(
                    self.root, self.year, self.num_classes, transforms
                )
            else:
                self.train_dataset = self._dataset(self.train_split, transforms)
        if stage in (None, "fit", "validate") and self.val_dataset is None:
            self.val_dataset = self._dataset(self.val_split, eval_transforms())

    def train_dataloader(self) -> DataLoader:
        """Random crops in a resumable order: a fit resumed from a checkpoint saved anywhere
        in an epoch starts at that checkpoint's batch, with the batches and crops the
        uninterrupted run had (:mod:`segnet.data.resumable`). Under DDP (the trainer's world
        size) each process takes its share."""
        dataset = self._require("train_dataset")
        if len(dataset) < self.batch_size:
            raise ValueError(
                f"the training set has {len(dataset)} images, fewer than batch_size="
                f"{self.batch_size}; the incomplete last batch is dropped, so none would be left"
            )
        trainer = self.trainer
        world, rank = (1, 0) if trainer is None else (trainer.world_size, trainer.global_rank)
        sampler = ResumableShuffle(dataset, num_replicas=world, rank=rank, seed=self.seed)
        if self.resume_step:
            limit, accumulate = (
                (None, 1)
                if trainer is None
                else (trainer.limit_train_batches, trainer.accumulate_grad_batches)
            )
            per_epoch = limited_batches(len(sampler) // self.batch_size, limit)
            epoch, done = epoch_position(self.resume_step, per_epoch, accumulate)
            sampler.set_epoch(epoch)
            sampler.start = done * self.batch_size
        return DataLoader(
            PerSampleSeed(dataset, self.seed),
            batch_size=self.batch_size,
            sampler=sampler,
            drop_last=True,
            **self._loader_options(persistent=True),
        )

    def val_dataloader(self) -> DataLoader:
        return self._eval_loader(self._require("val_dataset"), persistent=True)

    def eval_dataloader(self, split: str) -> DataLoader:
        """Whole-image loader over any split (for evaluating a checkpoint), as validation's."""
        if split == self.val_split and self.val_dataset is not None:
            dataset = self.val_dataset
        else:
            self._require_voc()
            dataset = self._dataset(split, eval_transforms())
        return self._eval_loader(dataset, persistent=False)

    def _eval_loader(self, dataset: Dataset, persistent: bool) -> DataLoader:
        # Under DDP each sample goes to exactly one rank, none repeated (see sampler.py).
        return DataLoader(
            dataset,
            batch_size=self.eval_batch_size,
            shuffle=False,
            sampler=eval_sampler(dataset),
            collate_fn=whole_image_collate,
            **self._loader_options(persistent),
        )

    def _loader_options(self, persistent: bool) -> dict:
        return {
            "num_workers": self.num_workers,
            "persistent_workers": persistent and self.num_workers > 0,
            "pin_memory": torch.cuda.is_available(),
        }

    def _dataset(self, split: str, transforms: Callable) -> VOCSegmentationDataset:
        return VOCSegmentationDataset(self.root, split, self.year, self.num_classes, transforms)

    def _require_voc(self) -> None:
        """DataError if root/VOCdevkit/VOC<year> is missing, saying which arguments to set."""
        try:
            require_voc_dir(self.root, self.year)
        except DataError as err:
            raise DataError(
                f"{err}. Set root (data.root=...) to the folder that holds VOCdevkit/, or "
                "download=true to fetch VOC (needs internet), or demo=true to generate the "
                "demo dataset there"
            ) from err

    def _require(self, attribute: str) -> Dataset:
        dataset = getattr(self, attribute)
        if dataset is None:
            raise RuntimeError(f"{attribute} is not built: call setup() first")
        return dataset
