"""The loaders every segnet data module shares; subclasses say where the samples come from.

Training batches are random crops of one size, ``(images float32 (N, 3, H, W), masks int64
(N, H, W))`` with 255 = ignore, in a resumable order. Validation and evaluation batches keep
every image whole and at its own size (:func:`whole_image_collate`). Under DDP each process takes
its share of both.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import pytorch_lightning as pl
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from segnet.data.classes import IGNORE_INDEX, VOC_CLASSES, class_colours
from segnet.data.resumable import (
    PerSampleSeed,
    ResumableShuffle,
    epoch_position,
    limited_batches,
)
from segnet.data.sampler import eval_sampler
from segnet.data.transforms import (
    check_crop_size,
    check_scale_range,
    eval_transforms,
    train_transforms,
)


def positive_int(name: str, value: int, minimum: int = 1) -> int:
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


def checked_class_names(class_names: Sequence[str] | None) -> list[str]:
    """``class_names`` as a list (None: VOC's 21); ValueError unless 2..255 distinct names."""
    names = list(VOC_CLASSES) if class_names is None else [str(n) for n in class_names]
    if not 2 <= len(names) <= IGNORE_INDEX:
        raise ValueError(f"class_names must hold 2..{IGNORE_INDEX} names, got {len(names)}")
    if len(set(names)) != len(names) or not all(names):
        raise ValueError(f"class_names must be distinct and non-empty, got {names}")
    return names


def checked_split(name: str, split: str) -> str:
    if not isinstance(split, str) or not split:
        raise ValueError(f"{name} must be a split name such as 'train', got {split!r}")
    return split


class SegmentationDataModule(pl.LightningDataModule):
    """Train/val/eval loaders over the datasets a subclass builds (plain-value arguments).

    Subclasses set ``_class_names`` and implement :meth:`_dataset` (any split) and
    :meth:`_require_data` (DataError listing what is wrong with the data and the splits about
    to be used); :meth:`_train_dataset` may build the training set another way (VOC's trainaug).

    Args:
        train_split, val_split: the splits trained and validated on.
        crop_size: training crop [height, width]; smaller images are padded, not dropped.
        scale_range: [low, high] of the random training scale, relative to the image's size.
        batch_size: training batch size (incomplete last batch dropped).
        eval_batch_size: images per validation/evaluation batch (each kept at its own size).
        num_workers: DataLoader worker processes (0: the main process; None:
            :func:`default_num_workers`).
        seed: the training order's and augmentation's seed (see :mod:`segnet.data.resumable`).
    """

    _class_names: list[str]

    def __init__(
        self,
        train_split: str,
        val_split: str,
        crop_size: Sequence[int],
        scale_range: Sequence[float],
        batch_size: int,
        eval_batch_size: int,
        num_workers: int | None,
        seed: int,
    ) -> None:
        super().__init__()
        self.train_split = checked_split("train_split", train_split)
        self.val_split = checked_split("val_split", val_split)
        self.crop_size = list(check_crop_size(crop_size))
        self.scale_range = list(check_scale_range(scale_range))
        self.batch_size = positive_int("batch_size", batch_size)
        self.eval_batch_size = positive_int("eval_batch_size", eval_batch_size)
        self.num_workers = (
            default_num_workers()
            if num_workers is None
            else positive_int("num_workers", num_workers, minimum=0)
        )
        self.seed = int(seed)
        self.train_dataset: Dataset | None = None
        self.val_dataset: Dataset | None = None
        self.resume_step = 0

    def _dataset(self, split: str, transforms: Callable) -> Dataset:
        raise NotImplementedError

    def _require_data(self, splits: Sequence[str]) -> None:
        raise NotImplementedError

    def _train_dataset(self, transforms: Callable) -> Dataset:
        return self._dataset(self.train_split, transforms)

    @property
    def train_set_name(self) -> str:
        """What the training set is called in messages (a split name, or e.g. 'trainaug')."""
        return self.train_split

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
        """``[r, g, b]`` per class: VOC's palette, unless the dataset has its own."""
        return [list(rgb) for rgb in class_colours(self.num_classes)]

    @property
    def num_classes(self) -> int:
        return len(self._class_names)

    def setup(self, stage: str | None = None) -> None:
        """Build the train (stage "fit") and val (stages "fit", "validate") datasets."""
        fit = stage in (None, "fit")
        self._require_data([self.train_split, self.val_split] if fit else [self.val_split])
        if fit and self.train_dataset is None:
            self.train_dataset = self._train_dataset(
                train_transforms(self.crop_size, self.scale_range)
            )
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
            self._require_data([split])
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

    def _require(self, attribute: str) -> Dataset:
        dataset = getattr(self, attribute)
        if dataset is None:
            raise RuntimeError(f"{attribute} is not built: call setup() first")
        return dataset
