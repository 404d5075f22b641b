"""Data pipeline throughput against the training step it has to feed.

Figures (all on VOC-sized 500x375 JPEGs with palette PNG masks, written to a temp dir in
VOC's layout, so the datamodule reads them exactly as it reads VOC):

* images/s of one worker (one thread, like a DataLoader worker): decode only, and decode +
  the training augmentation at a 320x480 crop;
* batches/s and images/s that ``VOCDataModule`` delivers with 2 workers, batch 8;
* images/s an FCN-8s/resnet18 training step (forward + backward + SGD, batch 8, 320x480)
  consumes on the same machine, and the ratio loader / step (target >= 3: never input-bound);
* masks/s of ``data=folder``'s mask check (:mod:`segnet.data.mask_scan`) over the same
  500x375 pairs: one thread, the thread pool, and a second scan answered by its cache.

The loader and the step are timed separately, each with the machine to itself; on a CPU-only
machine they share the cores during real training, so read the ratio as an upper bound there.

The section ends with :mod:`segnet.benchmarks.dataset_scale`'s figures (listing 100,000
pairs, importing 100,000 COCO polygons) and :mod:`segnet.benchmarks.import_scale`'s (importing
2,000-image CVAT and Roboflow exports).
"""

from __future__ import annotations

import math
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from segnet.benchmarks import Result, dataset_scale, import_scale
from segnet.data.classes import IGNORE_INDEX, voc_palette
from segnet.data.datamodule import VOCDataModule
from segnet.data.mask_scan import FactsCache, scan_pairs
from segnet.data.transforms import train_transforms
from segnet.data.voc import VOCSegmentationDataset
from segnet.models import FCN

SECTION = "data"
WIDTH, HEIGHT = 500, 375
CROP = (320, 480)
BATCH = 8
STEP_BACKBONE = "resnet18"  # of the FCN-8s whose training step the loader must keep up with
TARGET_RATIO = 3.0


def write_voc_sized_dataset(root: Path, count: int, seed: int = 0) -> None:
    """``count`` 500x375 JPEG/PNG pairs under root/VOCdevkit/VOC2012, all in split "train".

    Images are smooth colour fields with grain (JPEG sizes near VOC's, about 60-100 kB);
    masks hold a few labelled rectangles with a 255 border band, like VOC's.
    """
    voc = root / "VOCdevkit" / "VOC2012"
    for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (voc / sub).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    palette = voc_palette()
    names = []
    for i in range(count):
        coarse = Image.fromarray(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8))
        smooth = np.asarray(coarse.resize((WIDTH, HEIGHT), Image.BICUBIC), dtype=np.float32)
        grain = rng.normal(0.0, 12.0, (HEIGHT, WIDTH, 3))
        image = np.clip(smooth + grain, 0, 255).astype(np.uint8)
        mask = Image.new("P", (WIDTH, HEIGHT), 0)
        draw = ImageDraw.Draw(mask)
        for _ in range(int(rng.integers(1, 4))):
            x0, y0 = int(rng.integers(0, WIDTH - 100)), int(rng.integers(0, HEIGHT - 100))
            x1, y1 = x0 + int(rng.integers(60, 100)), y0 + int(rng.integers(60, 100))
            draw.rectangle((x0, y0, x1, y1), fill=IGNORE_INDEX)
            draw.rectangle((x0 + 4, y0 + 4, x1 - 4, y1 - 4), fill=int(rng.integers(1, 21)))
        mask.putpalette(palette)
        name = f"2012_{i:06d}"
        Image.fromarray(image).save(voc / "JPEGImages" / f"{name}.jpg", quality=90)
        mask.save(voc / "SegmentationClass" / f"{name}.png")
        names.append(name)
    split = voc / "ImageSets" / "Segmentation"
    for set_name in ("train", "val"):
        (split / f"{set_name}.txt").write_text("\n".join(names) + "\n")


def _per_worker_rate(dataset: VOCSegmentationDataset, passes: int) -> float:
    """Items/s of ``dataset[i]`` on one thread, after one warm-up item."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # what a DataLoader worker gets
    try:
        dataset[0]
        start = time.perf_counter()
        for _ in range(passes):
            for i in range(len(dataset)):
                dataset[i]
        return passes * len(dataset) / (time.perf_counter() - start)
    finally:
        torch.set_num_threads(threads)


def _loader_rate(root: Path, batches: int) -> float:
    """Batches/s from the datamodule's train loader (2 workers), after the first batch."""
    dm = VOCDataModule(str(root), crop_size=list(CROP), batch_size=BATCH, num_workers=2)
    dm.setup("fit")
    loader = dm.train_dataloader()
    done = 0
    while True:  # loop over epochs: persistent workers keep running between them
        iterator = iter(loader)
        if done == 0:
            next(iterator)  # worker start-up is not throughput
            start = time.perf_counter()
        for _ in iterator:
            done += 1
            if done == batches:
                return batches / (time.perf_counter() - start)


def _train_step_rate(steps: int, device: torch.device) -> float:
    """Images/s of an FCN-8s forward + backward + SGD step, batch ``BATCH``, ``CROP`` pixels."""
    torch.manual_seed(0)
    model = FCN(num_classes=21, backbone=STEP_BACKBONE, variant="fcn8s").to(device).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9, weight_decay=5e-4)
    images = torch.randn(BATCH, 3, *CROP, device=device)
    masks = torch.randint(0, 21, (BATCH, *CROP), device=device)

    def step(n: int = BATCH) -> None:
        optimizer.zero_grad(set_to_none=True)
        logits = model(images[:n])
        loss = torch.nn.functional.cross_entropy(logits, masks[:n], ignore_index=IGNORE_INDEX)
        loss.backward()
        optimizer.step()

    # Warm-up (allocator, cuDNN autotuning); one image is enough on CPU and keeps --quick short.
    step(BATCH if device.type == "cuda" else 1)
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return steps * BATCH / (time.perf_counter() - start)


def _mask_scan_rates(root: Path, passes: int) -> tuple[float, float, float]:
    """Masks/s of :func:`scan_pairs` over the VOC tree's pairs: one thread, the pool (files
    just written: in the OS's cache), and again from a filled cache (best of ``passes``)."""
    voc = root / "VOCdevkit" / "VOC2012"
    pairs = [
        (str(image), str(voc / "SegmentationClass" / f"{image.stem}.png"))
        for image in sorted((voc / "JPEGImages").glob("*.jpg"))
    ]
    rates = []
    for threads in (1, None):
        best = math.inf
        for _ in range(passes):
            start = time.perf_counter()
            scan_pairs(pairs, None, threads)
            best = min(best, time.perf_counter() - start)
        rates.append(len(pairs) / best)
    cache = FactsCache(voc, root / "cache")
    scan_pairs(pairs, cache)
    start = time.perf_counter()
    scan_pairs(pairs, cache)
    rates.append(len(pairs) / (time.perf_counter() - start))
    return rates[0], rates[1], rates[2]


def run(quick: bool) -> list[Result]:
    count, passes, batches, steps = (16, 1, 6, 1) if quick else (64, 2, 40, 5)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    results = []
    with tempfile.TemporaryDirectory(prefix="segnet-bench-data-") as tmp:
        root = Path(tmp)
        write_voc_sized_dataset(root, count)
        decode = VOCSegmentationDataset(str(root), "train")
        augment = VOCSegmentationDataset(str(root), "train", transforms=train_transforms(CROP))
        decode_rate = _per_worker_rate(decode, passes)
        per_worker = _per_worker_rate(augment, passes)
        for case, rate in (("decode", decode_rate), ("decode + train augment 320x480", per_worker)):
            results.append(Result(SECTION, f"{case}, 500x375 JPEG", "per worker", rate, "img/s"))
        loader = _loader_rate(root, batches)
        scan_rates = _mask_scan_rates(root, passes)
    step = _train_step_rate(steps, device)
    ratio = loader * BATCH / step
    target = f">= {TARGET_RATIO:g}x train step"
    case = f"VOCDataModule, 2 workers, batch {BATCH}"
    results += [
        Result(SECTION, case, "throughput", loader, "batch/s"),
        Result(SECTION, case, "throughput", loader * BATCH, "img/s", target, ratio >= TARGET_RATIO),
        Result(
            SECTION,
            f"FCN-8s/{STEP_BACKBONE} train step, batch {BATCH}, {CROP[0]}x{CROP[1]} "
            f"({device.type})",
            "throughput",
            step,
            "img/s",
        ),
        Result(SECTION, "loader / train step", "ratio", ratio, "x", target, ratio >= TARGET_RATIO),
        # Ideal scaling of the one-worker rate: how many workers a 3x margin needs here.
        Result(
            SECTION,
            f"workers for {TARGET_RATIO:g}x train step",
            "num_workers",
            math.ceil(TARGET_RATIO * step / per_worker),
            "workers",
        ),
    ]
    for case, rate in zip(
        ("1 thread", "thread pool", "second run, cached"), scan_rates, strict=True
    ):
        results.append(
            Result(
                SECTION,
                f"data=folder mask check, 500x375 PNG, {case}",
                "throughput",
                rate,
                "masks/s",
            )
        )
    results += dataset_scale.run(quick)
    results += import_scale.run(quick)
    return results
