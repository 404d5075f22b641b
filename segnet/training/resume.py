"""What a resumed fit needs besides Lightning's own restore: log steps that continue.

Lightning logs every metric at ``fit_loop.epoch_loop._batches_that_stepped`` and, when it
restores a checkpoint, adds one to that count on the assumption that the checkpoint was saved
at a batch's end, before the count moved on. A checkpoint saved when a batch starts (a crash,
Ctrl-C or SIGTERM met there) already holds the right count: the resumed run then logs step
``k + 1`` for step ``k``, leaving a gap in ``metrics.csv`` and TensorBoard (seen: steps
``[..., 10, 12, ...]`` after a stop at step 11).
"""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl


class ContinuousLogSteps(pl.Callback):
    """Logs each step at its global step, whatever the restore assumed.

    With one optimiser every batch that steps it is one global step, so the count of batches
    that stepped *is* the global step (gradient accumulation included: only the batches that
    step are counted); it is set so at every batch start, before anything is logged.
    """

    def on_train_batch_start(self, trainer: pl.Trainer, *args: Any) -> None:
        trainer.fit_loop.epoch_loop._batches_that_stepped = trainer.global_step
