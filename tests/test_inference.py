"""Whole-image, sliding-window and TTA prediction, with tiny deterministic models."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from segnet.data.transforms import eval_transforms
from segnet.inference import (
    Predictor,
    blend_weights,
    sliding_window_bands,
    tta_probabilities,
    window_starts,
)


def pointwise_model(num_classes: int = 5) -> nn.Module:
    """Each pixel's logits depend on that pixel alone, so windows cannot change them."""
    torch.manual_seed(0)
    return nn.Conv2d(3, num_classes, kernel_size=1).eval()


def context_model(num_classes: int = 5) -> nn.Module:
    """Logits depend on a 5x5 neighbourhood, with a left/right-asymmetric kernel."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, num_classes, 3, padding=1)
    ).eval()


class ShapeRecorder(nn.Module):
    """Wraps a model and records the spatial size of every input it sees."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.sizes: list[tuple[int, int]] = []

    def forward(self, x):
        self.sizes.append(tuple(x.shape[-2:]))
        return self.model(x)


@pytest.mark.parametrize(
    ("size", "window", "overlap", "expected"),
    [
        (100, 100, 0.5, [0]),
        (50, 64, 0.3, [0]),
        (10, 4, 0.5, [0, 2, 4, 6]),
        (11, 4, 0.5, [0, 2, 4, 5, 7]),
        (10, 4, 0.0, [0, 3, 6]),
    ],
)
def test_window_starts_cover_the_axis_flush_with_both_ends(size, window, overlap, expected):
    starts = window_starts(size, window, overlap)
    assert starts == expected
    assert starts[0] == 0 and min(size, starts[-1] + window) == size
    for a, b in zip(starts, starts[1:], strict=False):
        assert window - (b - a) >= overlap * window  # at least the asked overlap, no gap


def test_blend_weights_peak_in_the_centre_and_never_vanish():
    weights = blend_weights(9, 7, "gaussian")
    assert weights.shape == (9, 7)
    assert weights.argmax().item() == 4 * 7 + 3 and weights.max().item() == pytest.approx(1.0)
    assert weights.min().item() == pytest.approx(1e-4)
    assert torch.equal(blend_weights(3, 2, "uniform"), torch.ones(3, 2))
    with pytest.raises(ValueError, match="blend"):
        blend_weights(3, 3, "triangle")


@pytest.mark.parametrize("blend", ["gaussian", "uniform"])
@pytest.mark.parametrize(("window", "overlap"), [((16, 16), 0.5), ((7, 13), 0.25), ((40, 8), 0.0)])
def test_sliding_window_of_a_pointwise_model_equals_whole_image(blend, window, overlap):
    model = pointwise_model()
    images = torch.randn(2, 3, 37, 29)
    with torch.no_grad():
        whole = model(images).softmax(1)
        bands = [
            (top, band.clone())  # a band is a view, valid until the next one is made
            for top, band in sliding_window_bands(
                lambda x: model(x).softmax(1), images, window, overlap, blend, batch_size=3
            )
        ]
    tops = [top for top, _ in bands]
    heights = [band.shape[2] for _, band in bands]
    assert tops == [sum(heights[:i]) for i in range(len(bands))] and sum(heights) == 37
    assert max(heights) <= window[0]  # memory is one band of windows, not the whole image
    torch.testing.assert_close(torch.cat([b for _, b in bands], 2), whole, rtol=0, atol=1e-6)


def test_image_that_fits_one_window_equals_whole_image_exactly():
    model = context_model()
    images = torch.randn(1, 3, 20, 30)
    whole = Predictor(model).probabilities(images)
    windowed = Predictor(model, window=32, max_pixels=0).probabilities(images)
    torch.testing.assert_close(windowed, whole, rtol=0, atol=1e-6)


def test_large_image_through_windows_has_full_shape_and_matches_in_the_interior():
    model = context_model(num_classes=4)
    images = torch.randint(0, 256, (1, 3, 150, 97), dtype=torch.uint8)
    predictor = Predictor(model, window=(48, 40), overlap=0.5, max_pixels=64 * 64, batch_size=2)
    assert predictor.uses_windows(150, 97) and not predictor.uses_windows(64, 64)
    labels = predictor.predict(images)
    assert labels.shape == (1, 150, 97) and labels.dtype == torch.int64
    probs = predictor.probabilities(images)
    torch.testing.assert_close(probs.sum(1), torch.ones(1, 150, 97))
    whole = Predictor(model).probabilities(images)
    # Away from window rims (the 5x5 receptive field sees zero padding there) they agree.
    torch.testing.assert_close(
        probs[..., 60:90, 45:55], whole[..., 60:90, 45:55], atol=0.05, rtol=0
    )


def test_flip_tta_on_a_symmetric_image_is_exactly_symmetric():
    model = context_model()
    half = torch.randn(1, 3, 24, 16)
    images = torch.cat([half, half.flip(-1)], dim=-1)
    plain = Predictor(model).probabilities(images)
    assert not torch.equal(plain, plain.flip(-1))  # the model itself is not symmetric
    flipped = Predictor(model, flip=True).probabilities(images)
    assert torch.equal(flipped, flipped.flip(-1))
    labels = Predictor(model, flip=True).predict(images)
    assert torch.equal(labels, labels.flip(-1))


def test_multi_scale_resizes_the_image_and_brings_logits_back_to_full_size():
    model = ShapeRecorder(context_model())
    images = torch.randn(2, 3, 30, 41)
    with torch.no_grad():
        probs = tta_probabilities(model, images, flip=True, scales=(0.5, 1.0, 1.25))
    assert probs.shape == (2, 5, 30, 41)
    assert model.sizes == [(15, 20), (15, 20), (30, 41), (30, 41), (38, 51), (38, 51)]
    torch.testing.assert_close(probs.sum(1), torch.ones(2, 30, 41))


def test_uint8_images_are_normalised_exactly_like_the_eval_transforms():
    model = context_model()
    images = torch.randint(0, 256, (1, 3, 17, 19), dtype=torch.uint8)
    transformed, _ = eval_transforms()(images[0], torch.zeros(17, 19, dtype=torch.uint8))
    from_uint8 = Predictor(model).probabilities(images)
    from_float = Predictor(model).probabilities(transformed[None])
    assert torch.equal(from_uint8, from_float)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"window": 0}, "window"),
        ({"window": [4, 4, 4]}, "window"),
        ({"overlap": 1.0}, "overlap"),
        ({"blend": "max"}, "blend"),
        ({"scales": []}, "scales"),
        ({"batch_size": 0}, "batch_size"),
    ],
)
def test_bad_settings_are_rejected_by_name(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Predictor(pointwise_model(), **kwargs)
