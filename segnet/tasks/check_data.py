"""``scripts/check_data.py``: scan a dataset and print what is wrong with it."""

from __future__ import annotations

from omegaconf import DictConfig

from segnet.data.check import check_dataset, class_names_for, format_report
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
