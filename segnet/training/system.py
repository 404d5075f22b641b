"""The LightningModule: an FCN, its loss, its metrics and its optimiser.

Every constructor argument is a plain value, saved with ``save_hyperparameters()``, so a
checkpoint's ``hyper_parameters`` load with ``torch.load(..., weights_only=True)``. The network
is built from them by :func:`segnet.models.fcn_from_hparams`, here and when a checkpoint is
read back (:mod:`segnet.runtime.checkpoint`), with its weights under the ``model.`` prefix of the
state dict.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics.classification import MulticlassConfusionMatrix

from segnet.data.classes import IGNORE_INDEX, default_class_names
from segnet.data.classes import class_colours as voc_colours
from segnet.metrics import confusion_scores
from segnet.models import fcn_from_hparams
from segnet.predict.predictor import class_map

OPTIMIZERS = ("sgd", "adamw")
SCORES = ("pixel_acc", "mean_acc", "miou", "fw_iou")


class SegmentationSystem(pl.LightningModule):
    """Trains and evaluates an FCN with per-pixel cross-entropy (label 255 ignored).

    Metrics: one ``MulticlassConfusionMatrix`` per stage (train/val/test); at each epoch end
    the four FCN metrics are derived from it by :func:`segnet.metrics.confusion_scores`, and
    validation adds each class's IoU (``val/iou/<class name>``; docs/monitoring.md).
    torchmetrics syncs the matrix across processes, so under DDP the epoch metrics cover every
    sample of every rank. The last validation scores are kept in ``self.val_scores`` and
    saved in every checkpoint under ``"val_metrics"``.

    Optimisation (the FCN / torchvision segmentation recipe): SGD with momentum and weight
    decay, or AdamW; the lr follows the poly schedule ``(1 - it / total) ** poly_power``
    stepped every iteration, optionally after ``warmup_iters`` of linear warm-up from
    ``warmup_factor * lr``. The backbone's lr is ``lr * backbone_lr_mult`` (param groups
    "backbone" and "head"). Weight decay applies to every parameter, biases and norms
    included, as in torchvision's reference recipe this follows.

    Loading a checkpoint whose run used ``pretrained=True`` would fetch ImageNet weights only
    to overwrite them: pass ``pretrained=False`` to ``load_from_checkpoint``.

    Args:
        num_classes, backbone, variant, pretrained, weights_path, trainable_upsample: the
            :class:`~segnet.models.FCN` arguments.
        class_names: ``num_classes`` names for per-class metrics (None: VOC's 21 names).
        class_colours: ``num_classes`` ``[r, g, b]`` colours the dataset draws its classes in
            (None: VOC's palette); saved with the weights, so every picture of the model's
            output (masks, overlays, the serve page, an exported ``.onnx``) uses them.
        optimizer: ``"sgd"`` or ``"adamw"``.
        lr: base learning rate (the head's).
        momentum: SGD momentum (unused by AdamW).
        weight_decay: L2 penalty (SGD) or decoupled weight decay (AdamW).
        backbone_lr_mult: backbone lr = ``lr * backbone_lr_mult`` (0 keeps the trunk fixed).
        poly_power: exponent of the poly schedule (0 = constant lr).
        warmup_iters: iterations of linear warm-up (0 = none).
        warmup_factor: lr multiplier at the first warm-up iteration.
        class_weights: per-class loss weights (None = unweighted).
        channels_last: keep weights and inputs in channels-last memory format (faster convs
            on recent CPUs and tensor-core GPUs).
        freeze_backbone: train the head only: the trunk's parameters get no gradient and are
            not given to the optimiser, and its batch-norm (and dropout) layers stay in eval
            mode, so their running statistics keep the values the run started with (for very
            small datasets, where batch statistics would be noise).
    """

    def __init__(
        self,
        num_classes: int = 21,
        backbone: str = "resnet18",
        variant: str = "fcn8s",
        pretrained: bool = False,
        weights_path: str | None = None,
        trainable_upsample: bool = True,
        class_names: Sequence[str] | None = None,
        class_colours: Sequence[Sequence[int]] | None = None,
        optimizer: str = "sgd",
        lr: float = 0.01,
        momentum: float = 0.9,
        weight_decay: float = 1e-4,
        backbone_lr_mult: float = 1.0,
        poly_power: float = 0.9,
        warmup_iters: int = 0,
        warmup_factor: float = 0.001,
        class_weights: Sequence[float] | None = None,
        channels_last: bool = False,
        freeze_backbone: bool = False,
    ) -> None:
        super().__init__()
        # Hydra hands over ListConfig objects: store plain lists so checkpoints stay
        # loadable with weights_only=True (save_hyperparameters reads these locals).
        if class_names is None:
            class_names = default_class_names(num_classes)
        class_names = [str(name) for name in class_names]
        if class_colours is None:
            class_colours = voc_colours(num_classes)
        class_colours = [[int(c) for c in colour] for colour in class_colours]
        if class_weights is not None:
            class_weights = [float(w) for w in class_weights]
        _check_args(num_classes, class_names, optimizer, lr, backbone_lr_mult, class_weights)
        _check_colours(num_classes, class_colours)
        self.save_hyperparameters()

        self.model = fcn_from_hparams(
            self.hparams, pretrained=pretrained, weights_path=weights_path
        )
        if channels_last:
            self.model.to(memory_format=torch.channels_last)
        if freeze_backbone:
            self.model.backbone.requires_grad_(False)
            self.model.backbone.eval()
        weights = None if class_weights is None else torch.tensor(class_weights)
        self.register_buffer("loss_weights", weights, persistent=False)
        # One matrix per stage so validation inside a training epoch never mixes counts.
        self.train_confmat = MulticlassConfusionMatrix(num_classes, ignore_index=IGNORE_INDEX)
        self.val_confmat = MulticlassConfusionMatrix(num_classes, ignore_index=IGNORE_INDEX)
        self.test_confmat = MulticlassConfusionMatrix(num_classes, ignore_index=IGNORE_INDEX)
        self.val_scores: dict[str, Any] | None = None

    def train(self, mode: bool = True) -> SegmentationSystem:
        """Lightning switches modes around every validation: a frozen trunk stays in eval."""
        super().train(mode)
        if self.hparams.freeze_backbone:
            self.model.backbone.eval()
        return self

    def forward(self, images: Tensor) -> Tensor:
        """(N, 3, H, W) normalised images -> (N, num_classes, H, W) logits."""
        if self.hparams.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        return self.model(images)

    def loss(self, logits: Tensor, masks: Tensor) -> Tensor:
        """Mean cross-entropy over the non-ignored pixels; logits (N, C, H, W), masks (N, H, W)
        (or flattened: logits (P, C), masks (P,))."""
        return F.cross_entropy(logits, masks, weight=self.loss_weights, ignore_index=IGNORE_INDEX)

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        images, masks = batch
        logits = self(images)
        loss = self.loss(logits, masks)
        self.train_confmat.update(logits.detach().argmax(dim=1), masks)
        # Per step, this rank's loss: an all-reduce every step would cost more than it tells.
        self.log("train/loss", loss, prog_bar=True, batch_size=len(images))
        # The loggers get every group's lr from LearningRateMonitor (lr/backbone, lr/head).
        self.log("lr", self.optimizers().param_groups[-1]["lr"], prog_bar=True, logger=False)
        return loss

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._eval_step(batch, "val")

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._eval_step(batch, "test")

    def predict_step(self, batch: Tensor | Sequence[Tensor], batch_idx: int) -> Tensor:
        """Class maps (N, H, W) int64 for a batch of images, with or without masks."""
        images = batch if isinstance(batch, Tensor) else batch[0]
        return _classes(self(images))

    def _eval_step(
        self, batch: tuple[Tensor, Tensor] | tuple[list[Tensor], list[Tensor]], stage: str
    ) -> None:
        """One batch: images (N, 3, H, W) and masks (N, H, W), or lists of images (3, h_i, w_i)
        and masks (h_i, w_i) of their own sizes (the data module's validation loader)."""
        images, masks = batch
        if isinstance(images, Tensor):
            logits = self(images)
            predicted = _classes(logits)
        else:
            # Each image alone, as scripts/evaluate.py predicts it: its prediction then depends
            # on nothing else in the batch, so one process and several give the same pixels.
            per_image = [self(image[None]) for image in images]
            predicted = torch.cat([_classes(scores).flatten() for scores in per_image])
            logits = torch.cat([scores[0].flatten(1).T for scores in per_image])
            masks = torch.cat([mask.flatten() for mask in masks])
        loss = self.loss(logits, masks)
        self._confmat(stage).update(predicted, masks)
        self.log(
            f"{stage}/loss", loss, prog_bar=stage == "val", sync_dist=True, batch_size=len(images)
        )

    def _confmat(self, stage: str) -> MulticlassConfusionMatrix:
        return getattr(self, f"{stage}_confmat")

    def on_train_epoch_end(self) -> None:
        self._log_epoch_scores("train")

    def on_validation_epoch_end(self) -> None:
        scores = self._log_epoch_scores("val")
        if not self.trainer.sanity_checking:
            self.val_scores = {
                "epoch": self.current_epoch,
                "global_step": self.global_step,
                **scores,
            }

    def on_test_epoch_end(self) -> None:
        self._log_epoch_scores("test")

    def _log_epoch_scores(self, stage: str) -> dict[str, Any]:
        """Derive the FCN metrics from the stage's (process-synced) matrix, log, and reset it.

        Validation also logs each class's IoU as ``val/iou/<class name>``, from the same matrix
        as ``val/miou``. A class absent from both the targets and the predictions has no IoU
        (0/0, left out of ``val/miou`` too): nothing is logged for it at that validation, so
        its curve has a gap there rather than a made-up value.
        """
        confmat = self._confmat(stage).compute()
        self._confmat(stage).reset()
        scores = confusion_scores(confmat, self.hparams.class_names)
        # Every rank holds the same synced values; sync_dist only silences Lightning's warning.
        names = SCORES if stage != "train" else ("pixel_acc", "miou")
        for name in names:
            self.log(f"{stage}/{name}", scores[name], prog_bar=name == "miou", sync_dist=True)
        if stage == "val":
            for name, iou in scores["per_class_iou"].items():
                if iou is not None:
                    self.log(f"val/iou/{name}", iou, sync_dist=True)
        return {**scores, "confmat": confmat.cpu().tolist()}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # Plain floats, strings and lists: the metrics the checkpoint was saved with.
        checkpoint["val_metrics"] = self.val_scores

    def on_train_start(self) -> None:
        # A resumed fit restores the optimiser with the lr the old schedule had reached. If the
        # run is now longer (max_epochs or max_steps raised) its first step would still use
        # that lr (0 at the old end) before the scheduler first steps: set the schedule's own.
        for config in self.trainer.lr_scheduler_configs:
            scheduler = config.scheduler
            groups = scheduler.optimizer.param_groups
            for group, base, factor in zip(
                groups, scheduler.base_lrs, scheduler.lr_lambdas, strict=True
            ):
                group["lr"] = base * factor(scheduler.last_epoch)

    def configure_optimizers(self) -> dict[str, Any]:
        hp = self.hparams
        groups = [{"params": self.model.head_parameters(), "lr": hp.lr, "name": "head"}]
        if not hp.freeze_backbone:
            backbone_lr = hp.lr * hp.backbone_lr_mult
            trunk = {"params": self.model.backbone_parameters(), "lr": backbone_lr}
            groups.insert(0, {**trunk, "name": "backbone"})
        if hp.optimizer == "sgd":
            optimizer = torch.optim.SGD(
                groups, lr=hp.lr, momentum=hp.momentum, weight_decay=hp.weight_decay
            )
        else:
            optimizer = torch.optim.AdamW(groups, lr=hp.lr, weight_decay=hp.weight_decay)
        total = self.trainer.estimated_stepping_batches
        if not math.isfinite(total):
            raise ValueError(
                "the poly lr schedule needs a finite trainer.max_epochs or trainer.max_steps"
            )
        power, warmup, start = hp.poly_power, hp.warmup_iters, hp.warmup_factor

        # A closure, not a callable object: LambdaLR does not checkpoint functions, so a run
        # resumed with a longer schedule decays over its new length.
        def lr_factor(step: int) -> float:
            factor = max(0.0, 1.0 - step / total) ** power
            if step < warmup:
                factor *= start + (1.0 - start) * step / warmup
            return factor

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step", "name": "lr"},
        }


def _classes(logits: Tensor) -> Tensor:
    """Class map (N, H, W) of logits (N, C, H, W), decided as evaluation decides it: on the
    float32 softmax probabilities, where two classes can tie that the logits still told apart
    (one pixel in 10^5 or so), ties going to the lower class."""
    return class_map(logits.float().softmax(dim=1))


def _check_args(
    num_classes: int,
    class_names: list[str],
    optimizer: str,
    lr: float,
    backbone_lr_mult: float,
    class_weights: list[float] | None,
) -> None:
    if len(class_names) != num_classes:
        raise ValueError(f"{len(class_names)} class_names given for num_classes={num_classes}")
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {optimizer!r}; choose one of {', '.join(OPTIMIZERS)}")
    if not lr > 0:
        raise ValueError(f"lr must be > 0, got {lr}")
    if not backbone_lr_mult >= 0:
        raise ValueError(f"backbone_lr_mult must be >= 0, got {backbone_lr_mult}")
    if class_weights is not None and len(class_weights) != num_classes:
        raise ValueError(f"{len(class_weights)} class_weights given for num_classes={num_classes}")


def _check_colours(num_classes: int, colours: list[list[int]]) -> None:
    if len(colours) != num_classes:
        raise ValueError(f"{len(colours)} class_colours given for num_classes={num_classes}")
    for colour in colours:
        if len(colour) != 3 or not all(0 <= c <= 255 for c in colour):
            raise ValueError(f"a class colour is [r, g, b] with values 0..255, got {colour}")
