"""Use a trained model from Python: ``from segnet import Segmenter``.

    seg = Segmenter.load("best.ckpt")                 # or "model.onnx" (scripts/export.py)
    labels = seg.predict("photo.jpg")                 # uint8 (H, W) class indices
    labels, probs = seg.predict(image, probs=True)    # + float32 (C, H, W) probabilities
    masks = seg.predict([a, b, c])                    # same-size images share a forward pass
    seg.overlay(seg.to_rgb("photo.jpg"), labels).show()

This is the one prediction path of the code base: scripts/infer.py, scripts/evaluate.py and
the HTTP service all predict through a Segmenter, with the options (and defaults) of
configs/infer.yaml. Nothing here imports Lightning or Hydra; an ONNX model needs PyTorch only
for the tensor plumbing of sliding windows and TTA, never for the network.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps
from PIL.PngImagePlugin import PngInfo

from segnet.data.images import DataError, decode_image, read_image, rgb_image
from segnet.predict.predictor import Predictor, class_map, size_batches
from segnet.runtime import Backend, load_backend
from segnet.visualize import colorize, overlay

SOURCE_KEY = "segnet-infer-source"
"""PNG iTXt key / JPEG comment prefix under which scripts/infer.py records an output's input."""

ImageLike = str | Path | bytes | Image.Image | np.ndarray | torch.Tensor


class Segmenter:
    """A trained segmentation model and how to apply it to whole images.

    Args:
        backend: the model (:func:`segnet.runtime.load_backend`; usually made by
            :meth:`load`, :meth:`from_checkpoint` or :meth:`from_onnx`).
        flip, scales: test-time augmentation (mirror; resize factors such as (0.75, 1, 1.25)).
        window, overlap, blend: sliding windows for images above ``max_pixels`` pixels
            (window None: every image whole). See :class:`segnet.predict.predictor.Predictor`.
        max_pixels: images with more pixels than this go through sliding windows.
        batch_size: images (of one size) or windows per forward pass.
    """

    def __init__(
        self,
        backend: Backend,
        flip: bool = False,
        scales: Sequence[float] = (1.0,),
        window: int | Sequence[int] | None = 512,
        overlap: float = 0.333,
        blend: str = "gaussian",
        max_pixels: int = 1_000_000,
        batch_size: int = 4,
    ) -> None:
        if backend.num_classes > 255:
            raise ValueError(
                f"{backend.num_classes} classes do not fit uint8 labels with 255 for void"
            )
        self.backend = backend
        self.predictor = Predictor(
            backend, flip, scales, window, overlap, blend, max_pixels, batch_size
        )

    @classmethod
    def load(cls, path: str | Path, device: str = "auto", threads: int | None = None, **options):
        """A ``.onnx`` file on ONNX Runtime (CPU, ``threads`` intra-op threads), anything else
        as a scripts/train.py checkpoint on PyTorch on ``device``. ``options``: see the class.

        Raises:
            segnet.runtime.ModelFileError: missing, damaged or not a segnet model file.
            ValueError: a device this machine lacks, or a bad option.
        """
        return cls(load_backend(path, device, threads), **options)

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str = "auto", **options) -> Segmenter:
        """A scripts/train.py checkpoint, read with ``weights_only=True``, on ``device``."""
        if Path(path).suffix.lower() == ".onnx":
            raise ValueError(f"{path} is an ONNX model: use Segmenter.from_onnx")
        return cls.load(path, device, **options)

    @classmethod
    def from_onnx(cls, path: str | Path, threads: int | None = None, **options) -> Segmenter:
        """A scripts/export.py model on ONNX Runtime's CPU provider."""
        if Path(path).suffix.lower() != ".onnx":
            raise ValueError(f"{path} is not a .onnx file: use Segmenter.from_checkpoint")
        return cls.load(path, "cpu", threads, **options)

    @property
    def class_names(self) -> list[str]:
        return self.backend.class_names

    @property
    def num_classes(self) -> int:
        return self.backend.num_classes

    @property
    def palette(self) -> list[tuple[int, int, int]]:
        """(r, g, b) of each class, in class order: the colours of masks and overlays (the
        training data's, as the checkpoint or the ``.onnx`` file records them)."""
        return self.backend.palette

    def to_rgb(self, image: ImageLike) -> np.ndarray:
        """``image`` as predict sees it: uint8 (H, W, 3) RGB at its displayed size.

        Accepts a file path or a file's bytes (decoded strictly, EXIF orientation applied), a
        ``PIL.Image`` in any mode (EXIF orientation applied; alpha dropped; 16-bit scaled), a
        uint8 array (H, W, 3), or a tensor (3, H, W) of uint8 or of floats in [0, 1] (rounded
        to 8 bits).

        Raises:
            DataError: an unreadable or undecodable file or PIL image.
            ValueError: an array or tensor of another shape, dtype or value range.
        """
        if isinstance(image, str | Path):
            return np.asarray(read_image(image))
        if isinstance(image, bytes | bytearray | memoryview):  # a file's bytes, e.g. an upload
            return np.asarray(decode_image(bytes(image), "image bytes"))
        if isinstance(image, Image.Image):
            name = getattr(image, "filename", "") or "PIL image"
            try:
                image.load()
                shown = ImageOps.exif_transpose(image)
            except Exception as err:  # Pillow reports broken data with many exception types
                raise DataError(
                    f"{name}: cannot decode image ({type(err).__name__}: {err})"
                ) from err
            return np.asarray(rgb_image(shown, name))
        if isinstance(image, np.ndarray):
            if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
                raise ValueError(
                    f"an image array must be uint8 (H, W, 3) RGB, got {image.dtype} {image.shape}"
                )
            return _nonempty(np.ascontiguousarray(image))
        if isinstance(image, torch.Tensor):
            return _nonempty(_tensor_rgb(image))
        raise ValueError(
            f"cannot segment a {type(image).__name__}: give a path, file bytes, PIL.Image, uint8 "
            "(H, W, 3) array or (3, H, W) tensor"
        )

    def predict(self, image: ImageLike | list[ImageLike], probs: bool = False):
        """Class indices of ``image`` (or of each image of a list, in order).

        Returns:
            uint8 (H, W) labels at the image's displayed size; with ``probs``, the pair
            ``(labels, float32 (C, H, W) softmax probabilities)``. A list gives a list.

        Raises:
            DataError, ValueError: see :meth:`to_rgb`.
        """
        if not isinstance(image, list):
            return self.predict([image], probs)[0]
        rgbs = [self.to_rgb(item) for item in image]
        results: list = [None] * len(rgbs)
        sizes = [rgb.shape[:2] for rgb in rgbs]
        limit = self.predictor.max_pixels if self.predictor.window is not None else None
        for batch in size_batches(sizes, self.predictor.batch_size, limit):
            images = torch.from_numpy(np.stack([rgbs[i] for i in batch])).permute(0, 3, 1, 2)
            if probs:
                scores = self.predictor.probabilities(images)
                labels = class_map(scores).to(torch.uint8).cpu().numpy()
                for n, i in enumerate(batch):
                    results[i] = (labels[n], scores[n].float().cpu().numpy())
            else:
                labels = self.predictor.predict(images).to(torch.uint8).cpu().numpy()
                for n, i in enumerate(batch):
                    results[i] = labels[n]
        return results

    def colorize(self, labels: np.ndarray) -> Image.Image:
        """uint8 (H, W) labels -> palette ("P") image whose pixel values are the labels."""
        return colorize(labels, self.palette)

    def overlay(self, rgb: np.ndarray, labels: np.ndarray, alpha: float = 0.5) -> Image.Image:
        """The class colours blended over ``rgb`` (H, W, 3) with a legend of the classes present."""
        return overlay(rgb, labels, self.class_names, alpha, self.palette)

    def mask_png(self, labels: np.ndarray, source: str | None = None) -> bytes:
        """The palette PNG of ``labels`` (H, W), byte for byte what scripts/infer.py writes;
        ``source`` is the input it records (an iTXt chunk), None for none."""
        info = PngInfo()
        if source is not None:
            info.add_itxt(SOURCE_KEY, source)
        data = io.BytesIO()
        self.colorize(labels).save(data, format="PNG", compress_level=1, pnginfo=info)
        return data.getvalue()

    def overlay_jpeg(
        self, rgb: np.ndarray, labels: np.ndarray, alpha: float = 0.5, source: str | None = None
    ) -> bytes:
        """The overlay as scripts/infer.py writes it (JPEG quality 90, ``source`` recorded in
        the comment when given)."""
        options = {"comment": f"{SOURCE_KEY}={source}".encode()} if source is not None else {}
        data = io.BytesIO()
        self.overlay(rgb, labels, alpha).save(data, format="JPEG", quality=90, **options)
        return data.getvalue()


def _tensor_rgb(image: torch.Tensor) -> np.ndarray:
    if image.dim() != 3 or image.shape[0] != 3:
        raise ValueError(f"an image tensor must be (3, H, W), got {tuple(image.shape)}")
    image = image.detach().cpu()
    if image.is_floating_point():
        if not torch.isfinite(image).all():
            raise ValueError("a float image tensor holds NaN or infinite values")
        low, high = (float(v) for v in image.aminmax()) if image.numel() else (0.0, 1.0)
        if low < 0 or high > 1:
            raise ValueError(
                f"a float image tensor must hold values in [0, 1], got {low:.3g}..{high:.3g} "
                "(an ImageNet-normalised tensor? pass the image before normalisation)"
            )
        image = image.mul(255).round_().to(torch.uint8)
    elif image.dtype != torch.uint8:
        raise ValueError(f"an image tensor must be uint8 or float, got {image.dtype}")
    return image.permute(1, 2, 0).contiguous().numpy()


def _nonempty(rgb: np.ndarray) -> np.ndarray:
    if rgb.shape[0] == 0 or rgb.shape[1] == 0:
        raise ValueError(f"an image must be at least 1x1 pixel, got {rgb.shape[0]}x{rgb.shape[1]}")
    return rgb
