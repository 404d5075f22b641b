"""Segment images with a trained checkpoint (see configs/infer.yaml and segnet/tasks/infer.py).

    python scripts/infer.py ckpt_path=.../checkpoints/best.ckpt input=photos/ output_dir=pred/

Exit status: 0 if every image was written (or already there), 1 if any file was skipped,
2 for a bad checkpoint, bad settings or an input that matches nothing.
"""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from segnet.tasks.infer import infer


@hydra.main(version_base="1.3", config_path="../configs", config_name="infer")
def main(cfg: DictConfig) -> None:
    try:
        summary = infer(cfg)
    except (ValueError, FileNotFoundError) as err:  # CheckpointError, DataError, bad settings
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    print(
        f"written {summary.written}, skipped {len(summary.skipped)}, "
        f"existing {summary.existing} -> {cfg.output_dir}"
    )
    for source, reason in summary.skipped:
        print(f"  skipped {source}: {reason}", file=sys.stderr)
    sys.exit(1 if summary.skipped else 0)


if __name__ == "__main__":
    main()
