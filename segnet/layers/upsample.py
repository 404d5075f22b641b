"""Bilinear upsampling as a transposed convolution (Long, Shelhamer & Darrell, CVPR 2015)."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


def bilinear_kernel(kernel_size: int) -> Tensor:
    """The 2-D bilinear interpolation filter of FCN/Caffe, shape (k, k)."""
    if kernel_size < 1:
        raise ValueError(f"kernel_size must be >= 1, got {kernel_size}")
    factor = (kernel_size + 1) // 2
    centre = factor - 1 if kernel_size % 2 == 1 else factor - 0.5
    taps = 1 - (torch.arange(kernel_size, dtype=torch.float64) - centre).abs() / factor
    return torch.outer(taps, taps).float()


class BilinearUpsample(nn.Module):
    """Upsample every channel independently by an integer ``factor``.

    (N, C, H, W) -> (N, C, factor*H, factor*W). Depthwise transposed convolution
    initialised with :func:`bilinear_kernel`.
    """

    def __init__(self, channels: int, factor: int, trainable: bool = True) -> None:
        super().__init__()
        if factor < 1:
            raise ValueError(f"factor must be >= 1, got {factor}")
        kernel_size = 2 * factor - factor % 2
        self.factor = factor
        self.deconv = nn.ConvTranspose2d(
            channels,
            channels,
            kernel_size,
            stride=factor,
            padding=math.ceil((factor - 1) / 2),
            groups=channels,
            bias=False,
        )
        with torch.no_grad():
            self.deconv.weight.copy_(bilinear_kernel(kernel_size).expand_as(self.deconv.weight))
        self.deconv.weight.requires_grad_(trainable)

    def forward(self, x: Tensor) -> Tensor:
        return self.deconv(x)
