"""``scripts/make_demo_data.py``: generate the demo dataset in Pascal VOC's layout."""

from __future__ import annotations

import time

from omegaconf import DictConfig

from segnet.data.demo import generate_demo_dataset
from segnet.tasks.cli import EXIT_OK


def make_demo_command(cfg: DictConfig) -> int:
    """Generate the demo dataset (configs/make_demo_data.yaml) and say where it went.

    Raises:
        ValueError: bad num_train, num_val or seed; DataError (a ValueError) for a root that is
            a file or not writable; FileExistsError for a root holding a real VOCdevkit.
    """
    start = time.perf_counter()
    root = generate_demo_dataset(cfg.root, cfg.num_train, cfg.num_val, cfg.seed)
    print(
        f"wrote {cfg.num_train} train + {cfg.num_val} val images to "
        f"{root.resolve() / 'VOCdevkit' / 'VOC2012'} in {time.perf_counter() - start:.1f} s"
    )
    return EXIT_OK
