"""Write the synthetic demo dataset in Pascal VOC 2012's layout.

    python scripts/make_demo_data.py root=data/demo [num_train=600 num_val=150 seed=0]

The result, ``root/VOCdevkit/VOC2012``, trains with ``data.root=<root>`` like the real VOC.
"""

from __future__ import annotations

import time

import hydra
from omegaconf import DictConfig

from segnet.data.demo import generate_demo_dataset


@hydra.main(config_path="../configs", config_name="make_demo_data", version_base="1.3")
def main(cfg: DictConfig) -> None:
    start = time.perf_counter()
    root = generate_demo_dataset(cfg.root, cfg.num_train, cfg.num_val, cfg.seed)
    print(
        f"wrote {cfg.num_train} train + {cfg.num_val} val images to "
        f"{root.resolve() / 'VOCdevkit' / 'VOC2012'} in {time.perf_counter() - start:.1f} s"
    )


if __name__ == "__main__":
    main()
