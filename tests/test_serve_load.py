"""scripts/serve.py as a real process on 127.0.0.1: load with faults mixed in, then a stop.

One server process for the module (starting one costs seconds): first 8 concurrent clients
send 200 requests, 10% of them bad uploads; then SIGTERM arrives while a request is in flight
(its upload held back by the client). Every loop is bounded in requests and seconds; the
process is killed if it outlives the test.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor, wait
from pathlib import Path

import httpx
import pytest
from test_serve import tiny_png_header, write_photo

from segnet import Segmenter

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "serve.py"
CLIENTS, REQUESTS, BAD_EVERY = 8, 200, 10
LIMITS = ["limits.max_upload_mb=1", "limits.max_pixels=4000000", "limits.timeout_s=60"]


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


@pytest.fixture(scope="module")
def server(checkpoint):
    """(process, base URL) of scripts/serve.py on a free port of 127.0.0.1."""
    if not Path("/proc/self/status").is_file():
        pytest.skip("reads the server's memory from /proc (Linux)")
    command = [sys.executable, str(SCRIPT), f"ckpt_path={checkpoint}", "port=0", "device=cpu"]
    command += [*LIMITS, "log_level=warning"]
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=os.environ.copy()
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(process.stdout), daemon=True)
    reader.start()
    deadline = time.monotonic() + 90
    while not any(" at http://" in line for line in lines):
        assert process.poll() is None, process.stderr.read()
        assert time.monotonic() < deadline, "server did not start in 90 s"
        time.sleep(0.05)
    url = next(line for line in lines if " at http://" in line).split(" at ")[1].strip()
    assert url.startswith("http://127.0.0.1:")
    yield process, url.rstrip("/")
    if process.poll() is None:
        process.kill()
    process.wait(10)


@pytest.fixture(scope="module")
def uploads(checkpoint, tmp_path_factory):
    """(good: [(bytes, expected PNG)], bad: [(bytes, expected status)])."""
    folder = tmp_path_factory.mktemp("load")
    seg = Segmenter.load(checkpoint, device="cpu")
    sizes = [(64, 48), (48, 64), (80, 60), (64, 48)]
    good = []
    for i, size in enumerate(sizes):
        path = write_photo(folder / f"{i}.jpg", *size, seed=10 + i)
        good.append((path.read_bytes(), seg.mask_png(seg.predict(path))))
    jpeg = good[0][0]
    bad = [
        (b"GIF89a? no", 400),  # damaged header of a known format
        (b"just text", 415),
        (jpeg[: len(jpeg) // 2], 400),  # truncated
        (b"", 400),
        (tiny_png_header(3000, 2000), 413),  # over max_pixels
        (os.urandom(1024 * 1024 + 1), 413),  # over max_upload_mb
    ]
    return good, bad


def test_load_with_bad_uploads_all_answered_right_and_memory_flat(server, uploads):
    process, url = server
    good, bad = uploads
    rng = random.Random(0)
    plan = [
        ("bad", rng.choice(bad)) if i % BAD_EVERY == 0 else ("good", rng.choice(good))
        for i in range(REQUESTS)
    ]
    rng.shuffle(plan)
    limits = httpx.Limits(max_connections=CLIENTS)
    with httpx.Client(base_url=url, timeout=30, limits=limits) as client:

        def send(item):
            kind, (body, expected) = item
            answer = client.post("/v1/segment", content=body)
            return kind, expected, answer.status_code, answer.content

        with ThreadPoolExecutor(CLIENTS) as pool:  # warm-up: allocator, kernels, threads
            list(pool.map(send, [("good", g) for g in good] * 4))
        warm = rss_kb(process.pid)
        with ThreadPoolExecutor(CLIENTS) as pool:
            futures = [pool.submit(send, item) for item in plan]
            done, late = wait(futures, timeout=180)
        after = rss_kb(process.pid)
    assert not late, f"{len(late)} requests not answered in 180 s"
    results = [f.result() for f in done]
    assert len(results) == REQUESTS
    assert not [r for r in results if r[2] >= 500], "5xx answers"
    for kind, expected, status, content in results:
        if kind == "good":
            assert status == 200 and content == expected
        else:
            assert status == expected, content
    assert sum(kind == "bad" for kind, *_ in results) == REQUESTS // BAD_EVERY
    assert after <= 1.3 * warm, f"RSS grew from {warm} kB to {after} kB"


def test_sigterm_lets_the_request_in_flight_finish_refuses_new_ones_exits_0(server, uploads):
    process, url = server
    body, expected = uploads[0][0]
    # The request in flight is one whose upload the client holds back until the stop is seen.
    release = threading.Event()

    def held_back():
        yield body[:100]
        assert release.wait(30)
        yield body[100:]

    answers: list = []
    worker = threading.Thread(
        target=lambda: answers.append(httpx.post(f"{url}/v1/segment", content=held_back()))
    )
    worker.start()
    deadline = time.monotonic() + 30
    while httpx.get(f"{url}/healthz").json()["waiting"] < 1:
        assert time.monotonic() < deadline, "the held-back request never arrived"
        time.sleep(0.02)
    process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 10
    while (health := httpx.get(f"{url}/healthz")).json()["status"] != "draining":
        assert time.monotonic() < deadline, f"not draining after SIGTERM: {health.text}"
        time.sleep(0.02)
    refused = httpx.post(f"{url}/v1/segment", content=body)
    assert refused.status_code == 503 and refused.json() == {"error": "server is shutting down"}
    release.set()
    worker.join(30)
    assert answers and answers[0].status_code == 200 and answers[0].content == expected
    assert process.wait(30) == 0
    assert "stopped" in process.stderr.read()
