"""read_image / read_mask / read_sbd_mask: every mode comes out right, bad files fail clearly."""

from __future__ import annotations

import io
import warnings

import numpy as np
import pytest
from PIL import Image
from scipy.io import savemat

from segnet.data.classes import voc_palette
from segnet.data.images import (
    DataError,
    frame_count,
    read_image,
    read_mask,
    read_raw_mask,
    read_sbd_mask,
    require_same_size,
)

H, W = 20, 30


def _gradient() -> np.ndarray:
    """(H, W, 3) uint8 with distinct values per pixel and channel."""
    y, x = np.mgrid[0:H, 0:W]
    return np.stack([x * 8, y * 12, (x + y) * 5], axis=-1).astype(np.uint8)


def test_rgb_png_is_read_exactly(tmp_path):
    rgb = _gradient()
    Image.fromarray(rgb).save(tmp_path / "a.png")
    img = read_image(tmp_path / "a.png")
    assert img.mode == "RGB" and img.size == (W, H)
    np.testing.assert_array_equal(np.asarray(img), rgb)


def test_grayscale_is_replicated_to_three_channels(tmp_path):
    gray = _gradient()[..., 0]
    Image.fromarray(gray, mode="L").save(tmp_path / "g.png")
    out = np.asarray(read_image(tmp_path / "g.png"))
    assert out.shape == (H, W, 3)
    for c in range(3):
        np.testing.assert_array_equal(out[..., c], gray)


def test_cmyk_is_converted(tmp_path):
    # TIFF keeps CMYK losslessly: pure cyan+magenta ink = blue, full yellow = no blue.
    Image.new("CMYK", (W, H), (255, 255, 0, 0)).save(tmp_path / "blue.tif")
    Image.new("CMYK", (W, H), (0, 0, 255, 0)).save(tmp_path / "yellow.tif")
    assert read_image(tmp_path / "blue.tif").getpixel((3, 4)) == (0, 0, 255)
    assert read_image(tmp_path / "yellow.tif").getpixel((3, 4)) == (255, 255, 0)


def test_alpha_is_dropped_not_composited(tmp_path):
    rgba = np.dstack([_gradient(), np.zeros((H, W), np.uint8)])  # fully transparent
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "a.png")
    np.testing.assert_array_equal(np.asarray(read_image(tmp_path / "a.png")), _gradient())
    la = Image.new("LA", (W, H), (77, 0))
    la.save(tmp_path / "la.png")
    assert read_image(tmp_path / "la.png").getpixel((0, 0)) == (77, 77, 77)


def test_palette_with_transparency_converts_without_warning(tmp_path):
    img = Image.new("P", (W, H), 1)
    img.putpalette([0, 0, 0, 10, 200, 30] + [0] * 762)
    img.info["transparency"] = 1
    img.save(tmp_path / "p.png", transparency=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert read_image(tmp_path / "p.png").getpixel((5, 5)) == (10, 200, 30)


def test_16_bit_is_scaled_not_clipped(tmp_path):
    wide = np.zeros((H, W), np.uint16)
    wide[0, :4] = [0, 257, 257 * 128, 65535]
    wide[1, 0] = 128  # rounds to 0; 129 rounds to 1 (65535/255 = 257)
    wide[1, 1] = 129
    Image.fromarray(wide).save(tmp_path / "w.png")
    assert Image.open(tmp_path / "w.png").mode == "I;16"
    out = np.asarray(read_image(tmp_path / "w.png"))
    assert out[0, :4, 0].tolist() == [0, 1, 128, 255]
    assert out[1, :2, 0].tolist() == [0, 1]
    assert (out[..., 0] == out[..., 2]).all()


def test_32_bit_int_mode_is_scaled_and_clipped(tmp_path):
    wide = np.array([[0, 65535, 70000, -5]], dtype=np.int32)
    Image.fromarray(wide, mode="I").save(tmp_path / "i.tif")
    assert read_image(tmp_path / "i.tif").getpixel((1, 0)) == (255, 255, 255)
    assert np.asarray(read_image(tmp_path / "i.tif"))[0, :, 0].tolist() == [0, 255, 255, 0]


def test_exif_orientation_is_applied(tmp_path):
    # Stored 30x20 with a bright top-left block; orientation 6 = rotate 90 degrees clockwise.
    raw = np.zeros((H, W, 3), np.uint8)
    raw[:8, :8] = 255
    img = Image.fromarray(raw)
    exif = img.getexif()
    exif[0x0112] = 6
    img.save(tmp_path / "r.jpg", exif=exif, quality=95)
    out = np.asarray(read_image(tmp_path / "r.jpg"))
    assert out.shape == (W, H, 3)
    expected = np.rot90(raw, k=-1)
    assert np.abs(out.astype(int) - expected).max() < 40
    assert out[:8, -8:].mean() > 200 and out[:8, :8].mean() < 50


def _jpeg_bytes() -> bytes:
    buf = io.BytesIO()
    Image.fromarray(_gradient()).resize((300, 200)).save(buf, format="JPEG", quality=95)
    return buf.getvalue()


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (_jpeg_bytes()[:2000], "truncated"),
        (b"\xff\xd8\xff\xe0" + bytes(range(256)) * 8, "cannot decode"),
        (b"", "empty"),
        (b"just some text, not an image\n", "cannot identify"),
    ],
    ids=["truncated", "corrupt", "empty", "not-an-image"],
)
def test_bad_image_files_raise_data_error_naming_the_file(tmp_path, content, reason):
    path = tmp_path / "bad.jpg"
    path.write_bytes(content)
    with pytest.raises(DataError, match=reason) as info:
        read_image(path)
    assert str(path) in str(info.value)


def _textured_jpeg(mode: str = "RGB") -> bytes:
    """A 200x150 noisy JPEG: enough scan data that damage in its middle leaves markers intact."""
    noise = np.random.default_rng(0).integers(0, 256, (150, 200, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(noise).convert(mode).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def _overwrite_middle(data: bytes) -> bytes:
    """200 bytes of FF 00 FF 00 ... in the scan data: valid byte stuffing, garbage bits."""
    damaged = bytearray(data)
    middle = len(data) // 2
    damaged[middle : middle + 200] = b"\xff\x00" * 100
    return bytes(damaged)


@pytest.mark.parametrize(
    ("damage", "complaint"),
    [
        (_overwrite_middle, "Corrupt JPEG data: .* extraneous bytes before marker 0xd9"),
        # A cut download that still ends in an end-of-image marker.
        (lambda data: data[: len(data) * 2 // 3] + b"\xff\xd9", "premature end of data segment"),
    ],
    ids=["overwritten-scan-data", "truncated-then-end-marker"],
)
@pytest.mark.parametrize("mode", ["RGB", "L", "CMYK"])
def test_jpeg_damage_pillow_decodes_silently_is_an_error(tmp_path, damage, complaint, mode):
    path = tmp_path / "damaged.jpg"
    path.write_bytes(damage(_textured_jpeg(mode)))
    with Image.open(path) as img:  # the premise: Pillow gives pixels and no error
        img.load()
        assert img.size == (200, 150)
    with pytest.raises(DataError, match=complaint) as info:
        read_image(path)
    assert str(info.value).startswith(f"{path}: cannot decode image (corrupt or truncated JPEG")


@pytest.mark.parametrize(
    "rewrite",
    [lambda data: data.replace(b"\r\n", b"\n"), lambda data: data.replace(b"\n", b"\r\n")],
    ids=["crlf-to-lf", "lf-to-crlf"],
)
@pytest.mark.parametrize("reader", [read_image, read_raw_mask], ids=["image", "mask"])
def test_a_png_whose_line_endings_were_rewritten_is_named_with_the_fix(tmp_path, rewrite, reader):
    # As a real Roboflow export on GitHub arrived: every mask through git's text conversion.
    buf = io.BytesIO()
    Image.fromarray((_gradient()[..., 0] % 5).astype(np.uint8), mode="L").save(buf, format="PNG")
    path = tmp_path / "a_mask.png"
    path.write_bytes(rewrite(buf.getvalue()))
    with pytest.raises(DataError) as info:
        reader(path)
    assert str(info.value).startswith(f"{path}: a PNG whose line endings a text-mode copy")
    assert "fetch the original file again" in str(info.value)


@pytest.mark.parametrize("mode", ["RGB", "L", "CMYK"])
def test_intact_jpeg_pixels_are_pillows(tmp_path, mode):
    path = tmp_path / "ok.jpg"
    path.write_bytes(_textured_jpeg(mode))
    with Image.open(path) as img:
        expected = np.asarray(img.convert("RGB"))
    np.testing.assert_array_equal(np.asarray(read_image(path)), expected)


def test_frame_count_tells_that_only_the_first_frame_is_read(tmp_path):
    colours = [(200, 0, 0), (0, 200, 0), (0, 0, 200)]
    frames = [Image.new("RGB", (W, H), c) for c in colours]
    frames[0].save(tmp_path / "a.gif", save_all=True, append_images=frames[1:])
    frames[0].save(tmp_path / "a.tif", save_all=True, append_images=frames[1:2])
    frames[0].save(tmp_path / "one.png")
    assert frame_count(tmp_path / "a.gif") == 3
    assert frame_count(tmp_path / "a.tif") == 2
    assert frame_count(tmp_path / "one.png") == 1
    for name in ("a.gif", "a.tif"):
        assert read_image(tmp_path / name).getpixel((3, 4)) == (200, 0, 0)
    with pytest.raises(DataError, match="does not exist"):
        frame_count(tmp_path / "nope.gif")
    (tmp_path / "text.gif").write_bytes(b"not an image")
    with pytest.raises(DataError, match=f"{tmp_path}/text.gif: cannot read image"):
        frame_count(tmp_path / "text.gif")


def test_missing_file_raises_data_error(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        read_image(tmp_path / "nope.jpg")
    with pytest.raises(DataError, match="does not exist"):
        read_mask(tmp_path / "nope.png", 21)


def test_unknown_range_mode_is_refused(tmp_path):
    Image.fromarray(np.ones((H, W), np.float32), mode="F").save(tmp_path / "f.tif")
    with pytest.raises(DataError, match="unsupported image mode 'F'"):
        read_image(tmp_path / "f.tif")


def _palette_mask(labels: np.ndarray) -> Image.Image:
    img = Image.fromarray(labels.astype(np.uint8), mode="P")
    img.putpalette(voc_palette())
    return img


def test_palette_mask_gives_indices_not_colours(tmp_path):
    labels = np.zeros((H, W), np.uint8)
    labels[2:9, 3:12] = 15  # person: colour (192, 128, 128)
    labels[0, :] = 255
    _palette_mask(labels).save(tmp_path / "m.png")
    mask = read_mask(tmp_path / "m.png", 21)
    assert mask.dtype == np.uint8 and mask.shape == (H, W)
    np.testing.assert_array_equal(mask, labels)
    Image.fromarray(labels, mode="L").save(tmp_path / "l.png")
    np.testing.assert_array_equal(read_mask(tmp_path / "l.png", 21), labels)


def test_rgb_mask_is_refused(tmp_path):
    _palette_mask(np.full((H, W), 15)).convert("RGB").save(tmp_path / "m.png")
    with pytest.raises(DataError, match=r"colour image \(mode RGB\), not a palette") as info:
        read_mask(tmp_path / "m.png", 21)
    assert str(tmp_path / "m.png") in str(info.value)


def test_out_of_range_labels_are_listed(tmp_path):
    labels = np.zeros((H, W), np.uint8)
    labels[0, :3] = [21, 40, 255]
    labels[1, 0] = 40
    _palette_mask(labels).save(tmp_path / "m.png")
    with pytest.raises(
        DataError, match=r"outside 0\.\.20 and 255 \(ignore\): \[21, 40\] in 3 pixels"
    ):
        read_mask(tmp_path / "m.png", 21)
    # The same file is fine for a dataset with more classes.
    assert read_mask(tmp_path / "m.png", 41)[0, 1] == 40


def test_sbd_mask_round_trip_and_errors(tmp_path):
    labels = np.zeros((H, W), np.uint8)
    labels[5:10, 5:10] = 12
    savemat(tmp_path / "a.mat", {"GTcls": {"Segmentation": labels}})
    np.testing.assert_array_equal(read_sbd_mask(tmp_path / "a.mat", 21), labels)
    labels[0, 0] = 30
    savemat(tmp_path / "b.mat", {"GTcls": {"Segmentation": labels}})
    with pytest.raises(DataError, match=r"\[30\]"):
        read_sbd_mask(tmp_path / "b.mat", 21)
    (tmp_path / "c.mat").write_bytes(b"garbage")
    with pytest.raises(DataError, match="cannot read SBD mask"):
        read_sbd_mask(tmp_path / "c.mat", 21)


def test_require_same_size_names_both_files():
    image = Image.new("RGB", (W, H))
    require_same_size("i.jpg", image, "m.png", np.zeros((H, W), np.uint8))
    with pytest.raises(DataError, match=r"i\.jpg is 30x20 but its mask m\.png is 20x30"):
        require_same_size("i.jpg", image, "m.png", np.zeros((W, H), np.uint8))
