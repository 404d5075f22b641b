"""One labelme json: its content, and the image its shapes were drawn on.

The image is what labelme itself shows: the bytes embedded as ``imageData`` when the json has
them, else the file at ``imagePath``, relative to the json (labelme on Windows writes
backslashes). Its size is the one segnet reads (EXIF orientation applied, as labelme applies it
when it opens a file), and it must be the json's ``imageWidth`` x ``imageHeight``.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
from pathlib import Path, PureWindowsPath

from PIL import Image, UnidentifiedImageError

from segnet.data.folder import IMAGE_EXTENSIONS
from segnet.data.images import DataError, decode_image, read_image

# Pillow's name of an embedded image's format -> the suffix its file gets.
_SUFFIX_OF_FORMAT = {
    "JPEG": ".jpg",
    "MPO": ".jpg",
    "PNG": ".png",
    "BMP": ".bmp",
    "TIFF": ".tif",
    "WEBP": ".webp",
}
_READABLE = " ".join(sorted(IMAGE_EXTENSIONS))


class SkippedFile(Exception):
    """This json is left out; the message is the reason."""


def read_label_file(path: Path) -> dict:
    """The json at ``path`` as a dict holding ``shapes``; SkippedFile when it is not one."""
    try:
        annotation = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise SkippedFile(f"cannot read the json ({err})") from err
    if not isinstance(annotation, dict) or "shapes" not in annotation:
        raise SkippedFile("not a labelme json (no 'shapes')")
    return annotation


def image_of(json_path: Path, annotation: dict) -> tuple[Path | bytes, str, tuple[int, int]]:
    """(the image file, or the embedded file's bytes; its suffix; (width, height) as segnet
    reads it, EXIF orientation applied)."""
    if annotation.get("imageData"):
        try:
            data = base64.b64decode(annotation["imageData"])
            with Image.open(io.BytesIO(data)) as header:
                stored = header.format
        except (TypeError, ValueError, binascii.Error, UnidentifiedImageError) as err:
            raise SkippedFile(f"imageData is not a base64 image file ({err})") from err
        if stored not in _SUFFIX_OF_FORMAT:
            raise SkippedFile(f"imageData holds a {stored} image; data=folder reads {_READABLE}")
        try:
            return data, _SUFFIX_OF_FORMAT[stored], decode_image(data, "imageData").size
        except DataError as err:
            raise SkippedFile(str(err)) from err
    image_path = annotation.get("imagePath")
    if not isinstance(image_path, str) or not image_path:
        raise SkippedFile("neither imageData nor imagePath")
    source = json_path.parent / PureWindowsPath(image_path).as_posix()
    if not source.is_file():
        raise SkippedFile(f"image file missing: {source} (imagePath {image_path!r})")
    if source.suffix.lower() not in IMAGE_EXTENSIONS:
        raise SkippedFile(f"image {source.name}: data=folder reads {_READABLE}")
    try:
        return source, source.suffix, read_image(source).size
    except DataError as err:
        raise SkippedFile(str(err)) from err


def check_size(annotation: dict, width: int, height: int) -> None:
    """SkippedFile unless the json's ``imageWidth``/``imageHeight``, where given, are whole
    numbers equal to the image's ``width``/``height``: shapes drawn on another image would not
    fit this one."""
    declared = {"imageWidth": width, "imageHeight": height}
    for key, actual in declared.items():
        value = annotation.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise SkippedFile(f"{key} {value!r} is not a whole number")
        if value is not None and value != actual:
            raise SkippedFile(
                f"the image is {width}x{height} px but the json says imageWidth="
                f"{annotation.get('imageWidth')}, imageHeight={annotation.get('imageHeight')}"
            )
