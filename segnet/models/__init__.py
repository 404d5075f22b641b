"""FCN segmentation models: ``FCN(num_classes, backbone, variant, ...)`` on torchvision trunks."""

from segnet.models.backbones import (
    BACKBONES,
    IMAGENET_WEIGHTS,
    PretrainedWeightsUnavailable,
    build_backbone,
)
from segnet.models.fcn import FCN, VARIANTS

__all__ = [
    "BACKBONES",
    "FCN",
    "IMAGENET_WEIGHTS",
    "VARIANTS",
    "PretrainedWeightsUnavailable",
    "build_backbone",
]
