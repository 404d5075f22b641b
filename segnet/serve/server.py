"""uvicorn with a graceful stop: on SIGTERM or SIGINT, requests in flight finish, new ones are
answered 503 (``Connection: close``), then uvicorn shuts down and ``serve`` returns normally.

uvicorn's own handling closes the listening socket at once (a new client meets a refused
connection, not an answer) and re-raises the signal after shutdown (the process would end 143
or 130). Here the first signal only starts draining; once nothing is in flight, or after
``drain_s``, uvicorn's usual shutdown runs. A second signal stops at once.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator

import uvicorn

from segnet.serve.guard import ServiceState


class DrainingServer(uvicorn.Server):
    def __init__(
        self,
        config: uvicorn.Config,
        state: ServiceState,
        drain_s: float,
        on_ready: Callable[[str], None] | None = None,
    ) -> None:
        super().__init__(config)
        self.state = state
        self.drain_s = drain_s
        self.on_ready = on_ready
        self._drain_deadline: float | None = None

    def handle_exit(self, sig, frame) -> None:
        if self._drain_deadline is None:
            self.state.draining = True
            self._drain_deadline = time.monotonic() + self.drain_s
        else:  # asked twice: stop now, without waiting for anything (nor re-raising)
            self.should_exit = self.force_exit = True

    async def on_tick(self, counter: int) -> bool:
        if self._drain_deadline is not None and (
            self.state.in_flight == 0 or time.monotonic() > self._drain_deadline
        ):
            self.should_exit = True
        return await super().on_tick(counter)

    async def startup(self, sockets=None) -> None:
        await super().startup(sockets)
        if self.started and self.on_ready is not None:
            host, port = self.servers[0].sockets[0].getsockname()[:2]
            shown = f"[{host}]" if ":" in host else host
            self.on_ready(f"http://{shown}:{port}/")


@contextlib.contextmanager
def background_server(app, host: str = "127.0.0.1") -> Iterator[str]:
    """Run ``app`` with uvicorn in a thread on a free port of ``host``; yields its base URL and
    stops it on exit (for tests and benchmarks; scripts/serve.py runs it in the main thread)."""
    sock = socket.create_server((host, 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=5))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        while not server.started:
            if not thread.is_alive():
                raise RuntimeError("the server thread ended before it started listening")
            time.sleep(0.02)
        yield f"http://{host}:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
