"""Deployment benchmarks: eager PyTorch against ONNX Runtime fp32 on the same checkpoint.

Speed: FCN-8s on mobilenet_v3_large, resnet18 and resnet50 (untrained, ``pretrained=False``:
weights do not change the cost) is saved as a checkpoint, rebuilt from it, exported with
:mod:`segnet.runtime.onnx_writer` (trace + metadata; the export's own verification is skipped
for time, and replaced by a check that ONNX Runtime's logits match eager's within
``segnet.runtime.onnx_writer.ATOL`` on every warm-up run below). Contenders:
:class:`EagerBackend` (``PixelFCN`` under ``torch.inference_mode``) and :class:`OnnxBackend`,
both uint8 (N, 3, H, W) in, logits out, with 2 threads each (``torch.set_num_threads(2)``, ORT
``intra_op_num_threads=2``). Cases: batch 1 at 320x480 (H x W) and on a 500x375 photo (W x H,
VOC-like), batch 8 at 320x480; case names give width x height. The contenders alternate
repetition by repetition (the order flips each time), so load from other processes on a shared
machine falls on both alike; latencies are medians and the speed-up is the median of the
per-repetition ratios. At batch 1, 320x480 both also run with 1 thread each, as a control: on a
loaded machine torch's OpenMP threads lose time waiting for each other at every parallel region,
which a single thread cannot, and its CPU-time ratio is the compute alone. int8 is not measured:
export does not offer it (segnet/benchmarks/quantize.py measures it; the figures are in
docs/benchmarks.md). Target: ONNX Runtime >= 1.5x eager throughput at batch 1 for resnet18 and
mobilenet_v3_large. The figures of a run, with its date, are in docs/benchmarks.md.

Memory: peak RSS (``VmHWM``) of three fresh processes that each load one model and segment one
500x375 JPEG: ``Segmenter.from_checkpoint`` (eager), ``segnet/benchmarks/onnx_only.py``
(onnxruntime + numpy + Pillow, no torch, no segnet) and ``Segmenter.from_onnx`` (ONNX Runtime
for the network, torch for the plumbing). Targets (both ONNX processes serve the .onnx, so both
are judged): <= 50% of the eager process's peak, and no Lightning/Hydra (nor torch, for the
onnxruntime-only one) imported.

End to end: the ``infer`` task (in process, configs/infer.yaml composed with Hydra, 2 decoding
workers, 2 writer threads, model loading included) with ``ckpt_path=model.onnx`` on a folder of
500x375 JPEGs, against :class:`OnnxBackend` alone on the same images already decoded, in the
same batches; alternated, median of the ratios. Target: end to end >= 0.85x bare.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import torch
from torchvision.transforms.v2.functional import pil_to_tensor

from segnet.benchmarks import Result
from segnet.benchmarks.inference import infer_config, save_checkpoint, write_photo
from segnet.data.images import read_image
from segnet.runtime.checkpoint import load_model
from segnet.runtime.eager import EagerBackend, PixelFCN
from segnet.runtime.onnx_writer import (
    ATOL,
    OPSET,
    metadata,
    trace_to_onnx,
    verification_images,
    with_metadata,
)
from segnet.runtime.onnxrt import OnnxBackend
from segnet.tasks.infer import infer

SECTION = "deploy"
THREADS = 2
BACKBONES = {True: ("resnet18",), False: ("mobilenet_v3_large", "resnet18", "resnet50")}
TARGET_BACKBONES = ("mobilenet_v3_large", "resnet18")  # the issue's >= 1.5x at batch 1
# (N, H, W) of the speed cases
SHAPES = {True: ((1, 32, 32), (2, 32, 32)), False: ((1, 320, 480), (1, 375, 500), (8, 320, 480))}
# (least paired repetitions, most, seconds after which no more are started) per speed case
REPEATS = {True: (1, 1, 0.0), False: (3, 9, 10.0)}
CONTROL = {True: (), False: ((1, 320, 480),)}  # (N, H, W) also timed with 1 thread each
# (JPEGs, batch size, (width, height), least repetitions) of the end-to-end case
END_TO_END = {True: (2, 2, (64, 48), 1), False: (16, 4, (500, 375), 3)}
PHOTO = (500, 375)  # the image the memory processes segment (quick: onnxruntime-only process)
RSS_BACKBONE = "resnet18"
ONNX_ONLY = Path(__file__).with_name("onnx_only.py")

_SEGMENTER = """
import json, sys
import torch
from segnet import Segmenter
from segnet.benchmarks import peak_rss_kb
kind, model, image, threads = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
torch.set_num_threads(threads)
if kind == "eager":
    seg = Segmenter.from_checkpoint(model, device="cpu")
else:
    seg = Segmenter.from_onnx(model, threads=threads)
labels = seg.predict(image)
loaded = {name.partition(".")[0] for name in sys.modules}
forbidden = sorted(loaded.intersection(("lightning", "pytorch_lightning", "hydra", "omegaconf")))
print(json.dumps({"peak_rss_kb": peak_rss_kb(), "shape": list(labels.shape),
                  "modules": len(sys.modules), "forbidden": forbidden}))
"""


def export_file(ckpt: Path, out: Path) -> tuple[torch.nn.Module, list[str], float]:
    """Rebuild ``ckpt``'s FCN and write it to ``out`` as a segnet .onnx (unverified).

    Returns ``(FCN in eval mode, class names, export seconds)``."""
    model, names, palette = load_model(ckpt)
    started = time.perf_counter()
    proto = trace_to_onnx(PixelFCN(model).eval())
    settings = {"exporter": "torch.onnx TorchScript-based (dynamo=False)", "opset": OPSET}
    data = with_metadata(proto, metadata(model, names, palette, ckpt, settings)).SerializeToString()
    seconds = time.perf_counter() - started
    out.write_bytes(data)
    return model, names, seconds


def paired_times(contenders: dict, images: torch.Tensor, repeats: tuple) -> tuple[dict, dict]:
    """Wall and CPU seconds (``{name: [seconds, ...]}`` each) of each contender on ``images``,
    alternated (order flipped each repetition) after one warm-up call each, whose logits must
    agree within ``ATOL``."""
    least, most, budget = repeats
    warm = {name: run(images) for name, run in contenders.items()}
    first, *others = warm.values()
    for name, logits in zip(list(warm)[1:], others, strict=True):
        diff = float((logits - first).abs().max())
        if not diff <= ATOL:
            raise RuntimeError(
                f"{name} logits differ from eager by {diff:.3g} > {ATOL:g} at "
                f"{tuple(images.shape)}: the exported model is wrong"
            )
    times: dict[str, list] = {name: [] for name in contenders}
    cpu: dict[str, list] = {name: [] for name in contenders}
    order = list(contenders)
    started = time.perf_counter()
    for rep in range(most):
        if rep >= least and time.perf_counter() - started > budget:
            break
        for name in order if rep % 2 == 0 else order[::-1]:
            tic, cpu_tic = time.perf_counter(), time.process_time()
            contenders[name](images)
            times[name].append(time.perf_counter() - tic)
            cpu[name].append(time.process_time() - cpu_tic)
    return times, cpu


def _rows(case: str, times: dict[str, list], batch: int, target: str) -> list[Result]:
    """Median latency (batch 1) or throughput of each contender, and the median paired ratio."""
    eager, ort = times.values()
    speedup = statistics.median(e / o for e, o in zip(eager, ort, strict=True))
    reps = f"median of {len(eager)}"
    rows = []
    for name, seconds in times.items():
        if batch == 1:
            value, metric = 1e3 * statistics.median(seconds), (f"{name} latency ({reps})", "ms")
        else:
            value, metric = batch / statistics.median(seconds), (f"{name} ({reps})", "img/s")
        rows.append(Result(SECTION, case, metric[0], value, metric[1]))
    met = speedup >= 1.5 if target else None
    return rows + [
        Result(SECTION, case, "onnxruntime / eager throughput", speedup, "x", target, met)
    ]


def _speed(tmp: Path, backbone: str, quick: bool) -> tuple[list[Result], OnnxBackend]:
    """Speed cases of one backbone; also returns its 2-thread OnnxBackend."""
    ckpt, onnx_path = tmp / f"{backbone}.ckpt", tmp / f"{backbone}.onnx"
    save_checkpoint(ckpt, backbone)
    model, names, export_s = export_file(ckpt, onnx_path)
    eager, ort = EagerBackend(model, names), OnnxBackend(onnx_path, threads=THREADS)
    contenders = {"eager": eager, "onnxruntime fp32": ort}
    results = [Result(SECTION, f"fcn8s-{backbone}", "export (trace + metadata)", export_s, "s")]
    for n, h, w in SHAPES[quick]:
        times, _ = paired_times(contenders, verification_images(n, h, w), REPEATS[quick])
        target = ">= 1.5" if n == 1 and backbone in TARGET_BACKBONES else ""
        results += _rows(f"fcn8s-{backbone} batch {n}, {w}x{h}", times, n, target)
    for n, h, w in CONTROL[quick]:
        # Control: torch's OpenMP threads stall at every barrier when another process holds a
        # core; with one thread each, neither runtime can lose time that way.
        single = {"eager": eager, "onnxruntime fp32": OnnxBackend(onnx_path, threads=1)}
        torch.set_num_threads(1)
        try:
            times, cpu = paired_times(single, verification_images(n, h, w), REPEATS[quick])
        finally:
            torch.set_num_threads(THREADS)
        case = f"fcn8s-{backbone} batch {n}, {w}x{h}, 1 thread each"
        # One thread's CPU time is its compute, whatever else holds the cores.
        ratio = statistics.median(e / o for e, o in zip(*cpu.values(), strict=True))
        results += _rows(case, times, n, "")
        results.append(Result(SECTION, case, "eager / onnxruntime CPU time", ratio, "x"))
    return results, ort


def fresh_process(args: list[str]) -> dict:
    """The JSON report of a fresh Python process (see onnx_only.py and ``_SEGMENTER``)."""
    done = subprocess.run(
        [sys.executable, "-P", *args], capture_output=True, text=True, check=False
    )
    if done.returncode:
        raise RuntimeError(f"memory probe failed: {done.stderr.strip().splitlines()[-1:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _memory(tmp: Path, ckpt: Path, onnx_path: Path, quick: bool) -> list[Result]:
    image = tmp / "rss.jpg"
    write_photo(image, *PHOTO, seed=0)
    case = f"fcn8s-{RSS_BACKBONE} fresh process, one {PHOTO[0]}x{PHOTO[1]} image"
    row = partial(Result, SECTION, case)
    bare = fresh_process([str(ONNX_ONLY), str(onnx_path), str(image), str(THREADS)])
    absent = "no torch/Lightning/Hydra/segnet"
    results = [
        row("onnxruntime only: peak RSS", bare["peak_rss_kb"] / 1024, "MB"),
        row("onnxruntime only: modules loaded", bare["modules"], "", absent, not bare["forbidden"]),
    ]
    if quick:  # the two torch processes cost ~10 s of imports each
        return results
    probe = ["-c", _SEGMENTER]
    eager = fresh_process([*probe, "eager", str(ckpt), str(image), str(THREADS)])
    served = fresh_process([*probe, "onnx", str(onnx_path), str(image), str(THREADS)])
    ratio = bare["peak_rss_kb"] / eager["peak_rss_kb"]
    served_ratio = served["peak_rss_kb"] / eager["peak_rss_kb"]
    return results + [
        row("Segmenter.from_onnx: peak RSS", served["peak_rss_kb"] / 1024, "MB"),
        row(
            "Segmenter.from_onnx: modules loaded",
            served["modules"],
            "",
            "no Lightning/Hydra",
            not served["forbidden"],
        ),
        row("Segmenter.from_checkpoint (eager): peak RSS", eager["peak_rss_kb"] / 1024, "MB"),
        row("onnxruntime only / eager peak RSS", ratio, "x", "<= 0.5", ratio <= 0.5),
        row(
            "Segmenter.from_onnx / eager peak RSS", served_ratio, "x", "<= 0.5", served_ratio <= 0.5
        ),
    ]


def _end_to_end(tmp: Path, backend: OnnxBackend, quick: bool) -> list[Result]:
    count, batch_size, photo, least = END_TO_END[quick]
    folder = tmp / "photos"
    folder.mkdir()
    for i in range(count):
        write_photo(folder / f"{i:03d}.jpg", *photo, seed=i)
    paths = sorted(folder.glob("*.jpg"))
    images = [pil_to_tensor(read_image(p)) for p in paths]
    batches = [torch.stack(images[i : i + batch_size]) for i in range(0, count, batch_size)]
    backend(batches[0])  # warm-up: ORT plans its memory at the first run of a shape
    overrides = [f"ckpt_path={backend.path}", f"input={folder}", f"output_dir={tmp / 'out'}"]
    cfg = infer_config(
        overrides + ["overwrite=true", f"batch_size={batch_size}", f"threads={THREADS}"]
    )

    def bare() -> float:
        started = time.perf_counter()
        for images_batch in batches:
            backend(images_batch).argmax(1)
        return count / (time.perf_counter() - started)

    def end_to_end() -> float:
        started = time.perf_counter()
        summary = infer(cfg)
        seconds = time.perf_counter() - started
        if summary.skipped or summary.written != count:
            raise RuntimeError(f"benchmark inference skipped images: {summary.skipped}")
        return count / seconds

    def load() -> float:  # what infer does first (and counts in its time): open the model
        started = time.perf_counter()
        OnnxBackend(backend.path, threads=THREADS)
        return time.perf_counter() - started

    rates: dict[str, list[float]] = {"bare": [], "e2e": [], "load": []}
    for rep in range(least):
        for name, measure in (("bare", bare), ("e2e", end_to_end))[:: 1 if rep % 2 == 0 else -1]:
            rates[name].append(measure())
        rates["load"].append(load())
    ratio = statistics.median(e / b for e, b in zip(rates["e2e"], rates["bare"], strict=True))
    case = f"fcn8s-{RSS_BACKBONE} onnxruntime, {count} JPEGs {photo[0]}x{photo[1]}"
    row, reps = partial(Result, SECTION, f"{case}, batch {batch_size}"), f"median of {least}"
    return [
        row(f"OnnxBackend on decoded images ({reps})", statistics.median(rates["bare"]), "img/s"),
        row(f"infer end to end ({reps})", statistics.median(rates["e2e"]), "img/s"),
        row("end to end / bare", ratio, "x", ">= 0.85", ratio >= 0.85),
        row(f"of which model loading ({reps})", statistics.median(rates["load"]), "s"),
    ]


def run(quick: bool) -> list[Result]:
    threads = torch.get_num_threads()
    torch.set_num_threads(THREADS)
    loads = [os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0]
    try:
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            results, backends = [], {}
            for backbone in BACKBONES[quick]:
                rows, backends[backbone] = _speed(tmp, backbone, quick)
                results += rows
            # the speed cases' files of RSS_BACKBONE (one of BACKBONES in both modes)
            ckpt, onnx_path = tmp / f"{RSS_BACKBONE}.ckpt", tmp / f"{RSS_BACKBONE}.onnx"
            results += _memory(tmp, ckpt, onnx_path, quick)
            results += _end_to_end(tmp, backends[RSS_BACKBONE], quick)
    finally:
        torch.set_num_threads(threads)
    loads.append(os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0)
    for when, load in zip(("start", "end"), loads, strict=True):
        if load > 0:  # other work on the machine: the context of every figure above
            results.append(
                Result(SECTION, "machine", f"load average (1 min) at the {when}", load, "tasks")
            )
    return results
