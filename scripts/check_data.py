"""Scan a dataset in VOC's layout and list every problem; exit status 1 if any.

python scripts/check_data.py root=/path/holding/VOCdevkit [year=2012] [splits=[train,val]]
"""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from segnet.data.check import check_dataset, class_names_for, format_report


@hydra.main(config_path="../configs", config_name="check_data", version_base="1.3")
def main(cfg: DictConfig) -> None:
    num_classes = cfg.num_classes if cfg.class_names is None else len(cfg.class_names)
    names = class_names_for(num_classes, cfg.class_names)
    report = check_dataset(cfg.root, str(cfg.year), list(cfg.splits), num_classes)
    print(format_report(report, names))
    if not report.ok:
        sys.exit(1)


if __name__ == "__main__":
    main()
