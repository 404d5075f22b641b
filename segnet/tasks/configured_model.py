"""The model an eval, infer or serve config names, as a Segmenter with that config's settings."""

from __future__ import annotations

import torch
from omegaconf import DictConfig, OmegaConf

from segnet.predict.segmenter import Segmenter


def configured_segmenter(cfg: DictConfig, device: str | torch.device | None = None) -> Segmenter:
    """The model at ``cfg.ckpt_path`` (a .ckpt, or a .onnx from scripts/export.py) as a
    Segmenter with the ``tta``/``window``/... settings of an eval or infer config, on
    ``device`` (default ``cfg.device``)."""
    return Segmenter.load(
        cfg.ckpt_path,
        device=cfg.device if device is None else device,
        threads=cfg.get("threads"),
        flip=cfg.tta.flip,
        scales=list(cfg.tta.scales),
        window=OmegaConf.to_container(cfg.window) if OmegaConf.is_list(cfg.window) else cfg.window,
        overlap=cfg.overlap,
        blend=cfg.blend,
        max_pixels=cfg.max_pixels,
        batch_size=cfg.batch_size,
    )
