"""Model benchmark: inference latency, parameters and peak memory of FCN-8s against torchvision.

Cases, all batch 1, 320x480, eval mode under ``torch.inference_mode``: FCN-8s on resnet18,
resnet50 and mobilenet_v3_large, and ``torchvision.models.segmentation.fcn_resnet50`` (weights
None) as the reference. torchvision's FCN is FCN-32s-like on a *dilated* ResNet-50 (stride 8
throughout layer3/layer4) with a 3x3, 2048->512 conv head, so it computes its deepest layers on
16x more positions than ours. Target: FCN-8s/resnet50 at least 4x faster than fcn_resnet50.

Latency: median wall time of the timed forward passes, after warm-up passes (the first one
pays for one-off kernel selection and allocations), all models in one process with the same
thread count. The timed passes are interleaved round-robin across models, so a burst of load
from elsewhere on a shared machine hits every model alike and the speed-ups stay fair.

Peak memory: each case runs in its own fresh Python process (``python -m segnet.benchmarks.model
CASE THREADS``) that builds the model and runs one forward pass; the figure is the process's
peak RSS (``VmHWM``, see :func:`segnet.benchmarks.peak_rss_kb`) after that pass minus its value
right after the imports. That is the real peak resident memory the model costs on top of the
interpreter and torch: weights, activations, allocator and library workspaces. (On CPU torch
allocates from the system heap, so ``tracemalloc`` sees none of it, and the torch.cuda counters
do not apply.) Transients of building the model count too, so it is an upper bound on what
inference alone needs. The same pass counts FLOPs (``torch.utils.flop_counter``), which, unlike
the latencies, do not depend on the machine or its load."""

from __future__ import annotations

import statistics
import subprocess
import sys
import time

import torch
import torchvision
from torch.utils.flop_counter import FlopCounterMode

from segnet.benchmarks import Result, peak_rss_kb
from segnet.models import FCN

SECTION = "model"
SIZE = (320, 480)
REFERENCE = "torchvision fcn_resnet50"
CASES = ("fcn8s-resnet18", "fcn8s-resnet50", "fcn8s-mobilenet_v3_large", REFERENCE)


def build(case: str) -> torch.nn.Module:
    """The untrained model of ``case`` in eval mode; its forward returns a logits tensor."""
    if case == REFERENCE:
        net = torchvision.models.segmentation.fcn_resnet50(weights=None, weights_backbone=None)
        return _OutOnly(net).eval()
    variant, backbone = case.split("-", 1)
    return FCN(num_classes=21, backbone=backbone, variant=variant).eval()


class _OutOnly(torch.nn.Module):
    """torchvision's segmentation models return {"out": logits}; keep just the tensor."""

    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)["out"]


def latencies_ms(models: dict[str, torch.nn.Module], warmup: int, repeats: int) -> dict:
    """Median forward time per model (ms); repeats are interleaved across models, round-robin."""
    torch.manual_seed(0)
    x = torch.randn(1, 3, *SIZE)
    times: dict[str, list[float]] = {case: [] for case in models}
    with torch.inference_mode():
        for case, model in models.items():
            for _ in range(warmup):
                logits = model(x)
            if logits.shape != (1, 21, *SIZE):
                raise RuntimeError(f"{case} returned logits of shape {tuple(logits.shape)}")
        for _ in range(repeats):
            for case, model in models.items():
                start = time.perf_counter()
                model(x)
                times[case].append(time.perf_counter() - start)
    return {case: 1000 * statistics.median(t) for case, t in times.items()}


def peak_rss_and_flops(case: str) -> tuple[float, float]:
    """In a fresh process: (MB of peak RSS after building ``case`` and one forward, minus that
    after the imports; GFLOP of that forward)."""
    imported_kb = peak_rss_kb()
    model = build(case)
    with torch.inference_mode(), FlopCounterMode(display=False) as flops:
        model(torch.randn(1, 3, *SIZE))
    peak_kb = peak_rss_kb() - imported_kb
    return peak_kb / 1024, flops.get_total_flops() / 1e9


def in_fresh_process(case: str, threads: int) -> tuple[float, float]:
    done = subprocess.run(
        [sys.executable, "-m", "segnet.benchmarks.model", case, str(threads)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise RuntimeError(f"model benchmark {case!r} failed:\n{done.stderr[-2000:]}")
    peak_mb, gflop = done.stdout.split()[-2:]
    return float(peak_mb), float(gflop)


def run(quick: bool) -> list[Result]:
    threads = torch.get_num_threads()
    warmup, repeats = (1, 2) if quick else (2, 10)
    measured = {case: in_fresh_process(case, threads) for case in CASES}
    models = {case: build(case) for case in CASES}
    latency = latencies_ms(models, warmup, repeats)
    size = f"1x3x{SIZE[0]}x{SIZE[1]}, {threads} threads"
    results = []
    for case, model in models.items():
        params = sum(p.numel() for p in model.parameters()) / 1e6
        results += [
            Result(SECTION, f"{case} {size}", "latency (median)", latency[case], "ms"),
            Result(SECTION, case, "parameters", params, "M"),
            Result(SECTION, case, "FLOPs per forward", measured[case][1], "GFLOP"),
            Result(SECTION, case, "peak RSS above imports", measured[case][0], "MB"),
        ]
        if case != REFERENCE:
            speedup = latency[REFERENCE] / latency[case]
            target = ">= 4" if case == "fcn8s-resnet50" else ""
            met = speedup >= 4 if target else None
            results.append(
                Result(SECTION, case, f"speed-up over {REFERENCE}", speedup, "x", target, met)
            )
    return results


if __name__ == "__main__":
    torch.set_num_threads(int(sys.argv[2]))
    print(*peak_rss_and_flops(sys.argv[1]))
