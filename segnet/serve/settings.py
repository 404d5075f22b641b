"""The service's limits and switches: plain values, checked once at start-up."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class ServeSettings:
    """What ``configs/serve.yaml`` sets besides the model and its prediction options.

    Args:
        max_upload_mb: largest request body; a larger one is answered 413 from its
            Content-Length, or as soon as a streamed body passes it (never read whole).
        max_pixels: largest decoded image (width x height, from the header, before decoding);
            more is 413, as is a file Pillow calls a decompression bomb.
        max_queue: requests admitted (decoding, waiting or on the model) at once; the next is
            answered 503 with ``Retry-After``.
        timeout_s: a request not answered in this many seconds gets 504 (the model finishes
            the batch it is on; the answer is dropped).
        batch_window_ms: how long the model thread waits after a first request for others of
            the same size to join its batch; 0 batches only what is already waiting.
        max_batch: images per forward pass at most.
        io_threads: threads decoding uploads and encoding answers, beside the model thread.
        alpha: weight of the class colours in ``format=overlay``.
        api_key: if set, every endpoint but /healthz needs ``Authorization: Bearer <api_key>``.
        cors_origins: origins allowed to call the API from a browser; empty: no CORS headers.
        retry_after_s: the ``Retry-After`` of a 503.
    """

    max_upload_mb: float = 20.0
    max_pixels: int = 50_000_000
    max_queue: int = 64
    timeout_s: float = 60.0
    batch_window_ms: float = 5.0
    max_batch: int = 4
    io_threads: int = 2
    alpha: float = 0.5
    api_key: str | None = None
    cors_origins: tuple[str, ...] = field(default_factory=tuple)
    retry_after_s: int = 1

    def __post_init__(self) -> None:
        problems = []
        positive = {
            "max_upload_mb": self.max_upload_mb,
            "max_pixels": self.max_pixels,
            "max_queue": self.max_queue,
            "timeout_s": self.timeout_s,
            "max_batch": self.max_batch,
            "io_threads": self.io_threads,
            "retry_after_s": self.retry_after_s,
        }
        problems += [f"{k}={v} must be > 0" for k, v in positive.items() if not v > 0]
        if not self.batch_window_ms >= 0:
            problems.append(f"batch_window_ms={self.batch_window_ms} must be >= 0")
        if not 0 <= self.alpha <= 1:
            problems.append(f"alpha={self.alpha} must be in [0, 1] (the overlay's colour weight)")
        if self.api_key is not None and not self.api_key.strip():
            problems.append("api_key is empty: set a real key, or null for no key")
        if problems:
            raise ValueError("; ".join(problems))

    @classmethod
    def from_mapping(cls, values: Mapping) -> ServeSettings:
        """From the ``limits``/``server`` keys of the config (unknown keys are an error)."""
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown serve setting(s) {unknown}; known: {sorted(known)}")
        plain = dict(values)
        origins = plain.get("cors_origins") or ()
        if isinstance(origins, str) or not isinstance(origins, Sequence):
            origins = [origins]
        plain["cors_origins"] = tuple(str(o) for o in origins)
        return cls(**plain)
