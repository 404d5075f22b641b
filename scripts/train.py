"""Train an FCN with PyTorch Lightning, configured by Hydra (configs/train.yaml).

python scripts/train.py experiment=demo                  # the CPU demo on generated data
python scripts/train.py data.root=/data model.backbone=resnet18 trainer.max_epochs=30
python scripts/train.py ckpt_path=outputs/train/.../checkpoints/last.ckpt   # resume
python scripts/train.py -m optim.lr=0.01,0.001           # a sweep, one folder per run
python scripts/train.py --cfg job                        # print the composed config
"""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from segnet.tasks.config import ConfigError
from segnet.tasks.train import train


@hydra.main(version_base="1.3", config_path="../configs", config_name="train")
def main(cfg: DictConfig) -> float | None:
    """Returns the best val mIoU, the objective for Hydra sweeper plugins."""
    try:
        result = train(cfg)
    except ConfigError as err:
        sys.exit(f"error: {err}")
    return (result.get("val") or {}).get("miou")


if __name__ == "__main__":
    main()
