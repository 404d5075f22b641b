"""Layer benchmark: bilinear upsampling of class scores, forward and forward+backward.

Cases: 21 channels, batch 8, factors 8 and 32 up to 320x480 (inputs 40x60 and 10x15), for

- ``BilinearUpsample``: this project's layer, trainable (its CPU polyphase path);
- ``F.interpolate``: bilinear, ``align_corners=False``, nothing to learn: the floor;
- ``dense CxC``: ``nn.ConvTranspose2d(C, C)`` with the bilinear filter on the diagonal and zeros
  elsewhere (d2l's FCN), trainable;
- ``depthwise conv_transpose2d``: PyTorch's own ``groups=C`` transposed convolution with the
  same weight as ``BilinearUpsample``, for reference.

Targets: BilinearUpsample at most 1.5x the time of F.interpolate, and faster than dense CxC.

"forward" runs under ``torch.no_grad`` (inference); "forward+backward" takes the input with
``requires_grad`` (it comes from the network) and back-propagates a fixed upstream gradient, as
a loss would. Times are medians of passes interleaved round-robin across layouts, after
warm-up, so load from elsewhere on a shared machine hits all layouts alike.

Peak memory (full run only): each case runs once in a fresh Python process (``python -m
segnet.benchmarks.layers LAYOUT FACTOR THREADS``); the figure is the rise of ``ru_maxrss``
over one forward+backward pass, measured after the inputs and the upstream gradient exist.
"""

from __future__ import annotations

import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from segnet.benchmarks import Result
from segnet.layers.upsample import BilinearUpsample, bilinear_kernel

SECTION = "layers"
CHANNELS, BATCH, OUT_SIZE = 21, 8, (320, 480)
FACTORS = (8, 32)
OURS, FLOOR, DENSE, DEPTHWISE = (
    "BilinearUpsample",
    "F.interpolate",
    "dense CxC",
    "depthwise conv_transpose2d",
)
LAYOUTS = (OURS, FLOOR, DENSE, DEPTHWISE)
# (layout compared with, target, whether the time ratio BilinearUpsample / layout meets it)
TARGETS = ((FLOOR, "<= 1.5", lambda r: r <= 1.5), (DENSE, "< 1", lambda r: r < 1))


def build(layout: str, factor: int) -> Callable[[Tensor], Tensor]:
    """The upsampling function of ``layout`` (a module where it has weights)."""
    if layout == OURS:
        return BilinearUpsample(CHANNELS, factor)
    if layout == FLOOR:
        return lambda x: F.interpolate(x, scale_factor=factor, mode="bilinear")
    ours = BilinearUpsample(CHANNELS, factor)
    if layout == DEPTHWISE:
        weight = nn.Parameter(ours.weight.detach().clone())
        return lambda x: F.conv_transpose2d(
            x, weight, stride=factor, padding=ours.padding, groups=CHANNELS
        )
    if layout == DENSE:
        dense = nn.ConvTranspose2d(
            CHANNELS, CHANNELS, ours.kernel_size, factor, ours.padding, bias=False
        )
        with torch.no_grad():
            dense.weight.zero_()
            dense.weight[range(CHANNELS), range(CHANNELS)] = bilinear_kernel(ours.kernel_size)
        return dense
    raise ValueError(f"unknown layout {layout!r}; choose from {', '.join(LAYOUTS)}")


def inputs(factor: int) -> tuple[Tensor, Tensor]:
    """Scores (N, C, H/f, W/f) requiring grad, and an upstream gradient (N, C, H, W)."""
    torch.manual_seed(0)
    h, w = OUT_SIZE[0] // factor, OUT_SIZE[1] // factor
    x = torch.randn(BATCH, CHANNELS, h, w, requires_grad=True)
    return x, torch.randn(BATCH, CHANNELS, *OUT_SIZE)


def forward(up: Callable[[Tensor], Tensor], x: Tensor, grad: Tensor) -> None:
    with torch.no_grad():
        up(x)


def forward_backward(up: Callable[[Tensor], Tensor], x: Tensor, grad: Tensor) -> None:
    up(x).backward(grad)


def median_ms(factor: int, warmup: int, repeats: int) -> dict[tuple[str, str], float]:
    """{(layout, pass): median ms}, every pass of every layout interleaved round-robin."""
    x, grad = inputs(factor)
    layers = {layout: build(layout, factor) for layout in LAYOUTS}
    runs = {
        (layout, name): (lambda up=up, step=step: step(up, x, grad))
        for layout, up in layers.items()
        for name, step in (("forward", forward), ("forward+backward", forward_backward))
    }
    times: dict[tuple[str, str], list[float]] = {key: [] for key in runs}
    for _ in range(warmup):
        for run_once in runs.values():
            run_once()
    for _ in range(repeats):
        for key, run_once in runs.items():
            start = time.perf_counter()
            run_once()
            times[key].append(time.perf_counter() - start)
    return {key: 1000 * statistics.median(t) for key, t in times.items()}


def peak_rss_mb(layout: str, factor: int) -> float:
    """MB that ``ru_maxrss`` rises by over one forward+backward pass (run in a fresh process)."""
    up = build(layout, factor)
    x, grad = inputs(factor)
    before_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    forward_backward(up, x, grad)
    return (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before_kb) / 1024


def in_fresh_process(layout: str, factor: int, threads: int) -> float:
    args = [sys.executable, "-m", "segnet.benchmarks.layers", layout, str(factor), str(threads)]
    done = subprocess.run(args, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"layers benchmark {layout!r} x{factor} failed:\n{done.stderr[-2000:]}")
    return float(done.stdout.split()[-1])


def run(quick: bool) -> list[Result]:
    threads = torch.get_num_threads()
    warmup, repeats = (1, 2) if quick else (2, 10)
    results = []
    for factor in FACTORS:
        h, w = OUT_SIZE[0] // factor, OUT_SIZE[1] // factor
        size = (
            f"x{factor}, {BATCH}x{CHANNELS}x{h}x{w}->{OUT_SIZE[0]}x{OUT_SIZE[1]}, {threads} threads"
        )
        ms = median_ms(factor, warmup, repeats)
        for (layout, name), value in ms.items():
            results.append(Result(SECTION, f"{layout} {size}", f"{name} (median)", value, "ms"))
        for name in ("forward", "forward+backward"):
            for other, target, met in TARGETS:
                ratio = ms[OURS, name] / ms[other, name]
                metric = f"{name} time / {other}"
                case = f"{OURS} x{factor}"
                results.append(Result(SECTION, case, metric, ratio, "x", target, met(ratio)))
        if not quick:
            for layout in LAYOUTS:
                peak = in_fresh_process(layout, factor, threads)
                results.append(
                    Result(SECTION, f"{layout} x{factor}", "peak RSS, forward+backward", peak, "MB")
                )
    return results


if __name__ == "__main__":
    torch.set_num_threads(int(sys.argv[3]))
    print(peak_rss_mb(sys.argv[1], int(sys.argv[2])))
