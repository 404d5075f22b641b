"""The dataset commands: ``scripts/check_data.py`` and ``scripts/make_demo_data.py``."""

from __future__ import annotations

import time

from omegaconf import DictConfig

from segnet.data.check import check_dataset, class_names_for, format_report
from segnet.data.demo import generate_demo_dataset
from segnet.data.images import DataError
from segnet.tasks.cli import EXIT_OK, EXIT_PARTIAL


def check_command(cfg: DictConfig) -> int:
    """Scan the dataset (configs/check_data.yaml), print the report; 1 if anything is wrong.

    Raises:
        DataError: no dataset at ``root`` (missing, a file, or without VOCdevkit/VOC<year>).
    """
    num_classes = cfg.num_classes if cfg.class_names is None else len(cfg.class_names)
    names = class_names_for(num_classes, cfg.class_names)
    report = check_dataset(cfg.root, str(cfg.year), list(cfg.splits), num_classes)
    if report.dataset_problems:  # no dataset at root: nothing was scanned
        raise DataError("; ".join(report.dataset_problems))
    print(format_report(report, names))
    return EXIT_OK if report.ok else EXIT_PARTIAL


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
