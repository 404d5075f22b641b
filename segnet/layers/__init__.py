"""Layers: reference transposed convolution and bilinear upsampling."""

from segnet.layers.transposed import conv_matrix, corr2d, trans_conv
from segnet.layers.upsample import BilinearUpsample, bilinear_kernel

__all__ = ["BilinearUpsample", "bilinear_kernel", "conv_matrix", "corr2d", "trans_conv"]
