"""Joint train/eval transforms and the eval collate: alignment, label validity, padding."""

from __future__ import annotations

import pickle

import pytest
import torch
import torch.nn.functional as nnf
from torchvision import tv_tensors

from segnet.data.classes import IGNORE_INDEX, voc_palette
from segnet.data.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    PadIfSmaller,
    RandomScale,
    eval_transforms,
    pad_collate,
    train_transforms,
)

PALETTE = torch.tensor(voc_palette(), dtype=torch.float32).view(256, 3)
LABELS = torch.tensor([0, 3, 7, 12, 15, 20])


def denormalize(image: torch.Tensor) -> torch.Tensor:
    """ImageNet-normalised (..., 3, H, W) -> float RGB in [0, 1] (not clamped)."""
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    return image * std + mean


def block_pattern(
    height: int, width: int, block: int, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random blocks of labels (some void); each pixel's colour is its label's VOC colour.

    Returns image uint8 (3, H, W) and mask uint8 (H, W); the image encodes the label.
    """
    g = torch.Generator().manual_seed(seed)
    choices = torch.cat([LABELS, torch.tensor([IGNORE_INDEX])])
    grid = (height // block + 1, width // block + 1)
    cells = choices[torch.randint(len(choices), grid, generator=g)]
    mask = cells.repeat_interleave(block, 0).repeat_interleave(block, 1)[:height, :width]
    image = PALETTE[mask].permute(2, 0, 1).round().to(torch.uint8)
    return image, mask.to(torch.uint8)


def colour_error(image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-pixel max channel distance (0..255) between the image and its label's colour."""
    rgb = denormalize(image) * 255
    expected = PALETTE[mask.clamp(max=255)].permute(2, 0, 1)
    return (rgb - expected).abs().amax(dim=0)


def interior(mask: torch.Tensor, radius: int = 1) -> torch.Tensor:
    """Labelled pixels whose (2r+1)^2 neighbourhood has one label.

    Radius 1 is enough for scales >= 0.5: the antialiased bilinear filter then reaches at
    most one output pixel across a label edge.
    """
    m = mask[None, None].float()
    k = 2 * radius + 1
    high = nnf.max_pool2d(m, k, stride=1, padding=radius)[0, 0]
    low = -nnf.max_pool2d(-m, k, stride=1, padding=radius)[0, 0]
    return (high == low) & (mask != IGNORE_INDEX)


def test_alignment_survives_scale_pad_crop_flip():
    torch.manual_seed(0)
    transform = train_transforms(crop_size=(56, 72), scale_range=(0.5, 2.0))
    for seed in range(12):
        image, mask = block_pattern(60, 84, block=12, seed=seed)
        out_image, out_mask = transform(tv_tensors.Image(image), tv_tensors.Mask(mask))
        assert out_image.shape == (3, 56, 72) and out_image.dtype == torch.float32
        assert out_mask.shape == (56, 72) and out_mask.dtype == torch.int64
        error = colour_error(out_image, out_mask)
        inner = interior(out_mask)
        assert inner.sum() > 100
        # Away from label edges the colour is exact up to rounding; a mask off by one pixel
        # (e.g. legacy "nearest" instead of "nearest-exact") fails this.
        assert error[inner].max() <= 2.0
        # On edges bilinear blending may differ, but most labelled pixels still match.
        labelled = out_mask != IGNORE_INDEX
        assert (error[labelled] <= 40).float().mean() > 0.85


@pytest.mark.parametrize("misalign", [lambda m: m.flip(-1), lambda m: m.roll(2, -2)])
def test_alignment_check_detects_a_misaligned_mask(misalign):
    image, mask = block_pattern(48, 64, block=12, seed=1)
    out_image, out_mask = eval_transforms()(image, misalign(mask))
    assert colour_error(out_image, out_mask)[interior(out_mask)].max() > 50


def test_plain_tensor_and_pil_masks_are_treated_as_masks():
    from torchvision.transforms.v2.functional import to_pil_image

    image, mask = block_pattern(40, 52, block=10, seed=2)
    transform = train_transforms(crop_size=(32, 40), scale_range=(0.7, 1.5))
    torch.manual_seed(3)
    for pil_mask in (mask, to_pil_image(mask[None])):
        out_image, out_mask = transform(image, pil_mask)
        assert out_mask.shape == (32, 40)
        assert set(out_mask.unique().tolist()) <= set(mask.unique().tolist())
        assert colour_error(out_image, out_mask)[interior(out_mask)].max() <= 2.0


def test_masks_keep_only_original_labels():
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    labels = torch.tensor([0, 10, 20])
    # Pixel noise: any interpolation would invent in-between labels such as 5 or 15.
    mask = labels[torch.randint(3, (70, 90), generator=g)].to(torch.uint8)
    image = torch.randint(0, 256, (3, 70, 90), dtype=torch.uint8, generator=g)
    transform = train_transforms(crop_size=(64, 64), scale_range=(0.5, 2.0))
    seen: set[int] = set()
    for _ in range(10):
        _, out_mask = transform(tv_tensors.Image(image), tv_tensors.Mask(mask))
        seen |= set(out_mask.unique().tolist())
    assert seen <= {0, 10, 20, IGNORE_INDEX}
    assert {0, 10, 20} <= seen


def test_small_image_is_padded_not_cropped():
    torch.manual_seed(0)
    image, mask = block_pattern(50, 60, block=10, seed=4)
    mask[mask == IGNORE_INDEX] = 3  # no void in the source: all 255 below is padding
    transform = train_transforms(crop_size=(64, 80), scale_range=(1.0, 1.0), hflip=False)
    for _ in range(4):
        out_image, out_mask = transform(tv_tensors.Image(image), tv_tensors.Mask(mask))
        assert out_mask.shape == (64, 80)
        pad = out_mask == IGNORE_INDEX
        assert int(pad.sum()) == 64 * 80 - 50 * 60
        assert denormalize(out_image)[:, pad].abs().max() < 1e-5  # image padded with 0
        rows = (~pad).any(1).nonzero().flatten()
        cols = (~pad).any(0).nonzero().flatten()
        top, left = int(rows[0]), int(cols[0])
        # Every source pixel survives, unchanged, at one offset.
        assert torch.equal(out_mask[top : top + 50, left : left + 60], mask.long())
        rgb = (denormalize(out_image[:, top : top + 50, left : left + 60]) * 255).round()
        assert torch.equal(rgb.to(torch.uint8), image)


def test_pad_if_smaller_leaves_large_images_alone():
    image = tv_tensors.Image(torch.ones(3, 40, 50, dtype=torch.uint8))
    mask = tv_tensors.Mask(torch.ones(40, 50, dtype=torch.uint8))
    out_image, out_mask = PadIfSmaller((30, 60))(image, mask)
    assert out_image.shape == (3, 40, 60) and out_mask.shape == (40, 60)
    assert int((out_mask == IGNORE_INDEX).sum()) == 40 * 10
    assert int((out_image == 0).sum()) == 3 * 40 * 10


def test_flip_happens_and_keeps_alignment():
    image, mask = block_pattern(32, 48, block=8, seed=5)
    transform = train_transforms(crop_size=(32, 48), scale_range=(1.0, 1.0))
    torch.manual_seed(0)
    outcomes = set()
    for _ in range(12):
        _, out_mask = transform(tv_tensors.Image(image), tv_tensors.Mask(mask))
        if torch.equal(out_mask, mask.long()):
            outcomes.add("same")
        elif torch.equal(out_mask, mask.long().flip(-1)):
            outcomes.add("flipped")
    assert outcomes == {"same", "flipped"}
    torch.manual_seed(0)
    no_flip = train_transforms(crop_size=(32, 48), scale_range=(1.0, 1.0), hflip=False)
    assert all(torch.equal(no_flip(image, mask)[1], mask.long()) for _ in range(6))


@pytest.mark.parametrize(
    ("scale", "base_size", "expected"),
    [((2.0, 2.0), None, (100, 160)), ((0.5, 0.5), None, (25, 40)), ((1.0, 1.0), 100, (100, 160))],
)
def test_random_scale_base_size(scale, base_size, expected):
    image = tv_tensors.Image(torch.zeros(3, 50, 80, dtype=torch.uint8))
    mask = tv_tensors.Mask(torch.zeros(50, 80, dtype=torch.uint8))
    out_image, out_mask = RandomScale(scale, base_size)(image, mask)
    assert tuple(out_image.shape[-2:]) == expected and tuple(out_mask.shape) == expected


def test_eval_transform_keeps_size_and_values():
    image, mask = block_pattern(37, 53, block=6, seed=6)
    out_image, out_mask = eval_transforms()(tv_tensors.Image(image), tv_tensors.Mask(mask))
    assert out_image.shape == (3, 37, 53) and out_image.dtype == torch.float32
    assert out_mask.dtype == torch.int64 and torch.equal(out_mask, mask.long())
    expected = (image.float() / 255 - torch.tensor(IMAGENET_MEAN).view(3, 1, 1)) / torch.tensor(
        IMAGENET_STD
    ).view(3, 1, 1)
    torch.testing.assert_close(out_image, expected)


def test_transforms_pickle_and_reproduce():
    image, mask = block_pattern(60, 70, block=10, seed=7)
    transform = train_transforms(crop_size=(40, 40))
    clone = pickle.loads(pickle.dumps(transform))
    torch.manual_seed(11)
    a = transform(image, mask)
    torch.manual_seed(11)
    b = clone(image, mask)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_pad_collate_shapes_and_values():
    small = (torch.full((3, 2, 3), 1.5), torch.ones(2, 3, dtype=torch.int64))
    large = (torch.full((3, 4, 2), -0.5), torch.full((4, 2), 7, dtype=torch.int64))
    images, masks = pad_collate([small, large])
    assert images.shape == (2, 3, 4, 3) and images.dtype == torch.float32
    assert masks.shape == (2, 4, 3) and masks.dtype == torch.int64
    assert torch.equal(images[0, :, :2, :3], small[0]) and images[0, :, 2:].abs().sum() == 0
    assert torch.equal(masks[0, :2, :3], small[1]) and (masks[0, 2:] == IGNORE_INDEX).all()
    assert torch.equal(images[1, :, :, :2], large[0]) and images[1, :, :, 2].abs().sum() == 0
    assert torch.equal(masks[1, :, :2], large[1]) and (masks[1, :, 2] == IGNORE_INDEX).all()


def test_mismatched_image_and_mask_raise():
    with pytest.raises(ValueError, match="differ in size"):
        eval_transforms()(torch.zeros(3, 10, 12, dtype=torch.uint8), torch.zeros(10, 11))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"crop_size": (320,)}, "crop_size"),
        ({"crop_size": (0, 480)}, "crop_size"),
        ({"crop_size": (320.0, 480)}, "crop_size"),
        ({"scale_range": (2.0, 0.5)}, "scale_range"),
        ({"scale_range": (0.0, 1.0)}, "scale_range"),
        ({"scale_range": (1.0,)}, "scale_range"),
        ({"base_size": 0}, "base_size"),
    ],
)
def test_bad_arguments_raise(kwargs, message):
    with pytest.raises(ValueError, match=message):
        train_transforms(**kwargs)
