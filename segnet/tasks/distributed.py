"""Processes started by torchrun: which device each one uses, joining the group, and failing
together (one rank's error stops every rank instead of leaving them waiting for it)."""

from __future__ import annotations

import os
from collections.abc import Callable

import torch
import torch.distributed as dist

from segnet.device import resolve_device


def world_size() -> int:
    """Processes of this run: torchrun's WORLD_SIZE, 1 without torchrun."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def restart_problem() -> str | None:
    """Why torchrun's restarts of this run would fail, or None.

    With ``--max-restarts`` > 0, torchrun's c10d rendezvous shares its store with the workers
    unless ``TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1`` is set for torchrun; a restarted group then
    reads the dead group's addresses from it and cannot connect (pytorch/pytorch#135712; gloo
    says "Gloo connectFullMesh failed ... Connection refused").
    """
    restarts = int(os.environ.get("TORCHELASTIC_MAX_RESTARTS", "0"))
    if restarts > 0 and os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True":
        return (
            f"torchrun --max-restarts={restarts} cannot restart this group: run torchrun with "
            "TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1 in its environment (pytorch#135712)"
        )
    return None


def process_device(name: str, world: int) -> torch.device:
    """The checked device; under torchrun ``cuda`` means this process's GPU (LOCAL_RANK)."""
    device = resolve_device(name)
    if world == 1 or device.type != "cuda":
        return device
    if device.index is not None:
        if int(os.environ.get("LOCAL_WORLD_SIZE", "1")) > 1:
            raise ValueError(
                f"device={name!r} would put every process of this node on one GPU; use "
                "device=cuda (each process then takes the GPU of its LOCAL_RANK)"
            )
        return device
    local, count = int(os.environ.get("LOCAL_RANK", "0")), torch.cuda.device_count()
    if local >= count:
        raise ValueError(
            f"device={name!r}: this is process {local} of its node, which has {count} CUDA "
            f"GPU(s); start at most {count} per node (torchrun --nproc_per_node={count})"
        )
    return torch.device("cuda", local)


def start_distributed(device: torch.device, world: int) -> int:
    """Join the process group torchrun describes (WORLD_SIZE > 1); returns this rank."""
    if world == 1:
        return 0
    if not dist.is_initialized():
        # The backend follows the device the matrices live on (device=cpu under a GPU torchrun
        # needs gloo: NCCL cannot reduce CPU tensors).
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return dist.get_rank()


def on_rank_zero(step: Callable[[], None], rank: int, world: int, device: torch.device) -> None:
    """Run ``step`` on rank 0 only; if it raises, every rank stops (rank 0 with its error),
    instead of the others waiting for it forever."""
    error = None
    if rank == 0:
        try:
            step()
        except Exception as err:  # re-raised below, after the other ranks were told
            error = err
    if world > 1:
        failed = torch.tensor([error is not None], dtype=torch.int32, device=device)
        dist.broadcast(failed, src=0)
        if failed.item() and rank != 0:
            raise ValueError("stopped: process 0 could not prepare the evaluation (see its error)")
    if error is not None:
        raise error
