"""Uploads: the body read within its size limit, the image checked from its header, decoded.

The size limit is enforced on the byte stream itself (:class:`BodyLimit`, an ASGI middleware):
a declared Content-Length over it is refused before a byte of the body is read, and a chunked
body is cut off as soon as it passes it. Pixels are counted from the header before any pixel is
decoded, so a small file that would decode into gigabytes (a "decompression bomb") costs
nothing. Decoding goes through the Segmenter (``seg.to_rgb``), the very reader ``infer.py``
uses, so a served image is seen exactly as infer sees the same file.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image
from starlette.responses import JSONResponse

from segnet.data.images import DataError


class ApiError(Exception):
    """An answer other than 200: HTTP ``status`` and the one-line ``message`` of its JSON."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


def error_response(err: ApiError) -> JSONResponse:
    return JSONResponse({"error": err.message}, err.status, headers=err.headers)


def too_large(max_upload_mb: float) -> ApiError:
    return ApiError(413, f"upload larger than max_upload_mb={max_upload_mb:g} (MiB)")


class BodyLimit:
    """ASGI middleware: request bodies of ``max_upload_mb`` MiB at most, checked while
    streaming."""

    def __init__(self, app, max_upload_mb: float) -> None:
        self.app = app
        self.max_upload_mb = max_upload_mb
        self.limit = int(max_upload_mb * 2**20)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            # Answered here, the body unread; the server then closes the connection.
            return await error_response(too_large(self.max_upload_mb))(scope, receive, send)
        seen = 0

        async def limited():
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:  # raised inside the endpoint: its error handler answers
                raise too_large(self.max_upload_mb)
            return message

        await self.app(scope, limited, send)


# How common image files begin: such a file Pillow cannot open is damaged, not of another kind.
_SIGNATURES = (b"\xff\xd8\xff", b"\x89PNG", b"GIF8", b"RIFF", b"BM", b"II*\0", b"MM\0*")


def check_header(data: bytes, max_pixels: int) -> tuple[int, int]:
    """(width, height) from the header of the image in ``data``; nothing is decoded.

    Raises:
        ApiError: 400 empty body or damaged header; 415 not an image Pillow knows; 413 more
            than ``max_pixels``
            pixels, or a file Pillow refuses as a decompression bomb.
    """
    if not data:
        raise ApiError(400, "empty upload: send the image as the body or as multipart 'image'")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                width, height = image.size
    except Image.DecompressionBombError as err:
        raise ApiError(413, f"image refused as a decompression bomb: {err}") from err
    except Image.UnidentifiedImageError as err:
        if data.startswith(_SIGNATURES):
            raise ApiError(400, "bad image header: truncated or damaged") from err
        raise ApiError(
            415, "not an image: the upload is in no format Pillow reads (JPEG, PNG, WebP, ...)"
        ) from err
    except Exception as err:  # Pillow's errors for a damaged header vary by format
        raise ApiError(400, f"bad image header ({type(err).__name__}: {err})") from err
    if width * height > max_pixels:
        raise ApiError(
            413, f"image of {width}x{height} pixels is over max_pixels={max_pixels} pixels"
        )
    return width, height


def decode(seg, data: bytes) -> np.ndarray:
    """uint8 (H, W, 3) RGB of the image file in ``data``, decoded by ``seg.to_rgb`` as infer
    decodes a file on disk (EXIF applied, strict JPEG).

    Raises:
        ApiError: 400 naming what is wrong with a truncated or corrupt file.
    """
    try:
        return seg.to_rgb(data)
    except DataError as err:
        raise ApiError(400, f"bad image: {str(err).removeprefix('image bytes: ')}") from err
