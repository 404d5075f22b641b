"""Whole-image, sliding-window and TTA prediction, with tiny deterministic models."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from segnet.data.transforms import eval_transforms
from segnet.predict.predictor import Predictor, tta_probabilities
from segnet.predict.sliding_window import blend_weights, sliding_window_bands, window_starts
from segnet.runtime.eager import PixelFCN


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


class WindowPositionModel(nn.Module):
    """Logits = a pointwise function of the pixel + a ramp over the position inside the model's
    input. Overlapping windows see a pixel at different positions and disagree about it, so the
    blend weights decide the result; the pointwise part catches crops taken from the wrong place.
    """

    def __init__(self, num_classes: int = 3) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, num_classes, kernel_size=1)

    def forward(self, x):
        h, w = x.shape[-2:]
        ys = torch.linspace(-1, 1, h, device=x.device)[:, None].expand(h, w)
        xs = torch.linspace(-1, 1, w, device=x.device)[None, :].expand(h, w)
        ramps = torch.stack([3 * ys, 3 * xs, -3 * (xs + ys)])[: self.conv.out_channels]
        return self.conv(x) + ramps


def gaussian(n: int) -> torch.Tensor:
    """nnU-Net's profile, written out here: sigma = n / 8 about the window's centre."""
    x = torch.arange(n, dtype=torch.float64) - (n - 1) / 2
    return torch.exp(-0.5 * (x / (n / 8)) ** 2)


def reference_blend(probs_of, images, window, overlap, blend):
    """Full-size weighted average of every window's probabilities, window by window."""
    _, _, height, width = images.shape
    win_h, win_w = window
    if blend == "gaussian":
        weight = torch.outer(gaussian(win_h), gaussian(win_w)).clamp_min(1e-4)
    else:
        weight = torch.ones(win_h, win_w, dtype=torch.float64)
    num = den = 0
    for top in window_starts(height, win_h, overlap):
        for left in window_starts(width, win_w, overlap):
            rows, cols = slice(top, top + win_h), slice(left, left + win_w)
            probs = probs_of(images[:, :, rows, cols]).double()
            num = num + F.pad(
                probs * weight, (left, width - left - win_w, top, height - top - win_h)
            )
            den = den + F.pad(weight, (left, width - left - win_w, top, height - top - win_h))
    return (num / den).float()


def flip_average(model, images):
    """What flip TTA promises: the mean of the plain and the mirrored-back mirrored softmax."""
    return (model(images).softmax(1) + model(images.flip(-1)).flip(-1).softmax(1)) / 2


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


@pytest.mark.parametrize("blend", ["gaussian", "uniform"])
@pytest.mark.parametrize("flip", [False, True])
def test_windows_are_blended_with_the_documented_weights(blend, flip):
    model = WindowPositionModel()
    images = torch.randn(2, 3, 37, 53)
    window, overlap = (16, 20), 0.5
    # 3 windows per batch: batches straddle rows of windows and the two images
    predictor = Predictor(
        model, flip=flip, window=window, overlap=overlap, blend=blend, batch_size=3
    )
    with torch.no_grad():
        windowed = predictor.probabilities(images)
        if flip:
            expected = reference_blend(lambda x: flip_average(model, x), images, window, 0.5, blend)
        else:
            expected = reference_blend(lambda x: model(x).softmax(1), images, window, 0.5, blend)
        other = "uniform" if blend == "gaussian" else "gaussian"
        alternative = reference_blend(lambda x: model(x).softmax(1), images, window, 0.5, other)
    torch.testing.assert_close(windowed, expected, rtol=0, atol=1e-5)
    # The weights matter here: the other blend is far off (so is flip TTA left out or added).
    assert (windowed - alternative).abs().max() > 0.05


def test_bands_stream_the_full_probability_map_before_the_last_window():
    model = WindowPositionModel()
    images = torch.randint(0, 256, (1, 3, 61, 45), dtype=torch.uint8)
    predictor = Predictor(
        PixelFCN(model), window=(16, 16), overlap=0.25, max_pixels=16 * 16, batch_size=2
    )
    calls: list[tuple[int, int]] = []
    bands, windows_done_at_band = [], []
    for top, band in predictor.probability_bands(images, progress=lambda *c: calls.append(c)):
        bands.append((top, band.clone()))  # a band is a view, valid until the next one is made
        windows_done_at_band.append(calls[-1][0])
    with torch.no_grad():
        normalised = eval_transforms()(images[0], torch.zeros(61, 45, dtype=torch.uint8))[0]
        expected = reference_blend(
            lambda x: model(x).softmax(1), normalised[None], (16, 16), 0.25, "gaussian"
        )
    heights = [band.shape[2] for _, band in bands]
    assert [top for top, _ in bands] == [sum(heights[:i]) for i in range(len(bands))]
    assert len(bands) == 5 and max(heights) <= 16  # one band of windows in memory at a time
    torch.testing.assert_close(torch.cat([b for _, b in bands], 2), expected, atol=1e-5, rtol=0)
    # 5 x 4 windows in batches of 2: progress after each batch, and bands as soon as they are final
    assert calls == [(done, 20) for done in range(2, 21, 2)]
    assert windows_done_at_band == [4, 8, 12, 16, 20]


def test_a_whole_image_reports_progress_as_one_window():
    calls = []
    bands = Predictor(pointwise_model()).probability_bands(
        torch.randn(1, 3, 8, 8), lambda *c: calls.append(c)
    )
    assert [top for top, _ in bands] == [0] and calls == [(1, 1)]


def test_flip_tta_averages_with_the_mirrored_prediction_mirrored_back():
    model = context_model()
    images = torch.randn(2, 3, 24, 31)
    with torch.no_grad():
        expected = flip_average(model, images)
        plain = model(images).softmax(1)
    flipped = Predictor(model, flip=True).probabilities(images)
    torch.testing.assert_close(flipped, expected, rtol=0, atol=1e-6)
    assert (flipped - plain).abs().max() > 0.05  # the model is asymmetric: flip TTA matters
    labels = Predictor(model, flip=True).predict(images)
    assert torch.equal(labels, expected.argmax(1))


def test_multi_scale_averages_probabilities_of_logits_resized_back_to_full_size():
    model = ShapeRecorder(context_model())
    images = torch.randn(2, 3, 30, 41)
    with torch.no_grad():
        probs = tta_probabilities(model, images, flip=True, scales=(0.5, 1.0, 1.25))
    assert model.sizes == [(15, 20), (15, 20), (30, 41), (30, 41), (38, 51), (38, 51)]
    expected = 0
    with torch.no_grad():
        for size in [(15, 20), (30, 41), (38, 51)]:
            scaled = F.interpolate(images, size=size, mode="bilinear", align_corners=False)
            for logits in (model.model(scaled), model.model(scaled.flip(-1)).flip(-1)):
                back = F.interpolate(logits, size=(30, 41), mode="bilinear", align_corners=False)
                expected = expected + back.softmax(1) / 6
        single = tta_probabilities(model.model, images, flip=True)
    torch.testing.assert_close(probs, expected, rtol=0, atol=1e-6)
    assert (probs - single).abs().max() > 0.05  # the scales change the answer


def test_uint8_images_are_normalised_exactly_like_the_eval_transforms():
    model = context_model()
    images = torch.randint(0, 256, (1, 3, 17, 19), dtype=torch.uint8)
    transformed, _ = eval_transforms()(images[0], torch.zeros(17, 19, dtype=torch.uint8))
    from_uint8 = Predictor(PixelFCN(model)).probabilities(images)
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
