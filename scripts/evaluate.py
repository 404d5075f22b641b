"""Evaluate a checkpoint on a dataset split (see configs/eval.yaml and segnet/tasks/evaluate.py).

    python scripts/evaluate.py ckpt_path=.../checkpoints/best.ckpt data=demo data.root=data/demo

Exit status 2, with one line on stderr, for a bad checkpoint, bad data or bad settings.
"""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from segnet.tasks.evaluate import evaluate


@hydra.main(version_base="1.3", config_path="../configs", config_name="eval")
def main(cfg: DictConfig) -> None:
    try:
        evaluate(cfg)
    except ValueError as err:  # CheckpointError, DataError, bad settings
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
