"""Sliding-window prediction of images too large to predict whole.

Windows overlap by ``overlap``, their start positions are spread evenly from 0 to
``size - window`` so the last window lies flush with the border: every pixel is covered by real
image content and no padding is ever predicted (a side shorter than the window gets a window of
that side). Per-pixel class probabilities of overlapping windows are blended with Gaussian
weights (nnU-Net, Isensee et al. 2021: a window's centre is more reliable than its rim) or
uniform weights. The result is produced in horizontal bands that are final as soon as the
windows below no longer reach them, so a huge image needs memory for one band of windows, not
for a full-image (C, H, W) score map.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence

import torch
from torch import Tensor

BLENDS = ("gaussian", "uniform")


def window_size(window: int | Sequence[int]) -> tuple[int, int]:
    """``window`` as (height, width); an int means a square. ValueError unless positive ints."""
    size = (window, window) if isinstance(window, int) else tuple(window)
    if len(size) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) for v in size):
        raise ValueError(f"window must be an int or [height, width], got {window!r}")
    if min(size) < 1:
        raise ValueError(f"window must be positive, got {window!r}")
    return int(size[0]), int(size[1])


def window_starts(size: int, window: int, overlap: float) -> list[int]:
    """Start offsets of windows of length ``window`` covering ``0..size-1`` along one axis.

    Consecutive windows overlap by at least ``overlap * window`` pixels; the first starts at
    0 and the last ends at ``size``. ``window >= size`` gives ``[0]``.
    """
    if not 0 <= overlap < 1:
        raise ValueError(f"overlap must be in [0, 1), got {overlap}")
    if size <= window:
        return [0]
    stride = max(1, math.floor(window * (1 - overlap)))
    count = math.ceil((size - window) / stride) + 1
    return [round(i * (size - window) / (count - 1)) for i in range(count)]


def blend_weights(height: int, width: int, blend: str, device=None) -> Tensor:
    """Per-pixel weight of a window's prediction, (height, width), maximum 1.

    "gaussian": sigma = 1/8 of the window side (nnU-Net's choice), floored at 1e-4 so the
    window rim still counts where no other window reaches. "uniform": all ones.
    """
    if blend == "uniform":
        return torch.ones(height, width, device=device)
    if blend != "gaussian":
        raise ValueError(f"blend must be one of {BLENDS}, got {blend!r}")

    def profile(n: int) -> Tensor:
        x = torch.arange(n, dtype=torch.float32, device=device) - (n - 1) / 2
        return torch.exp(-0.5 * (x / (n / 8)) ** 2)

    return torch.outer(profile(height), profile(width)).clamp_min(1e-4)


def sliding_window_bands(
    score: Callable[[Tensor], Tensor],
    images: Tensor,
    window: tuple[int, int],
    overlap: float = 1 / 3,
    blend: str = "gaussian",
    batch_size: int = 4,
    progress: Callable[[int, int], None] | None = None,
) -> Iterator[tuple[int, Tensor]]:
    """Blend ``score`` over overlapping windows of ``images`` (N, 3, H, W), band by band.

    ``score`` maps a batch of crops (B, 3, h, w) to scores (B, C, h, w), on any device: the
    blend is accumulated where the scores are. Yields ``(top, band)`` with ``band``
    (N, C, rows, W) the blended scores of image rows ``top .. top+rows-1``; bands come in
    order and together cover every row once. Memory: one (N, C, h, W) accumulator, which
    each band is a view of: use (or copy) a band before asking for the next. ``progress``,
    if given, is called as ``progress(windows_done, windows_total)`` after every batch.
    """
    num, _, height, width = images.shape
    win_h, win_w = min(window[0], height), min(window[1], width)
    tops = window_starts(height, win_h, overlap)
    lefts = window_starts(width, win_w, overlap)
    crops = [(n, left) for n in range(num) for left in lefts]
    total, finished = len(tops) * len(crops), 0
    acc = weight = row_weight = acc_weight = None  # made on the scores' device
    for i, top in enumerate(tops):
        for start in range(0, len(crops), batch_size):
            chunk = crops[start : start + batch_size]
            batch = torch.stack(
                [images[n, :, top : top + win_h, left : left + win_w] for n, left in chunk]
            )
            scores = score(batch)
            if acc is None:
                acc = scores.new_zeros(num, scores.shape[1], win_h, width)
                weight = blend_weights(win_h, win_w, blend, scores.device)
                row_weight = torch.zeros(win_h, width, device=scores.device)
                for left in lefts:
                    row_weight[:, left : left + win_w] += weight
                acc_weight = torch.zeros_like(row_weight)
            for (n, left), s in zip(chunk, scores, strict=True):
                acc[n, :, :, left : left + win_w].addcmul_(s, weight)
            finished += len(chunk)
            if progress is not None:
                progress(finished, total)
        acc_weight += row_weight
        # Rows above the next window row receive nothing more: hand them out (normalised in
        # place, no copy), then shift the rest up in slices that never overlap themselves.
        done = tops[i + 1] - top if i + 1 < len(tops) else win_h
        yield top, acc[:, :, :done].div_(acc_weight[:done])
        for buffer in (acc, acc_weight):
            for row in range(0, win_h - done, done):
                rows = min(done, win_h - done - row)
                buffer[..., row : row + rows, :] = buffer[..., row + done : row + done + rows, :]
            buffer[..., win_h - done :, :] = 0
