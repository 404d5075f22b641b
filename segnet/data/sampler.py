"""A distributed sampler for evaluation that sees every sample exactly once.

torch's ``DistributedSampler`` pads the index list by repeating samples so all ranks get the
same count; during evaluation those repeats are counted twice in the confusion matrix. This
one shards ``rank, rank + world, ...`` without padding, so ranks may differ by one sample
(and one batch). That is safe for evaluation under DDP: the only collective of an evaluation
forward pass is in each rank's first one, where DDP broadcasts rank 0's buffers (so batch-norm
statistics kept per process on CPU are rank 0's, those saved in the checkpoint); every rank has
at least one batch, and later passes under ``no_grad`` run none, so ranks next meet when the
metrics synchronise at epoch end. (Do not use it for training, where DDP synchronises every
backward pass.)

Because it *is* a ``DistributedSampler``, Lightning leaves a loader that uses it alone
instead of injecting its own padded one.
"""

from __future__ import annotations

from collections.abc import Iterator, Sized

import torch.distributed as dist
from torch.utils.data import DistributedSampler


class UnpaddedDistributedSampler(DistributedSampler):
    """Indices ``rank, rank + num_replicas, ...`` of ``dataset``, in order, never repeated.

    Args:
        dataset: any sized dataset.
        num_replicas, rank: the process group's world size and this process's rank
            (default: read from the initialised ``torch.distributed`` group).

    Raises:
        ValueError: the dataset has fewer samples than there are processes: a rank with no
            batch would skip evaluation and leave the others waiting at the metric sync.
    """

    def __init__(
        self, dataset: Sized, num_replicas: int | None = None, rank: int | None = None
    ) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=False)
        self.total_size = len(dataset)
        self.num_samples = len(range(self.rank, self.total_size, self.num_replicas))
        if self.num_samples == 0 and self.total_size > 0:
            raise ValueError(
                f"evaluation set has {self.total_size} samples, fewer than the "
                f"{self.num_replicas} processes; use fewer devices or a larger split"
            )

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, self.total_size, self.num_replicas))


def eval_sampler(dataset: Sized) -> UnpaddedDistributedSampler | None:
    """The sampler for an evaluation loader: unpadded sharding under torch.distributed, else
    None (the DataLoader's sequential order)."""
    if dist.is_available() and dist.is_initialized():
        return UnpaddedDistributedSampler(dataset)
    return None
