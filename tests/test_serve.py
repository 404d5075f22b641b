"""The HTTP API in process (Starlette's TestClient): every endpoint, every limit, auth, CORS.

Answers are compared with what scripts/infer.py writes for the same file (run in process on
the same checkpoint): the label PNG byte for byte, less infer's "segnet-infer-source" chunk.
"""

from __future__ import annotations

import io
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
from helpers import compose_config
from PIL import Image

from segnet import Segmenter
from segnet.serve import ServeSettings, create_app
from segnet.tasks.infer import infer

with warnings.catch_warnings():  # Starlette's deprecation note on httpx, at import
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

SOURCE_KEY = b"segnet-infer-source"


def write_photo(path: Path, width: int, height: int, seed: int, orientation: int | None = None):
    """A JPEG of smooth colour fields and grain (the tiny model predicts several classes on
    it); ``orientation`` sets the EXIF orientation tag."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (3, 4, 3), dtype=np.uint8)
    smooth = np.asarray(Image.fromarray(coarse).resize((width, height), Image.BICUBIC), np.int16)
    pixels = np.clip(smooth + rng.integers(-20, 21, smooth.shape), 0, 255).astype(np.uint8)
    exif = Image.Exif()
    if orientation is not None:
        exif[0x0112] = orientation
    Image.fromarray(pixels).save(path, quality=90, exif=exif)
    return path


def without_source_chunk(png: bytes) -> bytes:
    """``png`` without infer's iTXt chunk recording its input (serve has no input path)."""
    out, pos = png[:8], 8
    while pos < len(png):
        length = int.from_bytes(png[pos : pos + 4], "big")
        end = pos + 12 + length
        kind, data = png[pos + 4 : pos + 8], png[pos + 8 : pos + 8 + length]
        if not (kind == b"iTXt" and data.startswith(SOURCE_KEY + b"\0")):
            out += png[pos:end]
        pos = end
    return out


@pytest.fixture(scope="module")
def seg(checkpoint) -> Segmenter:
    return Segmenter.load(checkpoint, device="cpu")


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("serve_photos")
    return {
        "plain": write_photo(folder / "plain.jpg", 64, 48, seed=1),
        # EXIF orientation 6 (rotate 90): displayed 48 wide, 64 high.
        "rotated": write_photo(folder / "rotated.jpg", 64, 48, seed=2, orientation=6),
    }


def client(seg, **settings) -> TestClient:
    return TestClient(create_app(seg, ServeSettings(**settings)))


def infer_outputs(checkpoint, image: Path, out: Path) -> tuple[bytes, bytes]:
    """(mask PNG, overlay JPEG) that infer writes for ``image``."""
    overrides = [f"ckpt_path={checkpoint}", f"input={image}", f"output_dir={out}"]
    cfg = compose_config("infer", [*overrides, "num_workers=0", "device=cpu"])
    assert infer(cfg).written == 1
    return (out / f"{image.stem}.png").read_bytes(), (
        out / "overlays" / f"{image.stem}.jpg"
    ).read_bytes()


def test_png_and_overlay_are_what_infer_writes(seg, checkpoint, photos, tmp_path):
    with client(seg) as api:
        for name, path in photos.items():
            mask, overlay = infer_outputs(checkpoint, path, tmp_path / name)
            data = path.read_bytes()
            as_file = api.post("/v1/segment", files={"image": (path.name, data, "image/jpeg")})
            as_body = api.post("/v1/segment?format=png", content=data)
            for answer in (as_file, as_body):
                assert answer.status_code == 200, answer.text
                assert answer.headers["content-type"] == "image/png"
                assert SOURCE_KEY in mask and SOURCE_KEY not in answer.content
                assert answer.content == without_source_chunk(mask)
            served, written = Image.open(io.BytesIO(as_file.content)), Image.open(io.BytesIO(mask))
            assert served.size == written.size == ((48, 64) if name == "rotated" else (64, 48))
            assert np.array_equal(np.asarray(served), np.asarray(written))
            assert served.getpalette() == written.getpalette()
            assert len(np.unique(np.asarray(served))) > 1  # a real test: several classes
            drawn = api.post("/v1/segment?format=overlay", content=data)
            assert drawn.status_code == 200 and drawn.headers["content-type"] == "image/jpeg"
            served, written = Image.open(io.BytesIO(drawn.content)), Image.open(io.BytesIO(overlay))
            assert np.array_equal(np.asarray(served), np.asarray(written))


def test_an_onnx_model_serves_what_infer_writes_with_it(onnx_model, photos, tmp_path):
    """Either backend plugs in: the exported model served gives infer.py's mask on that model."""
    onnx = Segmenter.from_onnx(onnx_model)
    with client(onnx) as api:
        info = api.get("/v1/info").json()
        assert "onnxruntime" in str(info)
        for name, path in photos.items():
            mask, _ = infer_outputs(onnx_model, path, tmp_path / name)
            answer = api.post("/v1/segment", content=path.read_bytes())
            assert answer.status_code == 200, answer.text
            assert answer.content == without_source_chunk(mask)
            assert len(np.unique(np.asarray(Image.open(io.BytesIO(answer.content))))) > 1


def test_json_counts_the_classes_of_the_png(seg, photos):
    data = photos["rotated"].read_bytes()
    with client(seg) as api:
        summary = api.post("/v1/segment?format=json", content=data).json()
        labels = np.asarray(Image.open(io.BytesIO(api.post("/v1/segment", content=data).content)))
    assert (summary["width"], summary["height"]) == (48, 64)
    counts = np.bincount(labels.ravel(), minlength=256)
    assert [c["index"] for c in summary["classes"]] == np.flatnonzero(counts).tolist()
    for entry in summary["classes"]:
        assert entry["name"] == seg.class_names[entry["index"]]
        assert entry["pixels"] == counts[entry["index"]]
        assert entry["fraction"] == pytest.approx(counts[entry["index"]] / labels.size)
    assert summary["model"] == {
        "backend": seg.backend.name,
        "backbone": seg.backend.info["backbone"],
        "variant": seg.backend.info["variant"],
    }
    assert {"decode", "queue", "model", "encode", "total", "batch"} <= set(summary["timing_ms"])


def test_info_healthz_page_and_unknown_paths(seg, checkpoint):
    with client(seg, max_upload_mb=3, max_pixels=1234) as api:
        assert api.get("/healthz").json() == {"status": "ok", "waiting": 0}
        info = api.get("/v1/info").json()
        assert info["classes"] == seg.class_names
        assert info["palette"] == [list(c) for c in seg.palette]
        assert info["limits"]["max_upload_mb"] == 3 and info["limits"]["max_pixels"] == 1234
        assert info["model"]["backend"] == seg.backend.name
        assert str(checkpoint.parent) not in str(info)  # no server folder in the answer
        assert checkpoint.name in info["model"].values()
        page = api.get("/")
        assert page.status_code == 200 and "/static/app.js" in page.text
        assert "/v1/segment" in api.get("/static/app.js").text
        missing = api.get("/v2/segment")
        assert missing.status_code == 404 and missing.json() == {"error": "Not Found"}
        wrong = api.post("/v1/segment?format=gif", content=b"x")
        assert wrong.status_code == 400 and "format='gif'" in wrong.json()["error"]


def test_healthz_is_not_ready_before_the_warm_up_pass(seg):
    app = create_app(seg)
    plain = TestClient(app)  # no `with`: the lifespan (model warm-up) has not run
    answer = plain.get("/healthz")
    assert answer.status_code == 503 and answer.json()["status"] == "loading"


def tiny_png_header(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` (no pixel data follows)."""
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            len(data).to_bytes(4, "big") + kind + data + zlib.crc32(kind + data).to_bytes(4, "big")
        )

    header = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, 2, 0, 0, 0])
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b"")


BAD_UPLOADS = {
    "empty": (b"", 400, "empty upload"),
    "text": (b"hello, not an image", 415, "not an image"),
    "huge header": (tiny_png_header(4000, 3000), 413, "over max_pixels"),
    "bomb": (tiny_png_header(100_000, 100_000), 413, "decompression bomb"),
}


@pytest.mark.parametrize("case", BAD_UPLOADS)
def test_a_bad_upload_gets_one_line_and_the_server_goes_on(seg, photos, case):
    body, status, words = BAD_UPLOADS[case]
    # The bomb is over Pillow's own limit but under ours: Pillow's refusal is the one seen.
    limit = 10**12 if case == "bomb" else 5_000_000
    with client(seg, max_pixels=limit) as api:
        answer = api.post("/v1/segment", content=body)
        assert answer.status_code == status, answer.text
        assert words in answer.json()["error"] and "\n" not in answer.text
        assert api.post("/v1/segment", content=photos["plain"].read_bytes()).status_code == 200


def test_truncated_corrupt_and_fieldless_uploads_are_400_naming_the_problem(seg, photos):
    data = photos["plain"].read_bytes()
    with client(seg) as api:
        cut = api.post("/v1/segment", content=data[: len(data) // 2])
        assert cut.status_code == 400 and "truncated" in cut.json()["error"].lower()
        assert "segnet-serve-" not in cut.json()["error"]  # no server path in the answer
        header_only = api.post("/v1/segment", content=data[:20])
        assert header_only.status_code == 400 and "bad image header" in header_only.json()["error"]
        fieldless = api.post("/v1/segment", files={"picture": ("a.jpg", data, "image/jpeg")})
        assert fieldless.status_code == 400 and "'image'" in fieldless.json()["error"]
        assert api.post("/v1/segment", content=data).status_code == 200


def test_pixels_over_max_pixels_are_413_from_the_header(seg, photos):
    with client(seg, max_pixels=64 * 48 - 1) as api:
        answer = api.post("/v1/segment", content=photos["plain"].read_bytes())
        assert answer.status_code == 413
        assert answer.json()["error"] == ("image of 64x48 pixels is over max_pixels=3071 pixels")


async def _call(app, headers: list[tuple[bytes, bytes]], chunks: list[bytes]):
    """One POST /v1/segment straight through the ASGI interface; returns (status, body,
    chunks the app read)."""
    read = 0
    sent: list[dict] = []

    async def receive():
        nonlocal read
        if read < len(chunks):
            read += 1
            return {
                "type": "http.request",
                "body": chunks[read - 1],
                "more_body": read < len(chunks),
            }
        return {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/segment",
        "raw_path": b"/v1/segment",
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 1),
        "server": ("t", 80),
    }
    await app(scope, receive, send)
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return status, body, read


def test_an_upload_over_max_upload_mb_is_413_without_reading_all_of_it(seg):
    import asyncio

    app = create_app(seg, ServeSettings(max_upload_mb=0.01))  # 10 KiB
    chunks = [b"\0" * 4096] * 100  # 400 KiB
    declared = [(b"content-length", str(4096 * 100).encode())]
    status, body, read = asyncio.run(_call(app, declared, chunks))
    assert (status, read) == (413, 0)  # refused from Content-Length, not a byte read
    assert b"max_upload_mb=0.01" in body
    status, body, read = asyncio.run(_call(app, [], chunks))  # chunked, no length declared
    assert status == 413 and read == 3  # cut as soon as 10 KiB were passed
    with TestClient(app) as api:  # and through HTTP
        answer = api.post("/v1/segment", content=b"\0" * 20_000)
        assert answer.status_code == 413 and "max_upload_mb" in answer.json()["error"]


class Gated:
    """The Segmenter, with predict held until ``gate`` is set (a slow or busy model)."""

    def __init__(self, seg: Segmenter) -> None:
        self.seg = seg
        self.gate = threading.Event()
        self.gate.set()

    def __getattr__(self, name):
        return getattr(self.seg, name)

    def predict(self, images):
        assert self.gate.wait(20), "test gate never opened"
        return self.seg.predict(images)


def until(condition, seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)


def test_a_full_queue_is_503_with_retry_after_and_a_slow_answer_504(seg, photos):
    gated = Gated(seg)
    data = photos["plain"].read_bytes()
    app = create_app(gated, ServeSettings(max_queue=1, timeout_s=1.0, retry_after_s=7))
    with TestClient(app) as api:
        gated.gate.clear()
        first: list = []
        worker = threading.Thread(
            target=lambda: first.append(api.post("/v1/segment", content=data))
        )
        worker.start()
        try:
            until(lambda: app.state.service.waiting == 1)
            busy = api.post("/v1/segment", content=data)
            assert busy.status_code == 503 and busy.headers["retry-after"] == "7"
            assert "max_queue=1" in busy.json()["error"]
            worker.join(10)
            assert first and first[0].status_code == 504, first
            assert "timeout_s=1" in first[0].json()["error"]
        finally:
            gated.gate.set()  # whatever failed, the model thread is not left waiting
            worker.join(30)
        assert api.post("/v1/segment", content=data).status_code == 200


class Failing(Gated):
    """The Segmenter, whose predict raises while ``fail`` is set (a bug in model code)."""

    fail = False

    def predict(self, images):
        if self.fail:
            raise RuntimeError("a bug in the model code")
        return self.seg.predict(images)


def test_a_bug_is_a_json_500_and_the_server_goes_on(seg, photos):
    data = photos["plain"].read_bytes()
    failing = Failing(seg)
    with TestClient(create_app(failing), raise_server_exceptions=False) as api:
        failing.fail = True
        answer = api.post("/v1/segment", content=data)
        assert answer.status_code == 500
        assert answer.json() == {"error": "internal error (RuntimeError); see the log"}
        failing.fail = False
        assert api.post("/v1/segment", content=data).status_code == 200


def test_api_key_guards_everything_but_healthz_and_the_page(seg, photos):
    data = photos["plain"].read_bytes()
    with client(seg, api_key="s3cret") as api:
        for method, path in (("GET", "/v1/info"), ("POST", "/v1/segment")):
            for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret"}):
                answer = api.request(method, path, headers=headers, content=data)
                assert answer.status_code == 401, (path, headers)
                assert answer.headers["www-authenticate"] == "Bearer"
            good = api.request(
                method, path, headers={"Authorization": "Bearer s3cret"}, content=data
            )
            assert good.status_code == 200
        assert api.get("/healthz").status_code == 200
        assert api.get("/").status_code == 200
    with client(seg) as api:  # no key configured: no header needed
        assert api.get("/v1/info").status_code == 200


def test_cors_only_for_configured_origins(seg):
    preflight = {"Origin": "https://app.example", "Access-Control-Request-Method": "POST"}
    with client(seg) as api:
        answer = api.options("/v1/segment", headers=preflight)
        assert "access-control-allow-origin" not in answer.headers
        assert "access-control-allow-origin" not in api.get("/v1/info", headers=preflight).headers
    with client(seg, cors_origins=("https://app.example",)) as api:
        answer = api.options("/v1/segment", headers=preflight)
        assert answer.headers["access-control-allow-origin"] == "https://app.example"
        other = api.options("/v1/segment", headers={**preflight, "Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in other.headers


def test_bad_settings_are_one_line_naming_each():
    with pytest.raises(ValueError) as err:
        ServeSettings(max_upload_mb=0, max_queue=-1, alpha=2, api_key=" ")
    message = str(err.value)
    for words in ("max_upload_mb=0", "max_queue=-1", "alpha=2", "api_key is empty"):
        assert words in message
    with pytest.raises(ValueError, match=r"unknown serve setting\(s\) \['max_uploads'\]"):
        ServeSettings.from_mapping({"max_uploads": 3})
