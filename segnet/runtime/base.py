"""The one interface every model runtime offers to :mod:`segnet.predict` (Predictor, Segmenter).

A backend maps 8-bit RGB images to logits. Normalisation lives inside the backend (inside the
graph, for an exported model), so nothing outside it can feed a model wrongly scaled pixels.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch
from torch import Tensor


class ModelFileError(ValueError):
    """A model file (checkpoint or .onnx) that cannot be used; the message names the file and
    what is wrong with it."""


def first_line(err: BaseException) -> str:
    """The first line of ``err``'s message (ONNX Runtime's run to pages), or its type's name."""
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


@runtime_checkable
class Backend(Protocol):
    """A trained segmentation model on some runtime.

    Attributes:
        name: "torch" or "onnxruntime".
        device: where input batches must be (the ONNX Runtime backend: the CPU).
        num_classes: C, the logits' channels.
        class_names: C display names.
        palette: C (r, g, b) colours the classes are drawn in (the training data's).
        info: plain JSON-able facts about the model (backbone, variant, source, ...).
    """

    name: str
    device: torch.device
    num_classes: int
    class_names: list[str]
    palette: list[tuple[int, int, int]]
    info: dict

    def __call__(self, images: Tensor) -> Tensor:
        """uint8 RGB (N, 3, H, W), any H, W >= 1, on ``device`` -> float32 logits (N, C, H, W)."""
        ...
