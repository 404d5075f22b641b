"""HTTP service benchmark: throughput and latency of scripts/serve.py's app under 1, 4 and 8
concurrent clients, against offline ``infer.py`` throughput on the same images and backend.

The service runs with uvicorn in a thread of this process, on 127.0.0.1 (the clients are
threads too: each waits on its socket, so the model has the cores). Each client posts a
500x375 JPEG as the raw body and reads the label PNG; an answer counts only if it is 200 and
a PNG. Offline throughput is :func:`segnet.benchmarks.inference.end_to_end`: the infer task
over a folder of the same JPEGs (decode workers, forward, PNG + overlay written), model loading
included. The server does less per image (no overlay, no disk) and more (HTTP, one request per
image), so the comparison says what serving costs.

Targets: at 8 clients, served img/s >= 0.8 x offline img/s; p99 latency <= 3 x p50 at 4
clients; every request answered.
"""

from __future__ import annotations

import statistics
import tempfile
import threading
import time
from pathlib import Path

import httpx

from segnet.benchmarks import Result
from segnet.benchmarks.inference import end_to_end, save_checkpoint, write_photo
from segnet.predict.segmenter import Segmenter
from segnet.serve import ServeSettings, create_app
from segnet.serve.server import background_server

SECTION = "serve"
BACKBONE = "resnet18"
CLIENTS = (1, 4, 8)
BATCH = 4  # infer.py's default batch_size, for both sides
# (images, (width, height), requests per client count)
SIZES = {True: (4, (128, 96), 8), False: (48, (500, 375), 48)}


def load(url: str, images: list[bytes], clients: int, requests: int) -> tuple[float, list, int]:
    """``requests`` POSTs spread over ``clients`` threads: (img/s, latencies in s, failures)."""
    latencies: list[float] = []
    failures = 0
    lock = threading.Lock()
    sent = 0

    def client(http: httpx.Client) -> None:
        nonlocal sent, failures
        while True:
            with lock:
                if sent == requests:
                    return
                body = images[sent % len(images)]
                sent += 1
            start = time.perf_counter()
            try:
                answer = http.post("/v1/segment?format=png", content=body)
                good = answer.status_code == 200 and answer.content[:4] == b"\x89PNG"
            except httpx.HTTPError:
                good = False
            with lock:
                latencies.append(time.perf_counter() - start)
                failures += not good

    with httpx.Client(base_url=url, timeout=300) as http:
        threads = [threading.Thread(target=client, args=(http,)) for _ in range(clients)]
        start = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        seconds = time.perf_counter() - start
    return requests / seconds, latencies, failures


def percentile(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def run(quick: bool) -> list[Result]:
    count, (width, height), requests = SIZES[quick]
    case = f"fcn8s-{BACKBONE} {width}x{height} JPEG, batch {BATCH}"
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        folder = tmp / "images"
        folder.mkdir()
        for i in range(count):
            write_photo(folder / f"{i:03d}.jpg", width, height, seed=i)
        paths = sorted(folder.glob("*.jpg"))
        ckpt = tmp / f"{BACKBONE}.ckpt"
        save_checkpoint(ckpt, BACKBONE)
        offline = end_to_end(ckpt, folder, tmp / "out", BATCH)
        images = [p.read_bytes() for p in paths]
        seg = Segmenter.load(ckpt, device="cpu", batch_size=BATCH)
        results = [Result(SECTION, case, "offline infer.py", offline, "img/s")]
        served, p50, p99 = {}, {}, {}
        failures = 0
        with background_server(create_app(seg, ServeSettings(max_batch=BATCH))) as url:
            load(url, images, 2, 4)  # warm-up: connections, threads, allocator
            for clients in CLIENTS:
                rate, latencies, failed = load(url, images, clients, requests)
                served[clients], failures = rate, failures + failed
                p50[clients], p99[clients] = percentile(latencies, 50), percentile(latencies, 99)
                name = f"{clients} client{'s' * (clients > 1)}"
                results += [
                    Result(SECTION, case, f"served, {name}", rate, "img/s"),
                    Result(SECTION, case, f"p50 latency, {name}", 1000 * p50[clients], "ms"),
                    Result(
                        SECTION,
                        case,
                        f"p95 latency, {name}",
                        1000 * percentile(latencies, 95),
                        "ms",
                    ),
                    Result(SECTION, case, f"p99 latency, {name}", 1000 * p99[clients], "ms"),
                ]
    ratio = served[8] / offline
    spread = p99[4] / p50[4]
    total = requests * len(CLIENTS)
    answered = (total - failures) / total
    return results + [
        Result(SECTION, case, "served 8 clients / offline", ratio, "ratio", ">= 0.8", ratio >= 0.8),
        Result(SECTION, case, "p99 / p50 at 4 clients", spread, "ratio", "<= 3", spread <= 3),
        Result(SECTION, case, "requests answered 200", answered, "fraction", "= 1", answered == 1),
    ]
