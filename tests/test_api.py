"""segnet.Segmenter: every input kind, batching, probabilities, errors, and the same labels and
bytes as scripts/infer.py (the one prediction path)."""

from __future__ import annotations

import inspect
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import CONFIG_DIR, assert_varied_labels, infer_in_process, write_inputs
from omegaconf import OmegaConf
from PIL import Image, ImageOps

from segnet import Segmenter
from segnet.data.images import DataError
from segnet.runtime import ModelFileError
from segnet.tasks.infer_inputs import find_inputs, plan_jobs

WINDOWED = {"max_pixels": 20000, "window": 64, "batch_size": 2}


@pytest.fixture(scope="module")
def seg(checkpoint) -> Segmenter:
    return Segmenter.from_checkpoint(checkpoint, device="cpu", **WINDOWED)


@pytest.fixture(scope="module")
def demo_images(tiny_voc_root) -> list[Path]:
    return sorted(Path(tiny_voc_root).glob("VOCdevkit/VOC2012/JPEGImages/*val*.jpg"))[:3]


def test_labels_and_files_are_those_of_infer_py_for_every_kind_of_input(seg, tmp_path):
    source, out = tmp_path / "in", tmp_path / "out"
    write_inputs(source)
    overrides = [f"{k}={v}" for k, v in WINDOWED.items()]
    summary = infer_in_process(seg.backend.info["source"], source, out, *overrides)
    assert summary.written == 12
    jobs = plan_jobs(find_inputs(str(source), out).files, out, save_probs=False)
    labels = seg.predict([job.source for job in jobs if job.mask.is_file()])
    done = [job for job in jobs if job.mask.is_file()]
    assert len(done) == 12
    assert_varied_labels(np.concatenate([m.ravel() for m in labels]))
    for job, predicted in zip(done, labels, strict=True):
        rgb = seg.to_rgb(job.source)
        assert job.mask.read_bytes() == seg.mask_png(predicted, source=job.marker), job.source
        assert job.overlay.read_bytes() == seg.overlay_jpeg(rgb, predicted, source=job.marker)
    # The big one went through sliding windows: it differs from a whole-image prediction.
    large = next(i for i, job in enumerate(done) if job.source.name == "large.png")
    whole = Segmenter(seg.backend, window=None).predict(source / "large.png")
    assert not np.array_equal(whole, labels[large])


def test_every_input_kind_gives_the_labels_of_its_file(seg, demo_images, tmp_path):
    path = demo_images[0]
    expected = seg.predict(path)
    assert_varied_labels(expected)
    rgb = np.asarray(Image.open(path).convert("RGB"))
    tensor = torch.from_numpy(rgb).permute(2, 0, 1)
    for same in (
        str(path),
        path.read_bytes(),
        Image.open(path),
        rgb,
        tensor,
        tensor.float() / 255,
        Image.fromarray(rgb).convert("RGBA"),
    ):
        assert np.array_equal(seg.predict(same), expected), type(same)
    # Other modes are converted as infer converts the same file.
    for mode in ("L", "P", "CMYK", "I;16"):
        image = Image.fromarray(rgb).convert("L" if mode == "I;16" else mode)
        if mode == "I;16":
            image = Image.fromarray(np.asarray(image).astype(np.uint16) * 257)
        file = tmp_path / f"{mode.replace(';', '')}.{'jpg' if mode == 'CMYK' else 'png'}"
        image.save(file)
        assert np.array_equal(seg.predict(Image.open(file)), seg.predict(file)), mode


def test_exif_orientation_is_applied_to_paths_and_pil_images(seg, demo_images, tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6  # shown rotated by 90 degrees
    with Image.open(demo_images[1]) as image:
        image.save(tmp_path / "rotated.jpg", exif=exif, quality=95)
    with Image.open(tmp_path / "rotated.jpg") as rotated:
        stored = rotated.size
        upright = np.asarray(ImageOps.exif_transpose(rotated).convert("RGB"))
    labels = seg.predict(tmp_path / "rotated.jpg")
    assert labels.shape == (stored[0], stored[1])  # (H, W) of the displayed picture
    assert np.array_equal(labels, seg.predict(Image.open(tmp_path / "rotated.jpg")))
    assert np.array_equal(labels, seg.predict((tmp_path / "rotated.jpg").read_bytes()))
    assert np.array_equal(labels, seg.predict(upright))


def test_a_list_is_batched_by_size_and_gives_what_one_by_one_gives(seg, demo_images):
    rgb = [np.asarray(Image.open(p).convert("RGB")) for p in demo_images]
    images = [rgb[0], rgb[0][:, ::-1].copy(), rgb[1][:40, :50].copy(), rgb[0]]
    calls = []
    backend = seg.backend
    counting = Segmenter(lambda_backend(backend, calls), window=None, batch_size=4)
    batched = counting.predict(images)
    assert [c[0] for c in calls] == [3, 1]  # the three same-size images in one forward pass
    one_by_one = Segmenter(backend, window=None)
    for image, labels in zip(images, batched, strict=True):
        assert labels.dtype == np.uint8 and labels.shape == image.shape[:2]
        assert np.array_equal(labels, one_by_one.predict(image))


class lambda_backend:  # noqa: N801 - used like a function
    """A backend that records the batch shape of every call to ``backend``."""

    def __init__(self, backend, calls: list) -> None:
        self.backend, self.calls = backend, calls
        self.name, self.device, self.info = backend.name, backend.device, backend.info
        self.num_classes, self.class_names = backend.num_classes, backend.class_names

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        self.calls.append(tuple(images.shape))
        return self.backend(images)


def test_probabilities_come_with_their_labels(seg, demo_images):
    labels, probs = seg.predict(demo_images[0], probs=True)
    assert probs.dtype == np.float32 and probs.shape == (seg.num_classes, *labels.shape)
    np.testing.assert_allclose(probs.sum(0), 1, atol=1e-5)
    assert np.array_equal(probs.argmax(0), labels)
    assert np.array_equal(labels, seg.predict(demo_images[0]))


def test_tta_scales_feed_the_backend_8_bit_images_of_the_scaled_size(seg, demo_images):
    calls = []
    scaled = Segmenter(lambda_backend(seg.backend, calls), scales=(0.5, 1.0), window=None)
    labels = scaled.predict(demo_images[0])
    height, width = labels.shape
    assert calls == [(1, 3, round(height * 0.5), round(width * 0.5)), (1, 3, height, width)]
    assert not np.array_equal(labels, seg.predict(demo_images[0]))  # the scale counts


@pytest.mark.parametrize(
    ("image", "error", "message"),
    [
        (np.zeros((8, 8, 3), np.float32), ValueError, "uint8 (H, W, 3)"),
        (np.zeros((8, 8), np.uint8), ValueError, "uint8 (H, W, 3)"),
        (np.zeros((0, 8, 3), np.uint8), ValueError, "at least 1x1"),
        (torch.zeros(1, 3, 8, 8), ValueError, "(3, H, W)"),
        (torch.full((3, 8, 8), -1.5), ValueError, "[0, 1]"),
        (torch.full((3, 8, 8), float("nan")), ValueError, "NaN"),
        (torch.zeros(3, 8, 8, dtype=torch.int32), ValueError, "uint8 or float"),
        (Image.new("F", (8, 8)), DataError, "unsupported image mode"),
        (b"\x89PNG", DataError, "image bytes: cannot decode image"),
        (b"", DataError, "image bytes: no data"),
        ({"not": "an image"}, ValueError, "cannot segment a dict"),
        ("no/such/file.png", DataError, "does not exist"),
    ],
)
def test_bad_input_is_one_clear_exception(seg, image, error, message):
    with pytest.raises(error, match=None) as caught:
        seg.predict(image)
    assert message in str(caught.value)


def test_a_truncated_file_or_pil_image_names_the_file(seg, demo_images, tmp_path):
    data = demo_images[0].read_bytes()
    Image.open(demo_images[0]).save(tmp_path / "whole.png")
    png = (tmp_path / "whole.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(png[: len(png) // 2])
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    for name in ("cut.png", "cut.jpg"):
        with pytest.raises(DataError, match=name):
            seg.predict(tmp_path / name)
        with pytest.raises(DataError, match="image bytes: cannot decode"):
            seg.predict((tmp_path / name).read_bytes())
    with pytest.raises(DataError, match="cut.png"):
        seg.predict(Image.open(tmp_path / "cut.png"))


def test_model_files_that_are_not_models_are_one_clear_error(tmp_path):
    (tmp_path / "empty.ckpt").write_bytes(b"")
    with pytest.raises(ModelFileError, match="empty.ckpt"):
        Segmenter.load(tmp_path / "empty.ckpt")
    with pytest.raises(ValueError, match="from_onnx"):
        Segmenter.from_checkpoint(tmp_path / "model.onnx")
    with pytest.raises(ValueError, match="from_checkpoint"):
        Segmenter.from_onnx(tmp_path / "empty.ckpt")


def test_the_defaults_are_those_of_infer_py():
    infer = OmegaConf.load(CONFIG_DIR / "infer.yaml")
    defaults = {name: p.default for name, p in inspect.signature(Segmenter).parameters.items()}
    assert defaults["flip"] == infer.tta.flip and list(defaults["scales"]) == infer.tta.scales
    for key in ("window", "overlap", "blend", "max_pixels", "batch_size"):
        assert defaults[key] == infer[key], key


def test_palette_and_class_names_describe_the_masks(seg, demo_images):
    labels = seg.predict(demo_images[0])
    mask = seg.colorize(labels)
    assert len(seg.palette) == len(seg.class_names) == seg.num_classes == 21
    for index in np.unique(labels):
        assert tuple(mask.getpalette()[3 * index : 3 * index + 3]) == seg.palette[index]


def test_importing_segmenter_loads_neither_lightning_nor_hydra(checkpoint, demo_images):
    code = (
        "import sys; from segnet import Segmenter; "
        f"Segmenter.load({str(checkpoint)!r}, 'cpu').predict({str(demo_images[0])!r}); "
        "print(sorted(m for m in ('lightning', 'pytorch_lightning', 'hydra', 'omegaconf', "
        "'matplotlib') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_a_checkpoint_copy_elsewhere_loads_with_its_hash(seg, checkpoint, tmp_path):
    copy = shutil.copy(checkpoint, tmp_path / "copy.ckpt")
    other = Segmenter.load(copy, "cpu")
    assert other.backend.info["source_sha256"] == seg.backend.info["source_sha256"]
    assert other.backend.info["backbone"] == "resnet18" and other.backend.name == "torch"
