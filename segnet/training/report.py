"""``<run>/report.md``: what a training run did, written when fit ends and when Ctrl-C or SIGTERM
stops it (SLURM's requeue and crashes write none: the requeued job or the rerun writes it).

The report holds: the curves of the run's ``csv/metrics.csv`` (train and val loss, val mIoU,
each lr against the global step; ``report/curves.png``), best.ckpt's per-class table (from the
confusion matrix saved in it, ``val_metrics``), each class's val IoU against the step
(``report/per_class_iou.png``) with the last validation's values, and the ``hardest`` val images
of best.ckpt's model (each predicted alone, as validation predicts it) side by side with their
ground truth (``report/hardest/``). The pictures and report.md are written together, report.md
last (:func:`segnet.outputs.write_together`): every image it links exists.

On Ctrl-C or SIGTERM Lightning calls each callback's ``on_exception``; it calls the checkpoint
callbacks last, so this one moves itself behind them in ``setup``: ``last.ckpt`` is saved before
the report's validation pass starts (a kill during it costs the report, never the checkpoint).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import CSVLogger
from pytorch_lightning.utilities.exceptions import SIGTERMException

from segnet.metrics import confusion_scores, per_image_miou
from segnet.outputs import write_together
from segnet.predict.predictor import class_map
from segnet.reports.curves import (
    CLASS_IOU,
    last_values,
    plot_class_curves,
    plot_curves,
    read_series,
)
from segnet.reports.hardest import HardestImages, hardest_section, remove_other_pictures
from segnet.reports.tables import markdown_table, scores_section
from segnet.training.system import SCORES, SegmentationSystem

PICTURES = "report"


class RunReport(pl.Callback):
    """Writes ``<dirpath>/report.md`` and its pictures under ``<dirpath>/report/`` (global
    rank 0 only) at the end of fit, and when Ctrl-C or SIGTERM stops it.

    Args:
        dirpath: the run folder.
        hardest: how many val images with the lowest mIoU under best.ckpt to show (0: none,
            and no validation pass).
    """

    def __init__(self, dirpath: str, hardest: int = 8) -> None:
        self.dirpath = Path(dirpath)
        self.hardest = HardestImages(hardest).count  # checks the value

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage == "fit":
            # A new list: the list this hook is being called from is left as it is.
            trainer.callbacks = [cb for cb in trainer.callbacks if cb is not self] + [self]

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.write(trainer, f"finished at global step {trainer.global_step}")

    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        if isinstance(exception, KeyboardInterrupt | SIGTERMException):
            why = "Ctrl-C" if isinstance(exception, KeyboardInterrupt) else "SIGTERM"
            try:
                self.write(trainer, f"stopped by {why} at global step {trainer.global_step}")
            except Exception as err:  # the stop is what the run must report, not this
                print(f"run report not written: {type(err).__name__}: {err}", flush=True)

    def write(self, trainer: pl.Trainer, ended: str) -> None:
        """Write the report of the run as it stands (``ended`` says how it ended)."""
        if not trainer.is_global_zero:
            return
        start = time.monotonic()
        series = _series(trainer)
        lines = [f"# Training run `{self.dirpath}`", "", f"Training {ended}.", ""]
        lines += ["## Curves", "", f"![losses, val mIoU and lr]({PICTURES}/curves.png)", ""]
        files = [(f"{PICTURES}/curves.png", plot_curves(series))]
        if not series:
            lines += ["No csv/metrics.csv (logger `csv`): nothing to draw.", ""]
        best = _best_path(trainer)
        if best is None:
            lines += [
                "No validation has finished yet: no best.ckpt, no table, no hardest images.",
                "",
            ]
        else:
            checkpoint = torch.load(best, map_location="cpu", weights_only=True)
            hparams = checkpoint["hyper_parameters"]
            lines += _best_section(best, checkpoint["val_metrics"], hparams["class_names"])
            lines += _class_curves_section(series, hparams["class_names"])
            files.append(
                (
                    f"{PICTURES}/per_class_iou.png",
                    plot_class_curves(series, hparams["class_names"], hparams["class_colours"]),
                )
            )
            if self.hardest:
                section, pictures = self._hardest(trainer, checkpoint)
                lines += section
                files += pictures
        files.append(("report.md", "\n".join(lines).encode()))
        write_together(
            (self.dirpath / name, lambda f, data=data: f.write(data)) for name, data in files
        )
        hardest_dir = self.dirpath / PICTURES / "hardest"
        remove_other_pictures(hardest_dir, (Path(name).name for name, _ in files))
        took = time.monotonic() - start
        print(f"run report: {self.dirpath / 'report.md'} ({took:.1f} s)", flush=True)

    def _hardest(self, trainer: pl.Trainer, checkpoint: dict[str, Any]) -> tuple[list[str], list]:
        """The hardest val images of best.ckpt's model: each image predicted alone, as
        validation predicts it, on the training device."""
        dataset = getattr(trainer.datamodule, "val_dataset", None)
        if dataset is None:
            return ["## Hardest images", "", "No val dataset to predict.", ""], []
        hparams = {**checkpoint["hyper_parameters"], "pretrained": False, "weights_path": None}
        system = SegmentationSystem(**hparams)
        system.load_state_dict(checkpoint["state_dict"])
        device = trainer.strategy.root_device
        system.to(device).eval()
        hardest = HardestImages(self.hardest)
        with torch.inference_mode():
            for index in range(len(dataset)):
                image, mask = dataset[index]
                predicted = class_map(system(image[None].to(device)).float().softmax(dim=1))
                mask = torch.as_tensor(mask, device=device).long()[None]
                miou = per_image_miou(predicted, mask, system.hparams.num_classes)
                hardest.offer(index, miou.item(), predicted[0])
        colours = system.hparams.class_colours
        folder = f"{PICTURES}/hardest"
        return hardest_section(
            hardest.kept, dataset.untransformed(), colours, folder, "the val split"
        )


def _series(trainer: pl.Trainer):
    for logger in trainer.loggers:
        if isinstance(logger, CSVLogger):
            logger.save()  # the rows still buffered
            path = Path(logger.log_dir) / "metrics.csv"
            return read_series(path) if path.is_file() else {}
    return {}


def _best_path(trainer: pl.Trainer) -> Path | None:
    best = next((cb for cb in trainer.checkpoint_callbacks if cb.monitor), None)
    if best is None or not best.best_model_path or not Path(best.best_model_path).is_file():
        return None
    return Path(best.best_model_path)


def _best_section(path: Path, val: dict[str, Any], class_names: list[str]) -> list[str]:
    scores = confusion_scores(torch.tensor(val["confmat"]), class_names)
    return [
        "## best.ckpt",
        "",
        f"`{path}`: epoch {val['epoch']}, global step {val['global_step']}; its validation's "
        "confusion matrix (saved in the checkpoint, 255 ignored):",
        "",
        *scores_section(
            [(f"val/{name}", scores[name]) for name in SCORES],
            val["confmat"],
            class_names,
            scores["absent_classes"],
        ),
    ]


def _class_curves_section(series, class_names: list[str]) -> list[str]:
    lines = ["## Per-class val IoU", "", f"![val IoU per class]({PICTURES}/per_class_iou.png)", ""]
    logged = last_values(series, CLASS_IOU)
    last = {name: logged[name] for name in class_names if name in logged}
    if "val/miou" in series and last:
        step = series["val/miou"][0][-1]
        lines += [f"The last points (the validation logged at step {step} of csv/metrics.csv):", ""]
        lines += markdown_table(list(last), [[f"{value:.4f}" for value in last.values()]])
        lines.append("")
    return lines
