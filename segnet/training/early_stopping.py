"""Early stopping on ``val/miou``, off unless ``callbacks.early_stopping.patience`` is set.

Lightning's :class:`~pytorch_lightning.callbacks.EarlyStopping` needs a patience; with
``patience=None`` this subclass never checks and never stops, so the shipped config can name it
while training runs to ``trainer.max_epochs`` / ``max_steps`` as before. With a patience it
checks after every validation (not at the training epoch's end, so a
``trainer.val_check_interval`` below one epoch counts validations, not epochs) and, when it
stops the run, prints one line saying at which validation and why.
"""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import EarlyStopping
from pytorch_lightning.callbacks.early_stopping import EarlyStoppingReason
from pytorch_lightning.utilities import rank_zero_only


class EarlyStopOnMiou(EarlyStopping):
    """Stop when ``monitor`` has not improved by more than ``min_delta`` for ``patience``
    validations in a row; inert when ``patience`` is None.

    Args:
        patience: validations without improvement before stopping (None: never stop).
        monitor: the logged score to watch.
        mode: ``"max"`` (higher is better) or ``"min"``.
        min_delta: the smallest change that counts as an improvement.
    """

    def __init__(
        self,
        patience: int | None = None,
        monitor: str = "val/miou",
        mode: str = "max",
        min_delta: float = 0.0,
    ) -> None:
        if patience is not None and patience < 1:
            raise ValueError(
                f"callbacks.early_stopping.patience must be >= 1 or null, got {patience}"
            )
        super().__init__(
            monitor=monitor,
            mode=mode,
            min_delta=min_delta,
            patience=0 if patience is None else patience,
            check_on_train_epoch_end=False,
        )
        self.enabled = patience is not None
        self.configured_patience = self.patience
        self.validations = 0
        self.best_epoch: int | None = None

    def _run_early_stopping_check(self, trainer: pl.Trainer) -> None:
        if not self.enabled:
            return
        self.validations += 1
        was_stopping = trainer.should_stop
        super()._run_early_stopping_check(trainer)
        if self.wait_count == 0 and self.monitor in trainer.callback_metrics:
            self.best_epoch = trainer.current_epoch  # this validation improved on the best
        if trainer.should_stop and not was_stopping:
            _echo(self._stop_line(trainer))

    def _stop_line(self, trainer: pl.Trainer) -> str:
        if self.stopping_reason == EarlyStoppingReason.PATIENCE_EXHAUSTED:
            times = f"{self.patience} validation{'' if self.patience == 1 else 's'}"
            why = f"{self.monitor} did not improve for {times} in a row"
        else:  # a NaN score: a validation without one labelled pixel
            why = f"{self.monitor} is not finite"
        return (
            f"early stopping at validation {self.validations} (epoch {trainer.current_epoch}, "
            f"global step {trainer.global_step}): {why}; best {self.monitor} "
            f"{float(self.best_score):.4f} at epoch {self.best_epoch} (checkpoints/best.ckpt)"
        )

    def state_dict(self) -> dict[str, Any]:
        return {
            **super().state_dict(),
            "validations": self.validations,
            "best_epoch": self.best_epoch,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        # The patience is this run's setting, not the one the checkpoint was saved under.
        self.patience = self.configured_patience
        self.validations = state_dict.get("validations", 0)
        self.best_epoch = state_dict.get("best_epoch")


@rank_zero_only
def _echo(text: str) -> None:
    print(text, flush=True)
