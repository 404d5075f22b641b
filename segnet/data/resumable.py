"""Training data that a resumed run reproduces exactly: the same batches, the same crops.

A run stopped anywhere in an epoch (Ctrl-C, SIGTERM, a SLURM requeue, a crash, a killed
worker) resumes from its checkpoint at the step it stopped at. Two things make the batches from
there on those of the run that never stopped:

- **the order**: :class:`ResumableShuffle` shuffles by ``(seed, epoch)`` alone, as torch's
  ``DistributedSampler`` does, and starts where the checkpoint's global step says the epoch
  stands (:func:`epoch_position`). The position is derived from the global step rather than
  saved as a loader state: Lightning fetches batches ahead of the step that uses them, so a
  loader's own count of what it handed out runs ahead of what was trained (why not torchdata's
  StatefulDataLoader: docs/design.md);
- **the augmentation**: :class:`PerSampleSeed` draws each sample's random scale, crop and flip
  from a generator seeded by ``(seed, epoch, index)``, so a sample is augmented the same in any
  DataLoader worker, on any process and after any restart (a worker's own random stream would
  depend on which samples it happened to load before).

Under DDP each of the ``world`` processes takes every ``world``-th sample of the epoch's order;
1 node x 2 processes and 2 nodes x 1 process see the same batches.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sized

import numpy as np
import torch
from torch.utils.data import Dataset, DistributedSampler


def limited_batches(batches: int, limit: int | float | None) -> int:
    """The batches Lightning trains per epoch out of ``batches``, under
    ``trainer.limit_train_batches`` (an int: at most that many; a float: that fraction)."""
    if limit is None:
        return batches
    if isinstance(limit, float):
        return int(batches * limit)
    return min(batches, int(limit))


def epoch_position(
    global_step: int, batches_per_epoch: int, accumulate: int = 1
) -> tuple[int, int]:
    """``(epoch, batches already trained in it)`` at ``global_step`` optimiser steps, for epochs
    of ``batches_per_epoch`` batches and ``accumulate`` batches per step (the last step of an
    epoch takes what is left, as Lightning's loop does)."""
    steps_per_epoch = math.ceil(batches_per_epoch / accumulate)
    epoch, steps = divmod(global_step, steps_per_epoch)
    return epoch, steps * accumulate


class ResumableShuffle(DistributedSampler):
    """This process's share of a ``(seed, epoch)`` shuffle, as ``(epoch, index)`` keys (for
    :class:`PerSampleSeed`), the first iteration starting at ``start`` (a resumed epoch).

    It *is* a ``DistributedSampler``, so Lightning sets its epoch and never replaces it. Each
    iteration reads the epoch when it begins: Lightning starts a resumed epoch's iterator
    before it calls ``set_epoch``, so the resumed epoch is given here.

    Args:
        dataset: the training set (its length).
        num_replicas, rank: the process group's size and this process's global rank.
        seed: the shuffle's seed (the run's ``seed``).
        epoch: the epoch of the first iteration.
        start: samples of this process's share to skip in the first iteration.
    """

    def __init__(
        self,
        dataset: Sized,
        num_replicas: int,
        rank: int,
        seed: int,
        epoch: int = 0,
        start: int = 0,
    ) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed)
        self.set_epoch(epoch)
        self.start = start

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch, start, self.start = self.epoch, self.start, 0
        indices = list(super().__iter__())[start:]
        return iter([(epoch, index) for index in indices])


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """A 63-bit seed for sample ``index`` in ``epoch`` of a run seeded ``seed`` (mixed by
    numpy's SeedSequence, so neighbouring samples get unrelated streams)."""
    state = np.random.SeedSequence((seed, epoch, index)).generate_state(1, np.uint64)[0]
    return int(state) >> 1


class PerSampleSeed(Dataset):
    """``dataset`` indexed by ``(epoch, index)`` keys, each sample drawn with torch's random
    generator seeded by :func:`sample_seed` (the caller's generator state is left as it was).

    Args:
        dataset: a map-style dataset whose transforms draw from torch's global generator
            (torchvision's v2 transforms and :mod:`segnet.data.transforms` do).
        seed: the run's seed.
    """

    def __init__(self, dataset: Dataset, seed: int) -> None:
        self.dataset, self.seed = dataset, int(seed)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]):
        epoch, index = key
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(sample_seed(self.seed, epoch, index))
            return self.dataset[index]
