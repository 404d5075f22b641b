"""The HTTP API and the page: ``create_app(segmenter, settings) -> FastAPI``.

    POST /v1/segment?format=png|overlay|json   the image as multipart field "image" or raw body
    GET  /v1/info                              model, classes, palette, options, limits
    GET  /healthz                              200 once the model has run a warm-up pass
    GET  /                                     the page (segnet/serve/static/)

Every answer other than 200 is one line of JSON, ``{"error": "..."}``. The model runs in one
thread (:class:`segnet.serve.batching.Batcher`); decoding and encoding run in a small thread
pool beside it, so neither waits for the other.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from importlib.resources import files
from pathlib import Path

import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect

from segnet.serve.batching import Batcher
from segnet.serve.guard import Guard, ServiceState
from segnet.serve.settings import ServeSettings
from segnet.serve.uploads import ApiError, BodyLimit, check_header, decode, error_response

FORMATS = {"png": "image/png", "overlay": "image/jpeg", "json": "application/json"}
STATIC = files("segnet.serve") / "static"
log = logging.getLogger("segnet.serve")


def create_app(seg, settings: ServeSettings | None = None) -> FastAPI:
    """The service for Segmenter ``seg`` (any object with the Segmenter API)."""
    settings = settings or ServeSettings()
    state = ServiceState()
    model = _model_info(seg)
    # format=json names the model briefly; /v1/info has the rest.
    brief = {k: model[k] for k in ("backend", "backbone", "variant") if k in model}

    def predict(images: list[np.ndarray]) -> list[np.ndarray]:
        return seg.predict(images)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        batcher = Batcher(predict, settings.max_batch, settings.batch_window_ms / 1000)
        batcher.start()
        app.state.batcher = batcher
        app.state.io_pool = ThreadPoolExecutor(settings.io_threads, thread_name_prefix="segnet-io")
        # One pass before /healthz says ready: the first forward allocates and picks kernels.
        await batcher.call(predict, [np.zeros((32, 32, 3), np.uint8)])
        state.ready = True
        try:
            yield
        finally:
            state.ready = False
            await batcher.stop()
            app.state.io_pool.shutdown(wait=True)

    app = FastAPI(title="segnet", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.service = state
    app.state.settings = settings

    async def in_pool(fn, *args):
        return await asyncio.get_running_loop().run_in_executor(app.state.io_pool, fn, *args)

    @app.exception_handler(ApiError)
    async def api_error(request: Request, err: ApiError):
        return error_response(err)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, err: HTTPException):
        return error_response(ApiError(err.status_code, str(err.detail), err.headers))

    @app.exception_handler(Exception)
    async def internal_error(request: Request, err: Exception):
        log.exception("internal error answering %s %s", request.method, request.url.path)
        return error_response(ApiError(500, f"internal error ({type(err).__name__}); see the log"))

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, err: RequestValidationError):
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in err.errors())
        return error_response(ApiError(400, problems))

    @app.get("/healthz")
    async def healthz():
        status = "draining" if state.draining else "ok" if state.ready else "loading"
        body = {"status": status, "waiting": state.waiting}  # waiting: segment requests admitted
        return JSONResponse(body, 200 if status == "ok" else 503)

    @app.get("/v1/info")
    async def info():
        predictor = seg.predictor
        return {
            "model": model,
            "classes": list(seg.class_names),
            "palette": [list(colour) for colour in seg.palette],
            "options": {
                "flip": predictor.flip,
                "scales": list(predictor.scales),
                "window": None if predictor.window is None else list(predictor.window),
                "overlap": predictor.overlap,
                "blend": predictor.blend,
                "window_above_pixels": predictor.max_pixels,
                "batch_size": predictor.batch_size,
            },
            "limits": {
                "max_upload_mb": settings.max_upload_mb,
                "max_pixels": settings.max_pixels,
                "max_queue": settings.max_queue,
                "timeout_s": settings.timeout_s,
            },
            "formats": list(FORMATS),
        }

    @app.post("/v1/segment")
    async def segment(request: Request, format: str = "png"):
        if format not in FORMATS:
            raise ApiError(400, f"format={format!r} is not one of {', '.join(FORMATS)}")
        if state.waiting >= settings.max_queue:
            raise ApiError(
                503,
                f"busy: {state.waiting} requests waiting (max_queue={settings.max_queue})",
                {"Retry-After": str(settings.retry_after_s)},
            )
        state.waiting += 1
        try:
            return await asyncio.wait_for(_answer(request, format), settings.timeout_s)
        except asyncio.TimeoutError:
            raise ApiError(504, f"not answered within timeout_s={settings.timeout_s:g} s") from None
        except ClientDisconnect:  # nobody to answer; no traceback in the log for it
            raise ApiError(400, "client disconnected during the upload") from None
        finally:
            state.waiting -= 1

    async def _answer(request: Request, format: str) -> Response:
        timing = {}
        start = time.perf_counter()
        data = await _read_upload(request)
        timing["upload"] = time.perf_counter() - start
        mark = time.perf_counter()
        rgb = await in_pool(_decoded, data)
        timing["decode"] = time.perf_counter() - mark
        result = await app.state.batcher.predict(rgb)
        timing["queue"], timing["model"] = result.queue_s, result.model_s
        mark = time.perf_counter()
        if format == "png":
            body = await in_pool(seg.mask_png, result.labels)
        elif format == "overlay":
            body = await in_pool(seg.overlay_jpeg, rgb, result.labels, settings.alpha)
        timing["encode"] = time.perf_counter() - mark
        timing["total"] = time.perf_counter() - start
        ms = {k: round(v * 1000, 2) for k, v in timing.items()}
        headers = {"Server-Timing": ", ".join(f"{k};dur={v}" for k, v in ms.items())}
        if format == "json":
            return JSONResponse(await in_pool(_summary, result, ms), headers=headers)
        return Response(body, media_type=FORMATS[format], headers=headers)

    def _decoded(data: bytes) -> np.ndarray:
        check_header(data, settings.max_pixels)
        return decode(seg, data)

    def _summary(result, ms: dict) -> dict:
        labels = result.labels
        counts = np.bincount(labels.ravel(), minlength=256)
        names = seg.class_names
        return {
            "width": int(labels.shape[1]),
            "height": int(labels.shape[0]),
            "model": brief,
            "classes": [
                {
                    "index": int(i),
                    "name": names[i] if i < len(names) else str(i),
                    "pixels": int(counts[i]),
                    "fraction": float(counts[i] / labels.size),
                }
                for i in np.flatnonzero(counts)
            ],
            "timing_ms": {**ms, "batch": result.batch},
        }

    @app.get("/", include_in_schema=False)
    async def page():
        return FileResponse(str(STATIC / "index.html"), media_type="text/html")

    app.mount("/static", StaticFiles(directory=str(STATIC)), name="static")
    # Outermost last: CORS answers preflights itself, the guard counts and admits requests,
    # the body limit watches every byte that reaches the app.
    app.add_middleware(BodyLimit, max_upload_mb=settings.max_upload_mb)
    app.add_middleware(Guard, state=state, api_key=settings.api_key)
    if settings.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type"],
            expose_headers=["Server-Timing"],
        )
    return app


def _model_info(seg) -> dict:
    """What /v1/info tells of the model: the backend's description, less what /v1/info lists
    anyway (classes, palette); file paths shrink to their names (the server's folders are
    nobody's business)."""
    info = {"backend": seg.backend.name}
    for key, value in seg.backend.info.items():
        if key not in ("class_names", "palette"):
            a_path = isinstance(value, str) and os.sep in value and Path(value).exists()
            info[key] = Path(value).name if a_path else value
    return info


async def _read_upload(request: Request) -> bytes:
    """The image bytes: multipart field "image" (a file), or else the raw body."""
    content_type = request.headers.get("content-type", "")
    if not content_type.startswith("multipart/form-data"):
        return await request.body()
    async with request.form(max_files=1, max_fields=8) as form:
        upload = form.get("image")
        if not isinstance(upload, UploadFile):
            raise ApiError(400, "multipart body has no file field named 'image'")
        return await upload.read()
