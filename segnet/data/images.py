"""Robust decoding of dataset images and label masks.

Every reader forces the full decode, so a truncated, corrupt, empty or non-image file fails
here with a :class:`DataError` naming the file, not later as a silently grey image or an
obscure error inside a DataLoader worker.

JPEGs are decoded by libjpeg-turbo through ``simplejpeg`` in strict mode: libjpeg reports
damaged scan data ("Corrupt JPEG data: 168 extraneous bytes before marker 0xd9", "premature
end of data segment") only as *warnings*, which Pillow's decoder discards (its message hook is
a no-op), so Pillow returns such a file with garbage in its lower part and no error. Strict
mode turns those warnings into errors, at no cost in speed (the same library does the work).
"""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import numpy as np
import simplejpeg
from PIL import Image, ImageOps


class DataError(ValueError):
    """Bad data on disk; the message names the file and says what is wrong."""


# 16-bit and 32-bit integer modes: scaled from 0..65535 to 0..255 (Pillow's own
# conversion clips them at 255 instead, which turns almost every pixel white).
_WIDE_INT_MODES = ("I", "I;16", "I;16L", "I;16B", "I;16N")
# Modes Pillow converts to RGB correctly by itself; alpha (LA, PA, RGBA) is dropped.
_RGB_CONVERTIBLE_MODES = ("1", "L", "LA", "P", "PA", "RGB", "RGBA", "RGBX", "CMYK", "YCbCr")
_MASK_MODES = ("P", "L", "I", "I;16", "I;16L", "I;16B", "I;16N")


def _open_decoded(path: str | Path) -> Image.Image:
    """Open ``path`` and decode every pixel, turning any failure into a DataError."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file does not exist")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: file is empty")
    return _decoded(path, path.read_bytes)


def _decoded(source: Path | io.BytesIO, data: Callable[[], bytes], name=None) -> Image.Image:
    """Decode every pixel of the image in ``source`` (``data()`` gives its bytes, read only
    for a JPEG or a failure), EXIF orientation applied; any failure is a DataError naming
    ``name``."""
    name = source if name is None else name
    try:
        with Image.open(source) as img:
            if img.format in _JPEG_FORMATS:
                img = _decode_jpeg(name, data(), img)
            else:
                img.load()
            return ImageOps.exif_transpose(img)
    except DataError:
        raise
    # Pillow's decoders report bad bytes as OSError, SyntaxError, ValueError, EOFError or
    # struct.error depending on the format; all of them mean "this file is broken".
    except Exception as err:
        raise _decode_failure(name, data, err) from err


# PNG's signature (89 50 4E 47 0D 0A 1A 0A) holds CR LF and LF so that a copy which rewrites
# line endings is recognised (PNG spec, "Rationale: PNG file signature"): CRLF -> LF, LF -> CRLF.
_PNG_SIGNATURES_WITH_LINE_ENDINGS_REWRITTEN = (b"\x89PNG\n\x1a\n", b"\x89PNG\r\r\n\x1a\r\n")


def _decode_failure(name, data: Callable[[], bytes], err: Exception) -> DataError:
    """The DataError for a file Pillow failed on; a PNG mangled by a text-mode copy (a real
    dataset on GitHub lost every mask that way) is named as such, with the fix."""
    try:
        head = data()[:10]
    except OSError:
        head = b""
    if head.startswith(_PNG_SIGNATURES_WITH_LINE_ENDINGS_REWRITTEN):
        return DataError(
            f"{name}: a PNG whose line endings a text-mode copy rewrote (its signature has \\n "
            "where \\r\\n belongs, or the reverse; its pixels are damaged the same way): git "
            "without '*.png binary' in .gitattributes, core.autocrlf or FTP ASCII mode; fetch "
            "the original file again"
        )
    return DataError(f"{name}: cannot decode image ({type(err).__name__}: {err})")


def decode_image(data: bytes, name: str = "image") -> Image.Image:
    """An image file's bytes (an upload, say) as :func:`read_image` reads a file: 8-bit RGB,
    EXIF applied, JPEG decoded strictly; errors name ``name``.

    Raises:
        DataError: empty, truncated, corrupt or non-image data, or an unknown mode.
    """
    if not data:
        raise DataError(f"{name}: no data (empty)")
    return rgb_image(_decoded(io.BytesIO(data), lambda: data, name), name)


# MPO (a camera's multi-picture JPEG) holds its first picture as an ordinary JPEG stream;
# libjpeg stops at that picture's end marker.
_JPEG_FORMATS = ("JPEG", "MPO")


def _decode_jpeg(path: Path | str, data: bytes, img: Image.Image) -> Image.Image:
    """Decode the JPEG that Pillow opened as ``img`` (header read) with libjpeg's warnings as
    errors. L and RGB files are decoded by libjpeg-turbo directly; other modes (CMYK, YCCK:
    Pillow knows Adobe's inverted CMYK) are checked by it, then decoded by Pillow."""
    try:
        if img.mode in ("L", "RGB"):
            space = "GRAY" if img.mode == "L" else "RGB"
            pixels = simplejpeg.decode_jpeg(data, colorspace=space, strict=True)
            decoded = Image.fromarray(pixels[..., 0] if img.mode == "L" else pixels)
            decoded.info = dict(img.info)  # EXIF/XMP orientation and ICC profile
            return decoded
        simplejpeg.decode_jpeg(data, colorspace="CMYK", strict=True)
    except ValueError as err:
        raise DataError(f"{path}: cannot decode image (corrupt or truncated JPEG: {err})") from err
    img.load()
    return img


def frame_count(path: str | Path) -> int:
    """How many frames or pages ``path`` holds (animated GIF/PNG/WebP, multi-page TIFF).

    A camera's MPO counts as 1: its second picture is a preview or depth map of the first.

    :func:`read_image` returns the first one only; a caller that got more than 1 here should
    say so. Reads the header and frame index only, not the pixels.

    Raises:
        DataError: missing, empty or non-image file.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file does not exist")
    try:
        with Image.open(path) as img:
            return 1 if img.format == "MPO" else int(getattr(img, "n_frames", 1))
    except Exception as err:  # as in _open_decoded: any Pillow error means a broken file
        raise DataError(f"{path}: cannot read image ({type(err).__name__}: {err})") from err


def read_image(path: str | Path) -> Image.Image:
    """Read an image file as an 8-bit RGB ``PIL.Image`` of size (W, H).

    - EXIF orientation is applied, so the pixels come out the way a viewer shows them.
    - Grayscale (1, L), palette (P), CMYK and YCbCr are converted by Pillow.
    - Alpha (LA, PA, RGBA) is dropped, not composited: the stored colours are kept, as
      ``Image.convert("RGB")`` (and so torchvision's own readers) would give them.
    - 16-bit images (I;16, I) are scaled 0..65535 -> 0..255 with rounding, and replicated
      to the three channels.

    Raises:
        DataError: missing, empty, truncated, corrupt or non-image file, or a mode (e.g.
            float "F") whose value range is unknown.
    """
    return rgb_image(_open_decoded(path), path)


def rgb_image(img: Image.Image, name: str | Path) -> Image.Image:
    """A decoded ``img`` as 8-bit RGB, converted as :func:`read_image` describes (``name``
    appears in the error).

    Raises:
        DataError: a mode (e.g. float "F") whose value range is unknown.
    """
    if img.mode in _WIDE_INT_MODES:
        wide = np.clip(np.asarray(img, dtype=np.int64), 0, 65535)
        gray = ((wide * 255 + 32767) // 65535).astype(np.uint8)
        return Image.fromarray(gray, mode="L").convert("RGB")
    if img.mode == "P" and "transparency" in img.info:
        # Converting straight to RGB warns about the transparency; go through RGBA.
        img = img.convert("RGBA")
    if img.mode not in _RGB_CONVERTIBLE_MODES:
        raise DataError(f"{name}: unsupported image mode {img.mode!r}")
    return img.convert("RGB")


def _check_labels(path: str | Path, labels: np.ndarray, num_classes: int, ignore_index: int):
    """Raise DataError listing every value of ``labels`` outside 0..num_classes-1 and ignore."""
    if not 1 <= num_classes <= 255:
        raise ValueError(f"num_classes must be in 1..255 for uint8 masks, got {num_classes}")
    bad = ((labels >= num_classes) & (labels != ignore_index)) | (labels < 0)
    if bad.any():
        values = np.unique(labels[bad]).tolist()
        shown = ", ".join(str(v) for v in values[:20]) + (", ..." if len(values) > 20 else "")
        raise DataError(
            f"{path}: labels outside 0..{num_classes - 1} and {ignore_index} (ignore): "
            f"[{shown}] in {int(bad.sum())} pixels"
        )


def read_mask(path: str | Path, num_classes: int, ignore_index: int = 255) -> np.ndarray:
    """Read a class-index mask (palette or grayscale PNG) as uint8 (H, W).

    The stored INDICES are the labels: a VOC palette PNG gives 0..20 and 255 ("void",
    ``segnet.data.voc.IGNORE_INDEX``), never its colours.

    Raises:
        DataError: unreadable file; a colour (RGB/RGBA) mask; labels other than
            0..num_classes-1 and ``ignore_index`` (the message lists them).
    """
    img = _open_decoded(path)
    if img.mode not in _MASK_MODES:
        raise DataError(
            f"{path}: mask is a colour image (mode {img.mode}), not a palette (P) or grayscale (L) "
            "image of class indices; save it as an indexed PNG (see voc_palette())"
        )
    labels = np.asarray(img)
    _check_labels(path, labels, num_classes, ignore_index)
    return labels.astype(np.uint8)


def _stored_format(path: str | Path) -> str | None:
    """The format the file's header declares (None if it cannot be opened: the reader that
    follows says why)."""
    try:
        with Image.open(path) as image:
            return image.format
    except (OSError, ValueError):
        return None


def read_raw_mask(path: str | Path) -> np.ndarray:
    """A mask file's raw values: (H, W) integers (grayscale or palette indices) or (H, W, 3)
    uint8 colours (RGB; an alpha channel is dropped).

    Raises:
        DataError: unreadable, a JPEG (lossy: its values are smeared), or another mode.
    """
    if _stored_format(path) in _JPEG_FORMATS:
        raise DataError(
            f"{path}: a JPEG mask: JPEG's lossy compression smears label values along every "
            "edge into values of no class; export the masks as PNG"
        )
    image = _open_decoded(path)
    if image.mode in _MASK_MODES:
        return np.asarray(image)
    if image.mode in ("RGB", "RGBA"):
        return np.asarray(image.convert("RGB") if image.mode == "RGBA" else image)
    raise DataError(f"{path}: mask mode {image.mode} is neither grayscale, palette nor RGB")


def read_sbd_mask(path: str | Path, num_classes: int, ignore_index: int = 255) -> np.ndarray:
    """Read an SBD ``cls/*.mat`` annotation (``GTcls.Segmentation``) as uint8 (H, W).

    Same structure as torchvision's ``SBDataset(mode="segmentation")`` reads; SBD has no
    void border, so its labels are 0..20 only.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file does not exist")
    try:
        from scipy.io import loadmat  # SBD's .mat files only: not loaded for plain images

        labels = np.asarray(loadmat(path)["GTcls"][0]["Segmentation"][0])
    except Exception as err:  # scipy reports bad .mat files as ValueError, OSError, KeyError...
        raise DataError(f"{path}: cannot read SBD mask ({type(err).__name__}: {err})") from err
    if labels.ndim != 2:
        raise DataError(f"{path}: SBD mask has shape {labels.shape}, expected (H, W)")
    _check_labels(path, labels, num_classes, ignore_index)
    return labels.astype(np.uint8)


def require_same_size(
    image_path: str | Path, image: Image.Image, mask_path: str | Path, mask: np.ndarray
) -> None:
    """Raise DataError if the image (W, H) and the mask (H, W) do not cover the same pixels."""
    width, height = image.size
    if mask.shape != (height, width):
        raise DataError(
            f"image {image_path} is {width}x{height} but its mask {mask_path} is "
            f"{mask.shape[1]}x{mask.shape[0]} (width x height)"
        )
