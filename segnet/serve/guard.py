"""Admission at the door, before any route: draining, the API key, in-flight counting."""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from segnet.serve.uploads import ApiError, error_response

# Open without a key: a load balancer's probe, and the page itself (static files holding no
# data; the page asks for the key and sends it with its API calls).
OPEN_PATHS = ("/healthz", "/", "/static/")


@dataclass
class ServiceState:
    ready: bool = False  # the model has made its warm-up pass
    draining: bool = False  # a stop was asked for: new requests get 503
    in_flight: int = 0  # HTTP requests being answered
    waiting: int = 0  # segment requests admitted and not yet answered


class Guard:
    """ASGI middleware: 503 while draining, 401 without the API key, and counts in-flight
    requests so a graceful stop knows when the last one is done."""

    def __init__(self, app, state: ServiceState, api_key: str | None) -> None:
        self.app = app
        self.state = state
        self.api_key = None if api_key is None else api_key.encode()

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope["path"]
        if self.state.draining and path != "/healthz":
            refusal = ApiError(503, "server is shutting down", {"Connection": "close"})
            return await error_response(refusal)(scope, receive, send)
        if self.api_key is not None and not _open(path) and not self._authorized(scope):
            refusal = ApiError(
                401,
                "missing or wrong API key: send 'Authorization: Bearer <key>'",
                {"WWW-Authenticate": "Bearer"},
            )
            return await error_response(refusal)(scope, receive, send)
        self.state.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.state.in_flight -= 1

    def _authorized(self, scope) -> bool:
        header = dict(scope["headers"]).get(b"authorization", b"")
        scheme, _, key = header.partition(b" ")
        # Constant time over the key, so its bytes cannot be guessed one by one from timing.
        return scheme.lower() == b"bearer" and hmac.compare_digest(key.strip(), self.api_key)


def _open(path: str) -> bool:
    return path in OPEN_PATHS[:2] or path.startswith(OPEN_PATHS[2])
