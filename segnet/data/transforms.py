"""Joint image/mask transforms for training and evaluation, and the eval collate.

Built on ``torchvision.transforms.v2``: the image travels as ``tv_tensors.Image`` and the
labels as ``tv_tensors.Mask``, so every geometric op dispatches per type and the mask is
only ever resampled with nearest-neighbour (no interpolated, i.e. invented, labels).

Training follows torchvision's ``references/segmentation`` recipe: random scale, pad if
smaller than the crop, random crop, horizontal flip, float + ImageNet normalisation.
Images smaller than the crop are padded (image 0, mask 255 = ignore), never dropped.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import InterpolationMode
from torchvision.transforms.v2 import functional as F

from segnet.data.classes import IGNORE_INDEX

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)


def check_crop_size(crop_size: Sequence[int]) -> tuple[int, int]:
    """``crop_size`` as ``(height, width)``; ValueError unless it is two positive ints."""
    if (
        isinstance(crop_size, str)
        or len(crop_size) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in crop_size)
    ):
        raise ValueError(
            f"crop_size must be two positive integers [height, width], got {crop_size!r}"
        )
    return int(crop_size[0]), int(crop_size[1])


def check_scale_range(scale_range: Sequence[float]) -> tuple[float, float]:
    """``scale_range`` as ``(low, high)``; ValueError unless ``0 < low <= high``."""
    if isinstance(scale_range, str) or len(scale_range) != 2:
        raise ValueError(f"scale_range must be two numbers [low, high], got {scale_range!r}")
    low, high = (float(v) for v in scale_range)
    if not 0 < low <= high:
        raise ValueError(f"scale_range must satisfy 0 < low <= high, got {scale_range!r}")
    return low, high


class RandomScale(nn.Module):
    """Resize image and mask by one random factor drawn uniformly from ``scale_range``.

    "Base size": with ``base_size=None`` (default) the factor is relative to the image's own
    size, so a 500x375 VOC image becomes 250x188 .. 1000x750 for (0.5, 2.0). With an int,
    the image's short side goes to ``factor * base_size`` (torchvision's segmentation
    reference uses base 520), which evens out datasets whose image sizes vary a lot.

    Image: bilinear with antialiasing. Mask: nearest-exact, which samples at pixel centres
    just as the bilinear image does, so labels stay aligned with the pixels they describe.
    Randomness comes from torch's global generator, which DataLoader seeds per worker.
    """

    def __init__(self, scale_range: Sequence[float] = (0.5, 2.0), base_size: int | None = None):
        super().__init__()
        self.scale_range = check_scale_range(scale_range)
        if base_size is not None and (isinstance(base_size, bool) or base_size <= 0):
            raise ValueError(f"base_size must be a positive int or None, got {base_size!r}")
        self.base_size = base_size

    def extra_repr(self) -> str:
        return f"scale_range={self.scale_range}, base_size={self.base_size}"

    def forward(self, image: tv_tensors.Image, mask: tv_tensors.Mask):
        height, width = image.shape[-2:]
        factor = float(torch.empty(()).uniform_(*self.scale_range))
        if self.base_size is not None:
            factor *= self.base_size / min(height, width)
        size = [max(1, round(height * factor)), max(1, round(width * factor))]
        image = F.resize(image, size, interpolation=InterpolationMode.BILINEAR, antialias=True)
        mask = F.resize(mask, size, interpolation=InterpolationMode.NEAREST_EXACT)
        return image, mask


class PadIfSmaller(nn.Module):
    """Pad image and mask up to at least ``size`` (h, w); larger sides are left alone.

    The image lands at a random offset inside the padded canvas (torchvision's
    ``RandomCrop(pad_if_needed=True)`` pads both sides by the full deficit and then may crop
    real pixels away while keeping padding; this keeps every pixel). Fill is per type:
    image 0, mask 255 (ignored by the loss and the metrics).
    """

    fill = {tv_tensors.Image: 0, tv_tensors.Mask: IGNORE_INDEX}

    def __init__(self, size: Sequence[int]):
        super().__init__()
        self.size = check_crop_size(size)

    def extra_repr(self) -> str:
        return f"size={self.size}, fill=(image 0, mask {IGNORE_INDEX})"

    def forward(self, image: tv_tensors.Image, mask: tv_tensors.Mask):
        height, width = image.shape[-2:]
        pad_h, pad_w = max(0, self.size[0] - height), max(0, self.size[1] - width)
        if pad_h == 0 and pad_w == 0:
            return image, mask
        top = int(torch.randint(0, pad_h + 1, ()))
        left = int(torch.randint(0, pad_w + 1, ()))
        padding = [left, top, pad_w - left, pad_h - top]
        image = F.pad(image, padding, fill=self.fill[tv_tensors.Image])
        mask = F.pad(mask, padding, fill=self.fill[tv_tensors.Mask])
        return image, mask


class JointTransform:
    """Runs a v2 pipeline on ``(image, mask)`` and returns plain tensors.

    Inputs may be tv_tensors, plain tensors or PIL images: they are wrapped as
    ``Image``/``Mask`` first, because v2 would otherwise treat a plain-tensor mask as a
    second image (resampled bilinearly) or pass it through untouched.

    Returns ``image`` float32 (3, h, w) normalised, ``mask`` int64 (h, w).
    """

    def __init__(self, pipeline: v2.Compose):
        self.pipeline = pipeline

    def __call__(self, image, mask) -> tuple[Tensor, Tensor]:
        image = tv_tensors.Image(image)
        mask = tv_tensors.Mask(mask)
        if mask.ndim == 3 and mask.shape[0] == 1:  # a PIL mask arrives as (1, H, W)
            mask = tv_tensors.Mask(mask[0])
        if image.shape[-2:] != mask.shape[-2:]:
            raise ValueError(
                f"image {tuple(image.shape[-2:])} and mask {tuple(mask.shape[-2:])} differ in size"
            )
        return self.pipeline(image, mask)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.pipeline!r})"


def _to_float_normalised() -> list[nn.Module]:
    return [
        v2.ToDtype({tv_tensors.Image: torch.float32, tv_tensors.Mask: torch.int64}, scale=True),
        v2.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        v2.ToPureTensor(),
    ]


def displayed(image: Tensor) -> Tensor:
    """The inverse of the normalisation, for pictures: float32 (3, H, W) as the network sees it
    -> uint8 (H, W, 3) RGB, rounded. An image that came through :func:`eval_transforms` comes
    back as the decoded pixels (the round trip errs by far less than half a level); padding
    (0 before the normalisation) comes back black."""
    mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float32, device=image.device).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=torch.float32, device=image.device).view(3, 1, 1)
    rgb = (image.float() * std + mean) * 255
    return rgb.round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).cpu()


def train_transforms(
    crop_size: Sequence[int] = (320, 480),
    scale_range: Sequence[float] = (0.5, 2.0),
    hflip: bool = True,
    base_size: int | None = None,
) -> JointTransform:
    """Training augmentation: scale, pad-if-smaller, random crop (h, w), flip, normalise.

    Every output has exactly ``crop_size``: image float32 (3, h, w), mask int64 (h, w).
    Geometry runs on uint8 before the float conversion, which is cheaper.
    """
    crop = check_crop_size(crop_size)
    steps: list[nn.Module] = [
        RandomScale(scale_range, base_size),
        PadIfSmaller(crop),
        v2.RandomCrop(crop),
    ]
    if hflip:
        steps.append(v2.RandomHorizontalFlip(p=0.5))
    return JointTransform(v2.Compose(steps + _to_float_normalised()))


def eval_transforms() -> JointTransform:
    """Evaluation: the whole image at its own size, normalised; mask values unchanged."""
    return JointTransform(v2.Compose(_to_float_normalised()))


def pad_collate(batch: Sequence[tuple[Tensor, Tensor]]) -> tuple[Tensor, Tensor]:
    """Collate images of different sizes by padding to the largest at the bottom/right.

    ``batch``: ``[(image (3, h_i, w_i), mask (h_i, w_i)), ...]``. Returns images
    (N, 3, Hmax, Wmax) padded with 0 and masks int64 (N, Hmax, Wmax) padded with 255, so
    padding never counts in the loss or the metrics.
    """
    if len(batch) == 0:
        raise ValueError("pad_collate got an empty batch")
    height = max(image.shape[-2] for image, _ in batch)
    width = max(image.shape[-1] for image, _ in batch)
    first = batch[0][0]
    images = torch.zeros(len(batch), first.shape[0], height, width, dtype=first.dtype)
    masks = torch.full((len(batch), height, width), IGNORE_INDEX, dtype=torch.int64)
    for i, (image, mask) in enumerate(batch):
        h, w = image.shape[-2:]
        images[i, :, :h, :w] = image
        masks[i, :h, :w] = mask
    return images, masks
