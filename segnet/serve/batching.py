"""One model, many requests: an asyncio queue in front of a single model thread.

Requests put their decoded image on the queue and await a future. One collector task takes the
first waiting image, lets ``window`` seconds pass for others to arrive (none when the queue
already holds more), groups what it has by image size and hands each group to the one model
thread as one ``predict`` call: equally sized images share a forward pass, different sizes are
never padded into one batch (padding changes an FCN's prediction near the border; see
docs/design.md). While the model works, new requests queue up, so under load batches fill
without any waiting at all.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

Predict = Callable[[list[np.ndarray]], Sequence[np.ndarray]]


@dataclass
class _Item:
    rgb: np.ndarray  # uint8 (H, W, 3)
    future: asyncio.Future
    queued: float = field(default_factory=time.perf_counter)


@dataclass
class Prediction:
    labels: np.ndarray  # uint8 (H, W)
    queue_s: float  # from submit to the start of its forward pass
    model_s: float  # the forward pass it shared
    batch: int  # images in that pass


class Batcher:
    """Runs ``predict(list of same-size uint8 (H, W, 3)) -> list of uint8 (H, W)`` for
    requests in batches of at most ``max_batch``, in one thread, one batch at a time."""

    def __init__(self, predict: Predict, max_batch: int, window_s: float) -> None:
        self._predict = predict
        self.max_batch = max_batch
        self.window_s = window_s
        self._queue: asyncio.Queue[_Item] = asyncio.Queue()
        self._model = ThreadPoolExecutor(max_workers=1, thread_name_prefix="segnet-model")
        self._task: asyncio.Task | None = None
        self._running: list[_Item] = []  # the group on the model now

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="segnet-batcher")

    async def stop(self) -> None:
        """Stop collecting; whoever still waits learns it (nothing waits forever)."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        waiting = list(self._running)
        while not self._queue.empty():
            waiting.append(self._queue.get_nowait())
        for item in waiting:
            if not item.future.done():
                item.future.set_exception(RuntimeError("the model stopped before this request"))
        self._model.shutdown(wait=False)

    async def call(self, fn: Callable, *args):
        """Run ``fn(*args)`` on the model thread (warm-up, anything that must not overlap)."""
        return await asyncio.get_running_loop().run_in_executor(self._model, fn, *args)

    async def predict(self, rgb: np.ndarray) -> Prediction:
        item = _Item(rgb, asyncio.get_running_loop().create_future())
        self._queue.put_nowait(item)
        return await item.future

    async def _collect(self) -> list[_Item]:
        items = [await self._queue.get()]
        deadline = time.perf_counter() + self.window_s
        while len(items) < self.max_batch:
            if self._queue.empty():
                left = deadline - time.perf_counter()
                if left <= 0:
                    break
                try:
                    items.append(await asyncio.wait_for(self._queue.get(), left))
                except asyncio.TimeoutError:
                    break
            else:
                items.append(self._queue.get_nowait())
        # A request that timed out or whose client left is not worth a forward pass.
        return [item for item in items if not item.future.done()]

    async def _run(self) -> None:
        while True:
            items = await self._collect()
            groups: dict[tuple[int, ...], list[_Item]] = {}
            for item in items:
                groups.setdefault(item.rgb.shape, []).append(item)
            for group in groups.values():
                await self._run_group(group)

    async def _run_group(self, group: list[_Item]) -> None:
        start = time.perf_counter()
        self._running = group
        try:
            labels = await self.call(self._predict, [item.rgb for item in group])
        except Exception as err:  # every waiting request learns of it; the loop goes on
            for item in group:
                if not item.future.done():
                    item.future.set_exception(err)
            return
        finally:
            self._running = []
        model_s = time.perf_counter() - start
        for item, result in zip(group, labels, strict=True):
            if not item.future.done():
                item.future.set_result(Prediction(result, start - item.queued, model_s, len(group)))
