"""Turn a user's ``device`` setting into a torch device that exists on this machine.

Checked before any work starts, so ``device=gpu`` or ``device=cuda`` on a machine without a GPU
is one clear line naming the setting and what the machine has, not a traceback (or a
misleading error from whatever first touches the device).
"""

from __future__ import annotations

import torch


def available_devices() -> list[str]:
    """What this machine offers, e.g. ``["cpu", "cuda:0", "cuda:1"]``."""
    devices = ["cpu"]
    if torch.cuda.is_available():
        devices += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if torch.backends.mps.is_available():
        devices.append("mps")
    return devices


def resolve_device(name: str | torch.device) -> torch.device:
    """``"auto"``: the first GPU if there is one, else the CPU; otherwise ``name`` checked.

    Raises:
        ValueError: ``name`` is not a device string, or names a device this machine lacks
            (the message lists the ones it has).
    """
    if isinstance(name, torch.device):
        name = str(name)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    have = ", ".join(["auto", *available_devices()])
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError) as err:
        raise ValueError(
            f"device={name!r} is not a device; use one of: {have} (cuda means cuda:0)"
        ) from err
    if device.type == "cpu":
        return device
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ValueError(f"device={name!r}: this machine has no CUDA GPU; use one of: {have}")
        if device.index is not None and device.index >= count:
            raise ValueError(f"device={name!r}: this machine has {count} CUDA GPU(s); use {have}")
        return device
    if device.type == "mps" and torch.backends.mps.is_available():
        return device
    raise ValueError(f"device={name!r} is not available on this machine; use one of: {have}")
