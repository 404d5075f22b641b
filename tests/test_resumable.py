"""The resumable training order and per-sample augmentation seeds (segnet.data.resumable)."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from segnet.data.resumable import (
    PerSampleSeed,
    ResumableShuffle,
    epoch_position,
    limited_batches,
    sample_seed,
)


class Draws(Dataset):
    """Sample i: (i, a number drawn from torch's global generator), as an augmentation draws."""

    def __len__(self) -> int:
        return 10

    def __getitem__(self, index: int) -> tuple[int, int]:
        return index, int(torch.randint(0, 10**9, ()))


def keys(sampler: ResumableShuffle) -> list[tuple[int, int]]:
    return list(sampler)


def test_the_order_is_a_function_of_seed_and_epoch_only():
    data = Draws()
    first = ResumableShuffle(data, 1, 0, seed=3)
    torch.manual_seed(123)  # the global generator plays no part
    again = ResumableShuffle(data, 1, 0, seed=3)
    assert keys(first) == keys(again)
    assert sorted(index for _, index in keys(first)) == list(range(10))
    first.set_epoch(1)
    assert {epoch for epoch, _ in keys(first)} == {1}
    assert [i for _, i in keys(first)] != [i for _, i in keys(again)]  # another epoch's shuffle
    assert keys(ResumableShuffle(data, 1, 0, seed=4)) != keys(again)


def test_a_resumed_epoch_starts_at_its_sample_and_the_next_one_from_the_top():
    data = Draws()
    whole = ResumableShuffle(data, 1, 0, seed=0, epoch=2)
    resumed = ResumableShuffle(data, 1, 0, seed=0, epoch=2, start=7)
    assert keys(resumed) == keys(whole)[7:]
    assert keys(resumed) == keys(whole)  # only the first iteration skips


def test_processes_take_disjoint_shares_of_the_same_order():
    data = Draws()
    shares = [keys(ResumableShuffle(data, 2, rank, seed=0, epoch=1)) for rank in (0, 1)]
    order = [i for _, i in keys(ResumableShuffle(data, 1, 0, seed=0, epoch=1))]
    assert [i for _, i in shares[0]] == order[0::2] and [i for _, i in shares[1]] == order[1::2]


def test_a_sample_is_drawn_the_same_whoever_loads_it_and_the_callers_generator_is_kept():
    seeded = PerSampleSeed(Draws(), seed=0)
    torch.manual_seed(5)
    before = torch.random.get_rng_state()
    alone = seeded[(1, 4)]
    assert torch.equal(torch.random.get_rng_state(), before)
    seeded[(1, 3)]  # another sample first: no effect on sample 4
    assert seeded[(1, 4)] == alone and alone[0] == 4
    assert seeded[(2, 4)] != alone  # another epoch, another draw
    assert PerSampleSeed(Draws(), seed=1)[(1, 4)] != alone  # another run seed
    sampler = ResumableShuffle(Draws(), 1, 0, seed=0, epoch=1)
    in_main = list(DataLoader(seeded, batch_size=3, sampler=sampler, collate_fn=list))
    in_workers = DataLoader(seeded, batch_size=3, sampler=sampler, collate_fn=list, num_workers=2)
    assert list(in_workers) == in_main


def test_sample_seeds_differ_for_neighbours_and_fit_a_manual_seed():
    seeds = {sample_seed(0, e, i) for e in range(3) for i in range(100)}
    assert len(seeds) == 300 and all(0 <= s < 2**63 for s in seeds)


@pytest.mark.parametrize(
    ("step", "per_epoch", "accumulate", "expected"),
    [
        (0, 5, 1, (0, 0)),
        (3, 5, 1, (0, 3)),
        (5, 5, 1, (1, 0)),  # stopped after an epoch's last batch: the next epoch, from the top
        (12, 5, 1, (2, 2)),
        (4, 5, 2, (1, 2)),  # 3 steps an epoch (2 + 2 + 1 batches)
    ],
)
def test_epoch_position(step, per_epoch, accumulate, expected):
    assert epoch_position(step, per_epoch, accumulate) == expected


def test_limited_batches_follows_lightnings_limit_train_batches():
    assert limited_batches(10, None) == 10
    assert limited_batches(10, 4) == 4 and limited_batches(10, 40) == 10
    assert limited_batches(10, 0.25) == 2 and limited_batches(10, 1.0) == 10
