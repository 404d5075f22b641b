"""infer's writer: each image's files encoded and written as one set in a thread pool, so the
model never waits for the disk, with at most a few sets queued."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np

from segnet.predict.segmenter import Segmenter
from segnet.tasks.infer_inputs import Job
from segnet.tasks.infer_outputs import write_outputs
from segnet.tasks.infer_summary import Summary


class OutputWriter:
    """Writes output sets in ``threads`` threads and counts them in ``summary``.

    A set is counted in the writer thread once it is on disk: Ctrl-C lands in the main thread
    (Python raises it there), so every set that reached the disk is counted, whenever the run
    is stopped. A write that fails for lack of room or a bad name skips its image (``on_skip``
    is told, for the progress bar); anything else is a bug and is raised.

    Args:
        seg: the Segmenter whose colours and encoders write the files.
        threads: writer threads; at most ``2 * threads`` sets wait to be written.
        summary: where written sets and skipped images are counted.
        on_skip: called with ``(job, reason)`` for each image skipped.
    """

    def __init__(
        self,
        seg: Segmenter,
        threads: int,
        summary: Summary,
        on_skip: Callable[[Job, str], None],
    ) -> None:
        self.seg, self.summary, self.on_skip = seg, summary, on_skip
        self.queue_limit = 2 * threads
        self._pool = ThreadPoolExecutor(max_workers=threads)
        self._pending: deque[Future] = deque()  # oldest first
        self._counting = threading.Lock()

    def skip(self, job: Job, reason: str) -> None:
        with self._counting:
            self.summary.skipped.append((str(job.source), reason))
        self.on_skip(job, reason)

    def submit(self, job: Job, pixels: np.ndarray, labels: np.ndarray, probs, alpha: float) -> None:
        """Queue one image's set; waits while the queue is full."""
        self._pending.append(self._pool.submit(self._write, job, pixels, labels, probs, alpha))
        self._settle(self.queue_limit)

    def finish(self) -> None:
        """Wait until every queued set is written."""
        self._settle(0)

    def close(self) -> None:
        """Let the writes under way finish (each whole) and drop those not started: after
        :meth:`finish` there are none; after an interruption the run stops soon."""
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._settle(0)

    def _write(self, job: Job, *args) -> None:
        try:
            write_outputs(self.seg, job, *args)
        except (OSError, UnicodeError) as err:
            self.skip(job, f"cannot write outputs: {err}")
            return
        with self._counting:
            self.summary.written += 1

    def _settle(self, limit: int) -> None:
        while len(self._pending) > limit:
            future = self._pending.popleft()
            if not future.cancelled():
                future.result()  # anything but a write error is a bug: raised here
