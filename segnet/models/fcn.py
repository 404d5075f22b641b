"""Fully convolutional networks: FCN-32s, FCN-16s and FCN-8s heads on a trunk.

Long, Shelhamer & Darrell, "Fully Convolutional Networks for Semantic Segmentation",
CVPR 2015 / PAMI 2017, Sec. 4.2 and Fig. 3:

    s32 = score32(c32)                                    # 1x1 conv, stride 32
    s16 = up2(s32) + score16(c16)                         # FCN-16s and FCN-8s
    s8  = up2(s16) + score8(c8)                           # FCN-8s
    logits = up_f(s_f), f = 32 / 16 / 8

where every ``up`` is a :class:`~segnet.layers.upsample.BilinearUpsample` (a depthwise transposed
convolution initialised to bilinear interpolation).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

from segnet.layers.upsample import BilinearUpsample
from segnet.models.backbones import build_backbone

VARIANTS: tuple[str, ...] = ("fcn32s", "fcn16s", "fcn8s")
_OUTPUT_STRIDE = {"fcn32s": 32, "fcn16s": 16, "fcn8s": 8}
_ALIGN = 32  # the trunk's total stride: inputs are padded to a multiple of it

ARCHITECTURE_KEYS: tuple[str, ...] = ("num_classes", "backbone", "variant", "trainable_upsample")
"""The :class:`FCN` arguments that decide which weights it has: a checkpoint's
``hyper_parameters`` must hold them to rebuild its network, and a run resumes only with the same
values. The other two arguments (``pretrained``, ``weights_path``) only say where the trunk's
first weights come from."""


class FCN(nn.Module):
    """FCN on a torchvision trunk: (N, 3, H, W) normalised images -> (N, num_classes, H, W) logits.

    Any H, W works. The input is zero-padded at the bottom and right to multiples of 32 and the
    logits are cropped back to H x W. Why padding rather than the original's align-crop: the
    original padded conv1_1 by 100 px and cropped with offsets derived from the exact layer
    geometry, which differs per backbone and costs ~2x the pixels on VOC-sized images. Padding at
    most 31 px makes every stride-8/16/32 map exactly H/8, H/16, H/32 so the 2x fusions line up
    with no crop at all, for every backbone. Padding only at the bottom/right keeps pixel (i, j) of
    the logits on pixel (i, j) of the image (nothing shifts); the zeros are the mean colour in
    ImageNet-normalised space, the same value ``pad_collate`` fills batches with.

    Initialisation follows the paper where it matters: skip score layers (score16, score8) are
    zero, so at the start FCN-16s/8s predict exactly what FCN-32s does and the skips learn a
    residual. score32 keeps PyTorch's default init rather than the paper's zero: a zero score32
    gives the trunk a zero gradient (W32^T g = 0) until score32 itself has moved, harmless for a
    pretrained trunk but a wasted start for one trained from scratch.
    No extra dropout is added: ResNets and MobileNet were trained without it before their
    classifier and rely on batch norm; VGG16 keeps the paper's dropout in its conv-ified fc6/fc7.

    Args:
        num_classes: output channels (21 for VOC: background + 20 classes).
        backbone: one of :data:`segnet.models.BACKBONES` (unknown names raise ValueError).
        variant: ``"fcn32s"``, ``"fcn16s"`` or ``"fcn8s"``.
        pretrained: start the trunk from torchvision's ImageNet weights (downloads once).
        weights_path: local ImageNet state dict for the trunk; overrides ``pretrained``.
        trainable_upsample: learn the bilinear-initialised upsampling filters (d2l) or freeze them
            (the original FCN's fixed interpolation).
    """

    def __init__(
        self,
        num_classes: int = 21,
        backbone: str = "resnet18",
        variant: str = "fcn8s",
        pretrained: bool = False,
        weights_path: str | None = None,
        trainable_upsample: bool = True,
    ) -> None:
        super().__init__()
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"num_classes must be an integer >= 1, got {num_classes!r}")
        if variant not in VARIANTS:
            raise ValueError(
                f"unknown FCN variant {variant!r}; choose one of {', '.join(VARIANTS)}"
            )
        self.num_classes, self.variant, self.backbone_name = num_classes, variant, backbone
        self.backbone = build_backbone(backbone, pretrained=pretrained, weights_path=weights_path)
        c8, c16, c32 = self.backbone.channels
        self.score32 = nn.Conv2d(c32, num_classes, 1)
        stride = _OUTPUT_STRIDE[variant]
        if stride <= 16:
            self.up32 = BilinearUpsample(num_classes, 2, trainable=trainable_upsample)
            self.score16 = _zero_conv(c16, num_classes)
        if stride <= 8:
            self.up16 = BilinearUpsample(num_classes, 2, trainable=trainable_upsample)
            self.score8 = _zero_conv(c8, num_classes)
        self.upsample = BilinearUpsample(num_classes, stride, trainable=trainable_upsample)

    def forward(self, x: Tensor) -> Tensor:
        """(N, 3, H, W) float -> (N, num_classes, H, W) float logits."""
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"FCN expects images of shape (N, 3, H, W), got {tuple(x.shape)}")
        height, width = x.shape[-2:]
        # Unconditional (a zero pad is a copy): a branch on the size would be frozen into an
        # exported graph at the traced size, and the pad amounts must stay shape arithmetic.
        x = F.pad(x, (0, -width % _ALIGN, 0, -height % _ALIGN))
        c8, c16, c32 = self.backbone(x)
        score = self.score32(c32)
        if self.variant != "fcn32s":
            score = self.up32(score) + self.score16(c16)
        if self.variant == "fcn8s":
            score = self.up16(score) + self.score8(c8)
        return self.upsample(score)[..., :height, :width]

    def backbone_parameters(self) -> list[nn.Parameter]:
        """The trunk's parameters (ImageNet-initialised when pretrained; usually a lower lr)."""
        return list(self.backbone.parameters())

    def head_parameters(self) -> list[nn.Parameter]:
        """Score layers and upsampling filters: every parameter outside the trunk."""
        trunk = {id(p) for p in self.backbone.parameters()}
        return [p for p in self.parameters() if id(p) not in trunk]


def fcn_from_hparams(hparams: Mapping[str, Any], **trunk_init: Any) -> FCN:
    """The FCN that ``hparams`` describe: the values of :data:`ARCHITECTURE_KEYS` taken from
    ``hparams`` (a checkpoint's ``hyper_parameters``, a LightningModule's ``hparams``; other keys
    are ignored), the trunk started as ``trunk_init`` says (``pretrained``, ``weights_path``;
    by default randomly: weights loaded afterwards replace it anyway).

    Raises:
        KeyError: ``hparams`` lacks one of :data:`ARCHITECTURE_KEYS`.
        ValueError: a value FCN refuses (unknown backbone or variant, bad class count).
    """
    return FCN(**{key: hparams[key] for key in ARCHITECTURE_KEYS}, **trunk_init)


def _zero_conv(in_channels: int, out_channels: int) -> nn.Conv2d:
    conv = nn.Conv2d(in_channels, out_channels, 1)
    nn.init.zeros_(conv.weight)
    nn.init.zeros_(conv.bias)
    return conv
