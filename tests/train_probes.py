"""Lightning callbacks the training tests plug in through the config
(``+callbacks.NAME._target_=train_probes.Class``), in the test process or in the processes a
script starts (with ``tests/`` on PYTHONPATH)."""

from __future__ import annotations

import io
import os
import signal as signal_module
from pathlib import Path

import pytorch_lightning as pl
import torch

from segnet.training.samples import PredictionSamples


class SignalAtStep(pl.Callback):
    """Sends this process ``signal`` (a name: SIGINT is Ctrl-C) as the batch of global step
    ``step`` starts: an interruption at a step the test chooses, not wherever a timer lands.
    Python runs the handler in this (the main) thread as soon as ``os.kill`` returns."""

    def __init__(self, step: int, signal: str = "SIGINT") -> None:
        self.step, self.signal = step, getattr(signal_module, signal)

    def on_train_batch_start(self, trainer: pl.Trainer, *args) -> None:
        if trainer.global_step == self.step:
            os.kill(os.getpid(), self.signal)


class KillAtStep(pl.Callback):
    """Kills this process with SIGKILL (no handler runs, nothing is saved: an OOM killer or a
    lost node) as global step ``step`` starts on global rank ``rank``. With ``once``, a file
    that is created just before, the kill happens only while that file does not exist: a
    restarted run passes the step."""

    def __init__(self, step: int, rank: int = 0, once: str | None = None) -> None:
        self.step, self.rank, self.once = step, rank, once

    def on_train_batch_start(self, trainer: pl.Trainer, *args) -> None:
        if trainer.global_step != self.step or trainer.global_rank != self.rank:
            return
        if self.once is not None:
            if Path(self.once).exists():
                return
            Path(self.once).touch()
        os.kill(os.getpid(), signal_module.SIGKILL)


class KillInsideSave(pl.Callback):
    """SIGKILLs this process halfway through writing the checkpoint of global step ``step``
    (after half its bytes reached the file): what a kill during a save leaves behind."""

    def __init__(self, step: int) -> None:
        self.step = step

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        real_save = torch.save

        def cut_short(obj, f, *args, **kwargs):
            if trainer.global_step != self.step or isinstance(f, str | Path):
                return real_save(obj, f, *args, **kwargs)
            buffer = io.BytesIO()
            real_save(obj, buffer, *args, **kwargs)
            data = buffer.getvalue()
            f.write(data[: len(data) // 2])
            f.flush()
            os.kill(os.getpid(), signal_module.SIGKILL)

        torch.save = cut_short


class CrashAtStep(pl.Callback):
    """Raises as the batch of global step ``step`` starts, as a crash or kill would."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_start(self, trainer: pl.Trainer, *args) -> None:
        if trainer.global_step == self.step:
            raise RuntimeError(f"injected crash at step {self.step}")


class RankRecorder(pl.Callback):
    """Writes ``<out>/rank<R>.pt`` per process when fit ends: the weights it had when fit set
    up (before DDP's wrapper broadcasts rank 0's), started and ended with, how many checkpoint
    files it wrote, the prediction pictures it published, and whether any of its modules sync
    batch norm."""

    def __init__(self, out: str) -> None:
        self.out = Path(out)
        self.saves = 0
        self.pictures: list[str] = []
        self.start: dict[str, torch.Tensor] = {}
        self.set_up: dict[str, torch.Tensor] = {}

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self.set_up = _parameters(pl_module)
        io = trainer.strategy.checkpoint_io
        save = io.save_checkpoint

        def counted(*args, **kwargs):
            self.saves += 1
            return save(*args, **kwargs)

        io.save_checkpoint = counted
        for samples in (c for c in trainer.callbacks if isinstance(c, PredictionSamples)):
            publish = samples._publish

            def recorded(trainer, name, *args, publish=publish):
                self.pictures.append(name)
                return publish(trainer, name, *args)

            samples._publish = recorded

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.start = _parameters(pl_module)

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        record = {
            "world_size": trainer.world_size,
            "set_up": self.set_up,
            "start": self.start,
            "end": _parameters(pl_module),
            "saves": self.saves,
            "pictures": self.pictures,
            "sync_batchnorm": any(
                isinstance(m, torch.nn.SyncBatchNorm) for m in pl_module.modules()
            ),
        }
        self.out.mkdir(parents=True, exist_ok=True)
        torch.save(record, self.out / f"rank{trainer.global_rank}.pt")


class FirstBatchRecorder(pl.Callback):
    """Writes ``<out>/first_batch.pt`` as the first optimiser step of a fit is about to run:
    that step's batch (images, masks, as training_step got them) and the bytes of
    ``<samples>/train_batch.png`` at that moment (None if it did not exist yet)."""

    def __init__(self, out: str, samples: str) -> None:
        self.out, self.samples = Path(out), Path(samples)
        self.batch: tuple[torch.Tensor, torch.Tensor] | None = None

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module, batch, batch_idx) -> None:
        if self.batch is None:
            self.batch = (batch[0].detach().cpu().clone(), batch[1].detach().cpu().clone())

    def on_before_optimizer_step(self, trainer: pl.Trainer, pl_module, optimizer) -> None:
        if (self.out / "first_batch.pt").exists() or self.batch is None:
            return
        picture = self.samples / "train_batch.png"
        images, masks = self.batch
        record = {
            "images": images,
            "masks": masks,
            "picture": picture.read_bytes() if picture.exists() else None,
        }
        self.out.mkdir(parents=True, exist_ok=True)
        torch.save(record, self.out / "first_batch.pt")


def _parameters(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in module.named_parameters()}
