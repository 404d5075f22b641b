"""Helpers shared by several test files (imported as ``from helpers import ...``: pytest puts
tests/ on sys.path, as it has no __init__.py): paths, Hydra compositions of the shipped configs,
infer run in process with its inputs, and the check that a model's predictions are varied."""

from __future__ import annotations

import csv
import os
import socket
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig
from PIL import Image, ImageOps
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from segnet.tasks.infer import Summary, infer

REPO = Path(__file__).resolve().parents[1]
CONFIG_DIR = REPO / "configs"
TRAIN_SCRIPT = REPO / "scripts" / "train.py"
# The callbacks of tests/train_probes.py, importable by the processes a script starts.
PROBES_ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "tests"), str(REPO)])}


def compose_config(name: str, overrides: Iterable[str] = ()) -> DictConfig:
    """The shipped config ``configs/<name>.yaml`` composed with Hydra ``overrides`` (each
    config sets its own ``hydra.job.name``: the ``job_name`` given here changes nothing)."""
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3", job_name="test"):
        return compose(name, overrides=list(overrides))


def compose_train(overrides: list[str]) -> DictConfig:
    """The training config (configs/train.yaml) with ``overrides``."""
    return compose_config("train", overrides)


def eval_args(checkpoint, root, out, *extra: str) -> list[str]:
    """Overrides of configs/eval.yaml for ``checkpoint`` on the VOC-layout val split at
    ``root``, into ``out``, then ``extra``. batch_size=1 unless a test says otherwise: batched
    convolutions may round differently, and the comparisons made with it are exact."""
    return [
        f"ckpt_path={checkpoint}",
        "data=voc",
        f"data.root={root}",
        "++data.num_workers=0",
        "split=val",
        "batch_size=1",
        f"output_dir={out}",
        *extra,
    ]


def tiny_training(root: str | Path, *extra: str, pictures: bool = False) -> list[str]:
    """Overrides for a seconds-long CPU run: resnet18, 64x64 crops, 2 batches of 4 per epoch,
    every step logged, then ``extra``. ``pictures=False`` leaves out the prediction pictures and
    the run report (together they double such a run's time); their own tests, and the trainings
    run as scripts, keep them."""
    pictures_off = [] if pictures else ["~callbacks.samples", "~callbacks.report"]
    return [
        f"data.root={root}",
        "data.crop_size=[64,64]",
        "data.batch_size=4",
        "data.eval_batch_size=4",
        "data.num_workers=0",
        "model.backbone=resnet18",
        "model.pretrained=false",
        "trainer=cpu",
        "trainer.max_epochs=2",
        "trainer.limit_train_batches=2",
        "trainer.log_every_n_steps=1",
        "trainer.num_sanity_val_steps=0",
        "trainer.enable_progress_bar=false",
        *pictures_off,
        *extra,
    ]


def quiet_trainer(**options) -> pl.Trainer:
    """A CPU Trainer that logs, checkpoints and prints nothing; ``options`` add to or replace
    those settings."""
    quiet = {"accelerator": "cpu", "logger": False, "enable_progress_bar": False}
    quiet.update(enable_model_summary=False, enable_checkpointing=False)
    return pl.Trainer(**{**quiet, **options})


def load_checkpoint(path: str | Path) -> dict:
    """A checkpoint's dict, read as segnet reads them (weights_only=True)."""
    return torch.load(path, map_location="cpu", weights_only=True)


def per_step(run_dir: Path, column: str) -> dict[int, str]:
    """{global step: value} of one column of a run's csv/metrics.csv, as written (full
    precision); rows without that column are left out."""
    with open(run_dir / "csv" / "metrics.csv", newline="") as f:
        return {int(r["step"]): r[column] for r in csv.DictReader(f) if r.get(column)}


def csv_steps(run_dir: Path, column: str = "train/loss") -> list[int]:
    """The steps of every row of csv/metrics.csv with ``column``, in file order (repeats kept)."""
    with open(run_dir / "csv" / "metrics.csv", newline="") as f:
        return [int(r["step"]) for r in csv.DictReader(f) if r.get(column)]


def tensorboard_steps(run_dir: Path, tag: str = "train/loss") -> list[int]:
    """The steps of every ``tag`` scalar in the run's TensorBoard events, sorted."""
    events = EventAccumulator(str(run_dir / "tensorboard"))
    events.Reload()
    return sorted(event.step for event in events.Scalars(tag))


def infer_config(checkpoint: Path, source: Path | str, out: Path, *overrides: str) -> DictConfig:
    """The infer config for ``checkpoint`` on ``source`` into ``out``, without DataLoader
    workers, then ``overrides``."""
    io = [f"ckpt_path={checkpoint}", f"input={source}", f"output_dir={out}", "num_workers=0"]
    return compose_config("infer", [*io, *overrides])


def infer_in_process(checkpoint: Path, source: Path | str, out: Path, *overrides: str) -> Summary:
    """What scripts/infer.py does with these settings, in this process: its summary."""
    return infer(infer_config(checkpoint, source, out, *overrides))


def labels_of(path: Path) -> np.ndarray:
    """The class indices of a mask PNG that infer wrote, (H, W)."""
    with Image.open(path) as image:
        return np.asarray(image)


def photo(rng: np.random.Generator, height: int, width: int) -> Image.Image:
    """An RGB image of uniform noise."""
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def write_inputs(folder: Path) -> dict[str, tuple[int, int]]:
    """Every kind of input; returns {relative path: displayed (width, height)} of good ones."""
    rng = np.random.default_rng(0)
    (folder / "a").mkdir(parents=True)
    (folder / "b").mkdir()
    photo(rng, 50, 70).save(folder / "a" / "photo.jpg")
    photo(rng, 50, 70).save(folder / "b" / "photo.jpg")  # same name, other folder
    photo(rng, 33, 45).save(folder / "a" / "photo.png")  # same stem as a/photo.jpg
    photo(rng, 40, 30).convert("L").save(folder / "gray.png")
    photo(rng, 40, 30).convert("RGBA").save(folder / "rgba.png")
    photo(rng, 40, 30).convert("CMYK").save(folder / "cmyk.jpg")
    photo(rng, 40, 30).convert("P").save(folder / "palette.png")
    wide = rng.integers(0, 65536, (20, 30), dtype=np.uint16)
    Image.fromarray(wide).save(folder / "gray16.png")
    photo(rng, 1, 1).save(folder / "one_pixel.png")
    photo(rng, 200, 300).save(folder / "large.png")  # beyond max_pixels: sliding windows
    exif = Image.Exif()
    exif[0x0112] = 6  # stored 40 wide x 24 high, shown rotated by 90 degrees: 24 x 40
    photo(rng, 24, 40).save(folder / "rotated.jpg", exif=exif)
    with Image.open(folder / "rotated.jpg") as rotated:
        ImageOps.exif_transpose(rotated).save(folder / "upright.png")
    # Broken files: not an image, empty, truncated, random bytes behind an image extension.
    (folder / "notes.jpg").write_text("shopping list")
    (folder / "empty.png").write_bytes(b"")
    data = (folder / "a" / "photo.jpg").read_bytes()
    (folder / "truncated.jpg").write_bytes(data[: len(data) // 2])
    (folder / "noise.gif").write_bytes(rng.integers(0, 256, 300, dtype=np.uint8).tobytes())
    (folder / "readme.txt").write_text("not an input: no image extension")
    good = {}
    for path in sorted(folder.rglob("*")):
        try:
            with Image.open(path) as image:
                image.load()
                good[str(path.relative_to(folder))] = ImageOps.exif_transpose(image).size
        except Exception:
            continue
    return good


def assert_several_classes(predicted: np.ndarray) -> None:
    """``predicted[c]`` pixels were predicted as class c: at least 3 classes each have 1% of
    them. Comparisons of such a model's predictions can fail; those of a model predicting one
    class everywhere hardly can."""
    predicted = np.asarray(predicted)
    assert (predicted >= 0.01 * predicted.sum()).sum() >= 3, predicted.tolist()


def assert_varied(confmat: np.ndarray | list[list[int]]) -> None:
    """A confusion matrix (rows = truth, columns = prediction) of varied predictions: see
    ``assert_several_classes``."""
    assert_several_classes(np.asarray(confmat).sum(0))


def assert_varied_labels(labels: np.ndarray) -> None:
    """A label map (or several, concatenated) of varied predictions: see
    ``assert_several_classes``."""
    assert_several_classes(np.bincount(np.asarray(labels).ravel()))


def torchrun(*args: str) -> list[str]:
    """The command line of ``torchrun args`` with this Python."""
    return [sys.executable, "-m", "torch.distributed.run", *args]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def two_nodes(script: Path, args: list[str], env: dict) -> list[subprocess.CompletedProcess]:
    """``script`` with ``args`` on 2 torchrun agents ("nodes" of 1 process each) meeting at
    127.0.0.1, each stopping by itself within the timeout."""
    rendezvous = [
        "--nnodes=2",
        "--nproc_per_node=1",
        "--rdzv_backend=c10d",
        f"--rdzv_endpoint=127.0.0.1:{free_port()}",
        "--rdzv_id=segnet-test",
    ]
    agents = [
        subprocess.Popen(
            torchrun(*rendezvous, f"--node_rank={rank}", str(script), *args),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for rank in (0, 1)
    ]
    done = []
    try:
        for agent in agents:
            out, err = agent.communicate(timeout=300)
            done.append(subprocess.CompletedProcess(agent.args, agent.returncode, out, err))
    finally:
        for agent in agents:
            if agent.poll() is None:
                agent.kill()
    return done
