"""Training benchmark: step throughput of FCN-8s, and the demo's time to reach its mIoU target.

Throughput: images/s of one full training step (forward, cross-entropy, backward, optimiser
step) through :class:`segnet.training.system.SegmentationSystem`'s own forward, loss and
optimiser, for FCN-8s on resnet18 and resnet50 at 320x480, batch 8, in fp32 and bf16-mixed
(``torch.autocast("cpu", torch.bfloat16)``, what ``precision=bf16-mixed`` does on CPU), each
with and without channels-last. Figure: batch / median step time after warm-up steps, with
the timed steps interleaved round-robin across cases so a burst of load from elsewhere hits
every case alike. ``--quick``: resnet18 only, 160x240, batch 2, fewer steps.

Checkpoint saves: for each fp32 case, the seconds to write its ``last.ckpt`` (weights, SGD
momentum, schedule) as training writes it, and that time as a share of the 500 steps between
two periodic saves at the measured step time.

Demo (skipped under ``--quick``): ``scripts/train.py experiment=demo`` in a fresh process
with a fresh data root, so the wall time includes interpreter start, data generation,
training and every validation. A small callback added by override records the wall-clock
time of each validation's end; the figures are the time until val mIoU first reaches 0.60
(the issue's target: within 300 s on 2 CPU cores), the best val mIoU, the per-epoch curve,
the total wall time, and the peak resident memory of the training process.
"""

from __future__ import annotations

import json
import math
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path
from types import SimpleNamespace

import pytorch_lightning as pl
import torch

from segnet.benchmarks import Result
from segnet.training.checkpoints import AtomicCheckpointIO
from segnet.training.system import SegmentationSystem

SECTION = "training"
DEMO_TARGET_MIOU = 0.60
DEMO_TARGET_SECONDS = 300.0
TRAIN_SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "train.py"
LAST_EVERY_N_STEPS = 500  # configs/callbacks/default.yaml: last_checkpoint.every_n_steps
# quick -> (backbones, (height, width), batch, warm-up steps, timed steps)
THROUGHPUT_CASES = {
    True: (("resnet18",), (160, 240), 2, 1, 2),
    False: (("resnet18", "resnet50"), (320, 480), 8, 2, 6),
}


def run(quick: bool) -> list[Result]:
    results = _throughput(quick)
    if quick:
        print("(training: demo time-to-mIoU skipped under --quick)")
    else:
        results += _demo()
    return results


def _throughput(quick: bool) -> list[Result]:
    backbones, (height, width), batch, warmup, repeats = THROUGHPUT_CASES[quick]
    torch.manual_seed(0)
    images = torch.randn(batch, 3, height, width)
    masks = torch.randint(0, 21, (batch, height, width))
    cases = {}
    for backbone in backbones:
        for precision in ("fp32", "bf16-mixed"):
            for channels_last in (False, True):
                name = f"FCN-8s {backbone} {height}x{width} b{batch} {precision}"
                name += " channels_last" if channels_last else ""
                cases[name] = _Stepper(backbone, precision, channels_last)
    for name, stepper in list(cases.items()):
        try:
            for _ in range(warmup):
                stepper.step(images, masks)
        except RuntimeError as err:  # report and go on: one broken mode must not hide the rest
            print(f"(training: {name} failed: {type(err).__name__}: {err})")
            del cases[name]
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(repeats):
        for name, stepper in cases.items():
            start = time.perf_counter()
            stepper.step(images, masks)
            times[name].append(time.perf_counter() - start)
    threads = torch.get_num_threads()
    results = [
        Result(
            SECTION,
            f"{name} ({threads} threads)",
            "train step throughput",
            batch / statistics.median(times[name]),
            "images/s",
        )
        for name in cases
    ]
    fp32 = {name: stepper for name, stepper in cases.items() if name.endswith(" fp32")}
    return results + _checkpoint_saves(
        fp32, {name: statistics.median(times[name]) for name in fp32}
    )


def _checkpoint_saves(steppers: dict[str, _Stepper], step_s: dict[str, float]) -> list[Result]:
    """Seconds to write last.ckpt (weights, SGD momentum, schedule) the way training writes it
    (AtomicCheckpointIO: staged, fsync'ed, renamed), and that time as a share of the
    LAST_EVERY_N_STEPS steps between two periodic saves."""
    results = []
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "last.ckpt"
        for name, stepper in steppers.items():
            checkpoint = {
                "state_dict": stepper.system.state_dict(),
                "optimizer_states": [stepper.optimizer.state_dict()],
                "lr_schedulers": [stepper.scheduler.state_dict()],
            }
            times = []
            for _ in range(3):
                start = time.perf_counter()
                AtomicCheckpointIO().save_checkpoint(checkpoint, path)
                times.append(time.perf_counter() - start)
            save = statistics.median(times)
            megabytes = path.stat().st_size / 1e6
            case = f"{name} last.ckpt ({megabytes:.0f} MB)"
            share = 100 * save / (save + LAST_EVERY_N_STEPS * step_s[name])
            results.append(Result(SECTION, case, "checkpoint save", save, "s"))
            results.append(
                Result(SECTION, case, f"save share every {LAST_EVERY_N_STEPS} steps", share, "%")
            )
    return results


class _Stepper:
    """One training step of a fresh SegmentationSystem with its configured SGD + poly schedule."""

    def __init__(self, backbone: str, precision: str, channels_last: bool) -> None:
        self.system = SegmentationSystem(
            num_classes=21, backbone=backbone, variant="fcn8s", channels_last=channels_last
        ).train()
        self.system.trainer = SimpleNamespace(estimated_stepping_batches=10_000)
        config = self.system.configure_optimizers()
        self.optimizer = config["optimizer"]
        self.scheduler = config["lr_scheduler"]["scheduler"]
        self.bf16 = precision == "bf16-mixed"

    def step(self, images: torch.Tensor, masks: torch.Tensor) -> None:
        autocast = torch.autocast("cpu", dtype=torch.bfloat16) if self.bf16 else nullcontext()
        with autocast:
            loss = self.system.loss(self.system(images), masks)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.scheduler.step()


class ValidationClock(pl.Callback):
    """Appends ``{"time", "epoch", "step", "miou"}`` to a JSON-lines file after each validation
    (the demo benchmark adds it with ``+callbacks.clock._target_=...``)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        record = {
            "time": time.time(),
            "epoch": trainer.current_epoch,
            "step": trainer.global_step,
            "miou": float(trainer.callback_metrics["val/miou"]),
        }
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")


def _demo() -> list[Result]:
    if not TRAIN_SCRIPT.is_file():
        print(f"(training: {TRAIN_SCRIPT} not found; demo skipped)")
        return []
    with tempfile.TemporaryDirectory(prefix="segnet_demo_bench_") as tmp:
        clock, log = Path(tmp) / "clock.jsonl", Path(tmp) / "train.log"
        command = [
            sys.executable,
            str(TRAIN_SCRIPT),
            "experiment=demo",
            f"data.root={tmp}/data",
            f"hydra.run.dir={tmp}/run",
            f"+callbacks.clock._target_={__name__}.ValidationClock",
            f"+callbacks.clock.path={clock}",
        ]
        start = time.time()
        with open(log, "w") as out:
            returncode = subprocess.call(command, stdout=out, stderr=subprocess.STDOUT)
        wall = time.time() - start
        if returncode != 0:
            print(f"(training: the demo run failed, exit code {returncode}):")
            print(log.read_text()[-3000:])
            return []
        records = [json.loads(line) for line in clock.read_text().splitlines()]
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    reached = [r["time"] - start for r in records if r["miou"] >= DEMO_TARGET_MIOU]
    to_target = reached[0] if reached else math.nan
    best = max(r["miou"] for r in records)
    results = [
        Result(
            SECTION,
            "demo (experiment=demo, data generation included)",
            f"time to val mIoU >= {DEMO_TARGET_MIOU}",
            to_target,
            "s",
            f"<= {DEMO_TARGET_SECONDS:.0f} s",
            bool(reached) and to_target <= DEMO_TARGET_SECONDS,
        ),
        Result(SECTION, "demo", "best val mIoU", best, "", f">= {DEMO_TARGET_MIOU}", best >= 0.6),
        Result(SECTION, "demo", "total wall time", wall, "s"),
        Result(SECTION, "demo", "peak RSS (largest process)", peak_mb, "MB"),
    ]
    for r in records:
        case = f"demo epoch {r['epoch']} (step {r['step']})"
        results.append(Result(SECTION, case, "val mIoU", r["miou"], ""))
        results.append(Result(SECTION, case, "elapsed", r["time"] - start, "s"))
    return results


def checkpoint_costs(backbones: tuple[str, ...] = ("resnet18", "resnet50")) -> list[Result]:
    """The checkpoint-save figures alone, at the full run's size (fp32, 1 warm-up, 3 timed
    steps each): ``python -m segnet.benchmarks.training``."""
    _, (height, width), batch, _, _ = THROUGHPUT_CASES[False]
    torch.manual_seed(0)
    images = torch.randn(batch, 3, height, width)
    masks = torch.randint(0, 21, (batch, height, width))
    steppers = {
        f"FCN-8s {b} {height}x{width} b{batch} fp32": _Stepper(b, "fp32", False) for b in backbones
    }
    step_s = {}
    for name, stepper in steppers.items():
        stepper.step(images, masks)
        times = []
        for _ in range(3):
            start = time.perf_counter()
            stepper.step(images, masks)
            times.append(time.perf_counter() - start)
        step_s[name] = statistics.median(times)
    return _checkpoint_saves(steppers, step_s)


if __name__ == "__main__":
    for result in checkpoint_costs():
        print(f"{result.case}: {result.metric} {result.value:.3g} {result.unit}")
