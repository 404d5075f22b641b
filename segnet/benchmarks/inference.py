"""Inference benchmarks: end-to-end images/s against bare forward passes, and peak memory.

Throughput: a folder of generated 500x375 JPEGs goes through the real ``infer`` task (decode in
DataLoader workers, forward, PNG + overlay JPEG encoding in writer threads, atomic writes) and
is compared with the bare model's forward throughput on the same images already decoded and
normalised in memory, in the same batches. Target: end to end >= 80% of bare forward, i.e.
I/O hidden behind compute.

Memory: peak resident set size of a fresh Python process that segments ONE image with the
``infer`` task (no worker processes, one writer thread, so all memory is in that process): a
6000x4000 photo (sliding windows, as ``max_pixels`` sends it there) against a 500x375 one
(whole image). The child reports its own high-water mark, ``VmHWM`` of /proc/self/status on
Linux. Not ``getrusage(RUSAGE_SELF).ru_maxrss``: Linux carries the forking parent's RSS through
exec into the child's ru_maxrss, so a child of this (large) benchmark process would report the
parent's size; ``resource.getrusage`` is the fallback where /proc is missing. Both processes
carry the same fixed cost (interpreter, torch, model weights); it is reported too, from a
process that only loads the model. Target: the large image's peak <= 2x the small one's.

Sliding windows: seconds per megapixel of ``Predictor`` on one uint8 image (class map out, as
``infer`` makes it), predicted whole and through overlapping windows, timed alternately
(median of the repeats). The target is judged on this process's CPU time, which other load
on a shared machine barely moves (wall times swung 2x between passes here); wall times are
reported too. Overlapping windows compute every pixel about ``1/(1-overlap)^2`` times, so
that much is the price of windows; the reported coverage is the exact figure (window area x
windows / image area). Target: windowed cost per pixel <= 1.3 x whole-image cost x
``1/(1-overlap)^2``.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from hydra import compose, initialize_config_dir
from PIL import Image

import segnet
from segnet.benchmarks import Result
from segnet.data.transforms import eval_transforms
from segnet.models import FCN
from segnet.predict.predictor import Predictor, class_map
from segnet.predict.sliding_window import window_starts
from segnet.runtime.checkpoint import load_model
from segnet.runtime.eager import PixelFCN
from segnet.tasks.infer import infer
from segnet.training.system import SegmentationSystem

CONFIGS = Path(segnet.__file__).resolve().parents[1] / "configs"
SECTION = "inference"
BACKBONES = {True: ("resnet18",), False: ("resnet18", "resnet50")}  # the first: memory, windows
PHOTO = (500, 375)  # (width, height) of the throughput and small-memory images, VOC-like
# (images, batch, large image (width, height)) for the throughput and memory cases
SIZES = {True: (4, 2, (1200, 900)), False: (100, 4, (6000, 4000))}
# (image side, window side, repeats) for the sliding-window cost
WINDOW_CASES = {True: (768, 256, 2), False: (2048, 512, 3)}
OVERLAP = 1 / 3  # infer's default


def write_photo(path: Path, width: int, height: int, seed: int) -> None:
    """A photo-like JPEG: smooth colour fields plus grain (compresses and decodes like one)."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (max(2, height // 64), max(2, width // 64), 3), dtype=np.uint8)
    smooth = np.asarray(Image.fromarray(coarse).resize((width, height), Image.BICUBIC), np.int16)
    grain = rng.integers(-12, 13, smooth.shape, dtype=np.int16)
    Image.fromarray(np.clip(smooth + grain, 0, 255).astype(np.uint8)).save(path, quality=90)


def save_checkpoint(path: Path, backbone: str) -> None:
    """A segnet checkpoint (hyper-parameters + state dict) of an untrained FCN-8s."""
    torch.manual_seed(0)
    system = SegmentationSystem(backbone=backbone, variant="fcn8s")
    torch.save({"hyper_parameters": dict(system.hparams), "state_dict": system.state_dict()}, path)


def infer_config(overrides: list[str]):
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        return compose("infer", overrides=overrides)


def bare_forward(ckpt: Path, images: list[Path], batch_size: int) -> float:
    """Images/s of the model alone on pre-decoded, normalised images in the same batches."""
    model = load_model(ckpt)[0]
    transform = eval_transforms()
    tensors = []
    for path in images:
        pixels = torch.from_numpy(np.array(Image.open(path).convert("RGB"))).permute(2, 0, 1)
        tensors.append(transform(pixels, torch.zeros(pixels.shape[1:], dtype=torch.uint8))[0])
    batches = [torch.stack(tensors[i : i + batch_size]) for i in range(0, len(tensors), batch_size)]
    with torch.inference_mode():
        model(batches[0])  # warm-up: allocator and kernel selection
        start = time.perf_counter()
        for batch in batches:
            model(batch).argmax(1)
        return len(tensors) / (time.perf_counter() - start)


def end_to_end(ckpt: Path, folder: Path, out: Path, batch_size: int) -> float:
    """Images/s of the whole infer task over ``folder`` (model loading included)."""
    cfg = infer_config(
        [f"ckpt_path={ckpt}", f"input={folder}", f"output_dir={out}", "overwrite=true"]
        + [f"batch_size={batch_size}"]
    )
    start = time.perf_counter()
    summary = infer(cfg)
    seconds = time.perf_counter() - start
    if summary.skipped or summary.written != len(list(folder.glob("*.jpg"))):
        raise RuntimeError(f"benchmark inference skipped images: {summary.skipped}")
    return summary.written / seconds


_PEAK_RSS = """
import resource, sys
from pathlib import Path
from hydra import compose, initialize_config_dir
from segnet.runtime.checkpoint import load_model
from segnet.tasks.infer import infer
configs, ckpt, image, out = sys.argv[1:5]
if image == "-":
    load_model(ckpt)
else:
    with initialize_config_dir(config_dir=configs, version_base="1.3"):
        cfg = compose("infer", overrides=[f"ckpt_path={ckpt}", f"input={image}",
            f"output_dir={out}", "num_workers=0", "writer_threads=1", "overwrite=true"])
    assert infer(cfg).written == 1
status = Path("/proc/self/status")
if status.is_file():  # kilobytes, this process's own peak
    lines = status.read_text().splitlines()
    print(next(line.split()[1] for line in lines if line.startswith("VmHWM")))
else:
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def peak_rss_mb(ckpt: Path, image: Path | None, out: Path) -> float:
    """Peak RSS (MB) of a fresh process segmenting ``image`` (None: only loading the model)."""
    args = [str(CONFIGS), str(ckpt), str(image) if image else "-", str(out)]
    done = subprocess.run(
        [sys.executable, "-c", _PEAK_RSS, *args], capture_output=True, text=True, check=True
    )
    return int(done.stdout.split()[-1]) / 1024  # kilobytes -> MB


def window_cost(
    model: torch.nn.Module, side: int, window: int, overlap: float, repeats: int
) -> dict[str, float]:
    """Cost of ``model`` on one ``side`` x ``side`` uint8 image, whole and through windows:
    ``{"whole", "windows"}`` in CPU seconds per megapixel, ``{"whole wall", "windows wall"}``
    in wall seconds per megapixel (medians), and ``"coverage"``: pixels the windows compute /
    pixels of the image."""
    torch.manual_seed(0)
    image = torch.randint(0, 256, (1, 3, side, side), dtype=torch.uint8)
    predictors = {
        "whole": Predictor(PixelFCN(model)),
        "windows": Predictor(PixelFCN(model), window=window, overlap=overlap, max_pixels=0),
    }
    times: dict[str, list[float]] = {}
    for repeat in range(repeats + 1):  # the first pass is warm-up
        for name, predictor in predictors.items():
            cpu, wall = time.process_time(), time.perf_counter()
            for _, band in predictor.probability_bands(image):
                class_map(band)
            if repeat:
                times.setdefault(name, []).append(time.process_time() - cpu)
                times.setdefault(f"{name} wall", []).append(time.perf_counter() - wall)
    megapixels = side * side / 1e6
    cost = {name: statistics.median(t) / megapixels for name, t in times.items()}
    windows = len(window_starts(side, window, overlap)) ** 2
    cost["coverage"] = windows * window * window / (side * side)
    return cost


def _throughput(tmp: Path, quick: bool) -> list[Result]:
    count, batch_size, _ = SIZES[quick]
    folder = tmp / "images"
    folder.mkdir()
    for i in range(count):
        write_photo(folder / f"{i:03d}.jpg", *PHOTO, seed=i)
    images = sorted(folder.glob("*.jpg"))
    results = []
    for backbone in BACKBONES[quick]:
        ckpt = tmp / f"{backbone}.ckpt"
        save_checkpoint(ckpt, backbone)
        case = f"fcn8s-{backbone} {count}x{PHOTO[0]}x{PHOTO[1]}"
        bare = bare_forward(ckpt, images, batch_size)
        e2e = end_to_end(ckpt, folder, tmp / f"out-{backbone}", batch_size)
        ratio = e2e / bare
        results += [
            Result(SECTION, case, "bare forward", bare, "img/s"),
            Result(SECTION, case, "end to end (decode+forward+write)", e2e, "img/s"),
            Result(SECTION, case, "end to end / forward", ratio, "ratio", ">= 0.8", ratio >= 0.8),
        ]
    return results


def _memory(tmp: Path, quick: bool) -> list[Result]:
    large = SIZES[quick][2]
    ckpt = tmp / "rss.ckpt"
    save_checkpoint(ckpt, BACKBONES[quick][0])
    small_image, big = tmp / "small.jpg", tmp / "large.jpg"
    write_photo(small_image, *PHOTO, seed=0)
    write_photo(big, *large, seed=1)
    base = peak_rss_mb(ckpt, None, tmp / "rss")
    small = peak_rss_mb(ckpt, small_image, tmp / "rss")
    huge = peak_rss_mb(ckpt, big, tmp / "rss")
    case = f"fcn8s-{BACKBONES[quick][0]} peak RSS"
    return [
        Result(SECTION, case, "model loaded, no image", base, "MB"),
        Result(SECTION, case, f"{PHOTO[0]}x{PHOTO[1]} whole image", small, "MB"),
        Result(SECTION, case, f"{large[0]}x{large[1]} sliding windows", huge, "MB"),
        Result(SECTION, case, "large / small", huge / small, "ratio", "<= 2", huge / small <= 2),
    ]


def _windows(quick: bool) -> list[Result]:
    side, window, repeats = WINDOW_CASES[quick]
    torch.manual_seed(0)
    model = FCN(num_classes=21, backbone=BACKBONES[quick][0], variant="fcn8s").eval()
    cost = window_cost(model, side, window, OVERLAP, repeats)
    bound = 1.3 / (1 - OVERLAP) ** 2
    ratio = cost["windows"] / cost["whole"]
    case = f"fcn8s-{BACKBONES[quick][0]} {side}x{side}, window {window}, overlap {OVERLAP:.3g}"
    return [
        Result(SECTION, case, "whole image, CPU time", cost["whole"], "s/MP"),
        Result(SECTION, case, "sliding windows, CPU time", cost["windows"], "s/MP"),
        Result(SECTION, case, "whole image, wall time", cost["whole wall"], "s/MP"),
        Result(SECTION, case, "sliding windows, wall time", cost["windows wall"], "s/MP"),
        Result(SECTION, case, "window pixels / image pixels", cost["coverage"], "x"),
        Result(
            SECTION,
            case,
            "windowed / whole CPU time",
            ratio,
            "x",
            f"<= {bound:.3g}",
            ratio <= bound,
        ),
    ]


def run(quick: bool) -> list[Result]:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "rss").mkdir()
        return _throughput(tmp, quick) + _memory(tmp, quick) + _windows(quick)
