"""FCN segmentation models: ``FCN(num_classes, backbone, variant, ...)`` on torchvision trunks."""

from segnet.models.backbones import (
    BACKBONES,
    IMAGENET_WEIGHTS,
    PretrainedWeightsUnavailable,
    build_backbone,
)
from segnet.models.fcn import ARCHITECTURE_KEYS, FCN, VARIANTS, fcn_from_hparams

__all__ = [
    "ARCHITECTURE_KEYS",
    "BACKBONES",
    "FCN",
    "IMAGENET_WEIGHTS",
    "VARIANTS",
    "PretrainedWeightsUnavailable",
    "build_backbone",
    "fcn_from_hparams",
]
