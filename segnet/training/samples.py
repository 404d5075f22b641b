"""Pictures of what the network is shown and what it predicts, written while it trains.

- ``<dirpath>/train_batch.png``, as the first training batch of a fit starts (before its
  optimiser step): each image of the batch as the network sees it (scaled, padded, cropped,
  flipped; the normalisation undone), its mask in the class colours, and the mask blended over
  the image. Label 255 (crop padding, unlabelled bands) is drawn in the void colour
  (224, 224, 192), unblended. A resumed fit writes it again, from the batch it resumes at.
- ``<dirpath>/val_step{global_step:06d}.png`` after every ``every_n_validations``-th
  validation (not the sanity check): one row per chosen val image, image | ground truth |
  prediction (:func:`segnet.visualize.comparison`). The images are ``num`` evenly spaced
  indices of the val dataset, read from the dataset itself (not the loader), so every picture
  shows the same images; each is predicted alone, as validation predicts it.

Each picture also goes to TensorBoard's image tab (tags ``samples/train_batch`` and
``samples/val``) when a TensorBoardLogger is attached; files are written whole or not at all
(:mod:`segnet.outputs`). Only global rank 0 draws and writes. ``num=0`` turns both off.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from PIL import Image
from pytorch_lightning.loggers import TensorBoardLogger
from torch import Tensor

from segnet.data.transforms import displayed
from segnet.outputs import write_bytes
from segnet.visualize import comparison, label_colours, label_overlay, side_by_side, stack_rows

TRAIN_BATCH = "train_batch.png"


def sample_indices(length: int, num: int) -> list[int]:
    """``min(num, length)`` distinct indices spread evenly over ``0 .. length - 1``, from 0."""
    count = min(num, length)
    return [i * length // count for i in range(count)]


def val_picture_name(global_step: int) -> str:
    return f"val_step{global_step:06d}.png"


class PredictionSamples(pl.Callback):
    """Writes ``train_batch.png`` once per fit and a prediction grid after validations.

    Args:
        dirpath: the folder of the pictures (the run's ``samples/``).
        num: val images per grid (0: no pictures at all).
        every_n_validations: draw after validation 1, 1 + n, 1 + 2n, ... of the run (counted
            across resumes).
    """

    def __init__(self, dirpath: str, num: int = 8, every_n_validations: int = 1) -> None:
        if isinstance(num, bool) or not isinstance(num, int) or num < 0:
            raise ValueError(f"callbacks.samples.num must be an integer >= 0, got {num!r}")
        if (
            isinstance(every_n_validations, bool)
            or not isinstance(every_n_validations, int)
            or every_n_validations < 1
        ):
            raise ValueError(
                "callbacks.samples.every_n_validations must be an integer >= 1, got "
                f"{every_n_validations!r}"
            )
        self.dirpath = Path(dirpath)
        self.num = num
        self.every_n_validations = every_n_validations
        self.validations = 0
        self._train_batch_due = False

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._train_batch_due = True

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if not self._train_batch_due:
            return
        self._train_batch_due = False
        if self.num and trainer.is_global_zero:
            images, masks = batch
            picture = train_batch_picture(images, masks, _colours(pl_module))
            self._publish(trainer, TRAIN_BATCH, "samples/train_batch", picture)

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or not self.num:
            return
        self.validations += 1
        if (self.validations - 1) % self.every_n_validations or not trainer.is_global_zero:
            return
        dataset = trainer.val_dataloaders.dataset
        rows = []
        for index in sample_indices(len(dataset), self.num):
            image, mask = dataset[index]
            labels = _predict_alone(trainer, pl_module, image)
            rows.append(comparison(displayed(image), mask.numpy(), labels, _colours(pl_module)))
        name = val_picture_name(trainer.global_step)
        self._publish(trainer, name, "samples/val", stack_rows(rows))

    def _publish(self, trainer: pl.Trainer, name: str, tag: str, picture: np.ndarray) -> None:
        """Write ``picture`` (uint8 (H, W, 3)) as ``<dirpath>/<name>``, and to TensorBoard."""
        encoded = io.BytesIO()
        # Level 1: a fraction of the default's time, for files a few percent larger.
        Image.fromarray(picture).save(encoded, format="PNG", compress_level=1)
        write_bytes(self.dirpath / name, encoded.getvalue())
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                logger.experiment.add_image(
                    tag, picture, global_step=trainer.global_step, dataformats="HWC"
                )

    def state_dict(self) -> dict[str, Any]:
        return {"validations": self.validations}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.validations = state_dict.get("validations", 0)


def train_batch_picture(
    images: Tensor, masks: Tensor, colours: list[list[int]] | None
) -> np.ndarray:
    """uint8 picture of a training batch, one row per sample: image | mask | mask over image.

    Args:
        images: float32 (N, 3, H, W), normalised as the network gets them.
        masks: int64 (N, H, W), labels and 255.
        colours: (r, g, b) per class (None: VOC's palette).
    """
    rows = []
    for image, mask in zip(images, masks.cpu().numpy(), strict=True):
        rgb = displayed(image).numpy()
        coloured = label_colours(mask, colours)
        rows.append(side_by_side([rgb, coloured, label_overlay(rgb, mask, colours)]))
    return stack_rows(rows)


def _predict_alone(trainer: pl.Trainer, pl_module: pl.LightningModule, image: Tensor) -> np.ndarray:
    """Class map (H, W) of one normalised image (3, H, W), predicted as validation_step does:
    the image alone, in eval mode, under the run's precision."""
    was_training = pl_module.training
    pl_module.eval()
    try:
        with torch.no_grad(), trainer.precision_plugin.forward_context():
            labels = pl_module.predict_step(image[None].to(pl_module.device), 0)
    finally:
        pl_module.train(was_training)
    return labels[0].cpu().numpy()


def _colours(pl_module: pl.LightningModule) -> list[list[int]] | None:
    return pl_module.hparams.get("class_colours")
