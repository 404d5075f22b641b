"""Does ``init_from`` help? Fine-tuning against training from scratch, on generated data.

``python -m segnet.benchmarks.fine_tuning [--out DIR]`` prints a markdown table.

Two VOC-layout datasets are made from the demo generator (:mod:`segnet.data.demo`) by
remapping mask values: dataset A (400 training images, demo seed 0) keeps background and ten
VOC classes; dataset B (96 training images, demo seed 1) keeps background, four of A's classes
in another index order and four classes A never labelled. Objects of any other class are 255
(ignored) in both. A model is trained on A; then the same run on B (same seed, same steps) is
made twice: with ``init_from`` A's last checkpoint, and from scratch. The figures are B's val
mIoU after every epoch of both runs, and the IoU averaged over the shared classes and over the
new ones at the end. Every run goes through :func:`segnet.tasks.train.train`, as
``scripts/train.py`` runs it.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch
from hydra import compose, initialize_config_dir
from PIL import Image

from segnet.data.classes import IGNORE_INDEX, VOC_CLASSES, voc_palette
from segnet.data.demo import generate_demo_dataset
from segnet.tasks.train import train

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"
CLASSES_A = ["background", *VOC_CLASSES[1:11]]  # aeroplane .. cow
CLASSES_B = ["background", "dog", "cat", "horse", "bus", "sheep", "bird", "train", "car"]
EPOCHS_A, EPOCHS_B = 4, 8
SETTINGS = [
    "data=voc",
    "data.crop_size=[128,128]",
    "data.scale_range=[0.75,1.25]",
    "data.batch_size=16",
    "data.eval_batch_size=16",
    "data.num_workers=0",
    "model=fcn8s",
    "model.backbone=mobilenet_v3_large",
    "model.pretrained=false",
    "optim=adamw",
    "optim.lr=0.003",
    "optim.warmup_iters=10",
    "trainer=cpu",
    "trainer.enable_progress_bar=false",
    "logger=[csv]",
    "seed=0",
]


def remapped_dataset(demo_root: Path, out: Path, names: list[str]) -> Path:
    """``out`` as a VOC-layout copy of ``demo_root`` whose mask value i is ``names[i]``
    (VOC's name for each demo value); every other class becomes 255."""
    lookup = np.full(256, IGNORE_INDEX, dtype=np.uint8)
    for value, name in enumerate(names):
        lookup[VOC_CLASSES.index(name)] = value
    src, dst = demo_root / "VOCdevkit" / "VOC2012", out / "VOCdevkit" / "VOC2012"
    shutil.copytree(src / "JPEGImages", dst / "JPEGImages")
    shutil.copytree(src / "ImageSets", dst / "ImageSets")
    (dst / "SegmentationClass").mkdir(parents=True)
    for mask_file in sorted((src / "SegmentationClass").glob("*.png")):
        mask = Image.fromarray(lookup[np.asarray(Image.open(mask_file))])
        mask.putpalette(voc_palette())
        mask.save(dst / "SegmentationClass" / mask_file.name)
    return out


def fit(root: Path, names: list[str], run_dir: Path, epochs: int, *extra: str) -> Path:
    """Train on ``root`` into ``run_dir``; returns the run folder."""
    overrides = [
        *SETTINGS,
        f"data.root={root}",
        f"++data.class_names=[{','.join(names)}]",
        f"trainer.max_epochs={epochs}",
        f"output_dir={run_dir}",
        *extra,
    ]
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3", job_name="ft"):
        cfg = compose("train", overrides=overrides)
    with contextlib.redirect_stdout(io.StringIO()):
        train(cfg)
    return run_dir


def val_miou_per_epoch(run_dir: Path) -> list[float]:
    """The run's val mIoU after each epoch, from its csv/metrics.csv."""
    with open(run_dir / "csv" / "metrics.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r.get("val/miou")]
    return [float(r["val/miou"]) for r in rows]


def final_iou(run_dir: Path) -> dict[str, float | None]:
    """Per-class val IoU after the last epoch (None: a class absent from val)."""
    checkpoint = torch.load(
        run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True
    )
    return checkpoint["val_metrics"]["per_class_iou"]


def mean_of(iou: dict[str, float | None], names: list[str]) -> float:
    """Mean IoU over ``names`` (classes absent from val left out)."""
    values = [iou[n] for n in names if iou.get(n) is not None]
    return sum(values) / len(values) if values else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="keep the datasets and runs here (default: a temp dir)")
    args = parser.parse_args()
    work = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="segnet_ft_"))
    demo_a = generate_demo_dataset(work / "demo_a", num_train=400, num_val=100, seed=0)
    demo_b = generate_demo_dataset(work / "demo_b", num_train=96, num_val=100, seed=1)
    root_a = remapped_dataset(Path(demo_a), work / "a", CLASSES_A)
    root_b = remapped_dataset(Path(demo_b), work / "b", CLASSES_B)
    source = fit(root_a, CLASSES_A, work / "run_a", EPOCHS_A)
    init = f"init_from={source / 'checkpoints' / 'last.ckpt'}"
    tuned = fit(root_b, CLASSES_B, work / "run_b_init_from", EPOCHS_B, init)
    scratch = fit(root_b, CLASSES_B, work / "run_b_scratch", EPOCHS_B)
    shared = [n for n in CLASSES_B[1:] if n in CLASSES_A]
    new = [n for n in CLASSES_B[1:] if n not in CLASSES_A]
    print(f"dataset A: val mIoU per epoch {_fmt(val_miou_per_epoch(source))}")
    print(f"shared classes: {', '.join(shared)}; new classes: {', '.join(new)}\n")
    print("| epoch on B | init_from A | from scratch |\n|---:|---:|---:|")
    for epoch, (a, b) in enumerate(
        zip(val_miou_per_epoch(tuned), val_miou_per_epoch(scratch), strict=True)
    ):
        print(f"| {epoch} | {a:.3f} | {b:.3f} |")
    print("\n| final IoU on B | init_from A | from scratch |\n|---|---:|---:|")
    for label, names in (("background", ["background"]), ("shared", shared), ("new", new)):
        cells = [mean_of(final_iou(run), names) for run in (tuned, scratch)]
        print(f"| {label} ({len(names)}) | {cells[0]:.3f} | {cells[1]:.3f} |")
    print(f"\nruns in {work}")


def _fmt(values: list[float]) -> str:
    return " ".join(f"{v:.3f}" for v in values)


if __name__ == "__main__":
    main()
