"""The eager PyTorch backend, and the module that ONNX export traces.

:class:`PixelFCN` puts the input convention into the model: uint8 RGB in, normalised inside
with the same operations as :func:`segnet.data.transforms.eval_transforms` (so a decoded file
and a dataset sample give bit-identical network inputs), logits out. Eager inference and the
exported graph run this one module, so they cannot disagree on preprocessing.
"""

from __future__ import annotations

import hashlib
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import torch
from torch import Tensor, nn

from segnet.data.classes import class_colours
from segnet.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from segnet.device import resolve_device
from segnet.models import FCN
from segnet.runtime.checkpoint import load_model


class PixelFCN(nn.Module):
    """uint8 RGB images (N, 3, H, W) -> float32 logits (N, C, H, W) of the wrapped FCN."""

    def __init__(self, model: FCN) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), False)

    def forward(self, images: Tensor) -> Tensor:
        # eval_transforms' ops, in its order: ToDtype(scale=True) multiplies by 1/255.
        pixels = images.to(torch.float32) * (1.0 / 255)
        return self.model((pixels - self.mean) / self.std)


def segnet_version() -> str:
    try:
        return version("segnet")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "unknown"


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class EagerBackend:
    """A trained FCN on PyTorch, behind :class:`segnet.runtime.Backend`.

    Args:
        model: the FCN, in eval mode, on the device it should run on.
        class_names: C display names.
        palette: C (r, g, b) colours of the classes (None: VOC's palette).
        info: facts to report (see :meth:`from_checkpoint`); backbone/variant are added.
    """

    name = "torch"

    def __init__(
        self,
        model: FCN,
        class_names: list[str],
        palette: list[tuple[int, int, int]] | None = None,
        info: dict | None = None,
    ) -> None:
        if len(class_names) != model.num_classes:
            raise ValueError(f"{len(class_names)} class names for {model.num_classes} classes")
        palette = class_colours(model.num_classes) if palette is None else palette
        if len(palette) != model.num_classes:
            raise ValueError(f"{len(palette)} colours for {model.num_classes} classes")
        self.network = PixelFCN(model).to(next(model.parameters()).device).eval()
        self.num_classes = model.num_classes
        self.class_names = list(class_names)
        self.palette = [tuple(int(c) for c in colour) for colour in palette]
        self.info = {
            "backbone": model.backbone_name,
            "variant": model.variant,
            "num_classes": model.num_classes,
            **(info or {}),
        }

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str | torch.device = "auto"):
        """The model of a scripts/train.py checkpoint on ``device`` (checked first).

        Raises:
            ValueError: ``device`` is not usable here. CheckpointError: see
                :func:`segnet.runtime.checkpoint.load_model`.
        """
        model, names, palette = load_model(path, resolve_device(device))
        source = {"source": str(path), "source_sha256": file_sha256(path)}
        return cls(model, names, palette, {**source, "segnet_version": segnet_version()})

    @property
    def device(self) -> torch.device:
        return self.network.mean.device

    @torch.inference_mode()
    def __call__(self, images: Tensor) -> Tensor:
        if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(
                f"expected uint8 RGB images (N, 3, H, W), got {images.dtype} {tuple(images.shape)}"
            )
        return self.network(images.to(self.device, non_blocking=True)).float()
