"""Bilinear upsampling as a learnable transposed convolution (Long, Shelhamer & Darrell, 2015).

FCN upsamples class scores with transposed convolutions whose filters start as bilinear
interpolation; the paper froze the final one, d2l trains them. :class:`BilinearUpsample` is
that layer for an integer factor ``f``: kernel ``2f - f % 2``, stride ``f``, padding
``ceil((f - 1) / 2)``, one filter per channel (depthwise), no bias.

On CPU the forward and backward passes use a polyphase decomposition rather than PyTorch's
depthwise ``conv_transpose2d``, whose weight gradient is slow there (see
``segnet/benchmarks/layers.py``). Output pixel ``(h*f + ry, w*f + rx)`` only ever sees the 3x3
input neighbourhood of ``(h, w)``, so the layer is one small matrix product per channel,
``(H*W, 9) @ (9, f*f)``, copied phase by phase into the output: one output-sized allocation in
the forward pass, none in the backward. It is the same transposed convolution, to float
rounding; on other devices, and under tracing or ``torch.compile``, the layer calls
``conv_transpose2d`` itself.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

# Output elements per chunk of the CPU path (16 MiB of float32, about one image of 21 classes
# at 320x480): the chunk buffer stays small next to the output, and there are few chunks, each
# a few parallel regions, which are what cost most when other processes share the CPU.
_CHUNK_NUMEL = 1 << 22


def bilinear_kernel(kernel_size: int) -> Tensor:
    """The 2-D bilinear interpolation filter of FCN/Caffe, shape (k, k), float32.

    With ``factor = (k + 1) // 2`` and ``centre = factor - 1`` for odd ``k`` (``factor - 0.5``
    for even ``k``), the 1-D taps are ``1 - |i - centre| / factor`` and the filter is their outer
    product. Used as the kernel of a stride-``factor`` transposed convolution it interpolates
    bilinearly; e.g. ``k = 4`` gives taps ``[0.25, 0.75, 0.75, 0.25]``.
    """
    if isinstance(kernel_size, bool) or not isinstance(kernel_size, int) or kernel_size < 1:
        raise ValueError(f"kernel_size must be an int >= 1, got {kernel_size!r}")
    factor = (kernel_size + 1) // 2
    centre = factor - 1 if kernel_size % 2 == 1 else factor - 0.5
    taps = 1 - (torch.arange(kernel_size, dtype=torch.float64) - centre).abs() / factor
    return torch.outer(taps, taps).float()


class BilinearUpsample(nn.Module):
    """Upsample each channel independently by an integer ``factor``: (N, C, H, W) -> (N, C, fH, fW).

    A depthwise transposed convolution (kernel ``k = 2f - f % 2``, stride ``f``, padding
    ``ceil((f - 1) / 2)``, no bias) initialised with :func:`bilinear_kernel`, so channels never
    mix and the output is exactly ``factor`` times larger for every input size.

    Compared with ``F.interpolate(x, scale_factor=f, mode="bilinear", align_corners=False)``
    at initialisation: away from the border the two are equal (to float rounding). The first
    and last ``f // 2`` output rows and columns, whose sampling point lies outside the input,
    differ: ``interpolate`` repeats the edge pixel there, while the transposed convolution
    interpolates towards zero, as if the input were zero-padded. A constant image of ones thus
    comes out as ones in the interior, ``(1 + 1/f) / 2`` on the outermost rows and columns and
    the square of that in the corners.

    Args:
        channels: number of channels C (one filter each).
        factor: integer upsampling factor f >= 1.
        trainable: learn the filters (d2l) or freeze them (the original FCN). Frozen filters
            stay a parameter, with ``requires_grad=False``.

    The only parameter is ``weight``, shape (C, 1, k, k), the layout of a depthwise
    ``nn.ConvTranspose2d``.
    """

    def __init__(self, channels: int, factor: int, trainable: bool = True) -> None:
        super().__init__()
        for name, value in (("channels", channels), ("factor", factor)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")
        self.channels = channels
        self.factor = factor
        self.kernel_size = 2 * factor - factor % 2
        self.padding = math.ceil((factor - 1) / 2)
        self.trainable = bool(trainable)
        k = self.kernel_size
        self.weight = nn.Parameter(torch.empty(channels, 1, k, k), requires_grad=self.trainable)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Set every channel's filter to the bilinear kernel."""
        with torch.no_grad():
            self.weight.copy_(bilinear_kernel(self.kernel_size).expand_as(self.weight))

    def forward(self, x: Tensor) -> Tensor:
        """(N, C, H, W) -> (N, C, factor*H, factor*W)."""
        if x.dim() != 4 or x.shape[1] != self.channels:
            raise ValueError(
                f"expected input of shape (N, {self.channels}, H, W), got {tuple(x.shape)}"
            )
        traced = torch.jit.is_tracing() or torch.compiler.is_compiling()
        if x.device.type == "cpu" and x.numel() > 0 and not traced:
            return _PolyphaseUpsample.apply(x, _phase_filters(self.weight, self.factor))
        return F.conv_transpose2d(
            x, self.weight, stride=self.factor, padding=self.padding, groups=self.channels
        )

    def extra_repr(self) -> str:
        return (
            f"{self.channels}, factor={self.factor}, kernel_size={self.kernel_size}, "
            f"padding={self.padding}, trainable={self.trainable}"
        )


def _phase_filters(weight: Tensor, factor: int) -> Tensor:
    """(C, 1, k, k) filters -> (C, 9, f*f) polyphase filters.

    Output ``o = h*f + r`` receives input ``h + d`` (d in -1, 0, 1) through kernel tap
    ``a = r + p - d*f`` (zero if outside ``[0, k)``). Padding the kernel to ``3f`` taps starting
    at ``p - f`` makes block ``1 - d`` of it exactly those taps.
    """
    channels, k, f = weight.shape[0], weight.shape[-1], factor
    p = math.ceil((f - 1) / 2)
    before, after = f - p, 2 * f + p - k
    taps = F.pad(weight[:, 0], (before, after, before, after)).view(channels, 3, f, 3, f)
    # (C, 1-di, ry, 1-dj, rx) -> (C, (di, dj), (ry, rx)) with di, dj running -1, 0, 1, the
    # order of _neighbourhoods.
    return taps.flip(1, 3).permute(0, 1, 3, 2, 4).reshape(channels, 9, f * f)


class _PolyphaseUpsample(torch.autograd.Function):
    """Depthwise stride-f transposed convolution from polyphase filters, on CPU.

    x (N, C, H, W), filters (C, 9, f*f) -> (N, C, H*f, W*f). The 3x3 neighbourhoods of all
    planes are gathered once, (N*C, H*W, 9); then, up to one image's channels at a time, they
    are multiplied by the filters into a reused buffer (b, H*W, f*f) that is copied, phase by
    phase, into the output viewed as (b, H, f, W, f). Buffers are allocated once per call:
    fresh megabyte-sized allocations in the loop would each pay page faults.
    """

    @staticmethod
    # Under CPU autocast (bf16-mixed) the products run in float32: autocast does not reach the
    # backward pass, which would otherwise meet bf16 activations and float32 filters.
    @torch.amp.custom_fwd(device_type="cpu", cast_inputs=torch.float32)
    def forward(ctx, x: Tensor, filters: Tensor) -> Tensor:
        n, c, h, w = x.shape
        f = math.isqrt(filters.shape[-1])
        ctx.save_for_backward(x, filters)
        cols = _neighbourhoods(x.reshape(n * c, h, w))
        out = x.new_empty(n * c, h, f, w, f)
        chunks = _chunks(n, c, h * w * f * f)
        phases = x.new_empty(chunks[0][1] - chunks[0][0], h * w, f * f)
        for s, e, c0 in chunks:
            buf = phases[: e - s]
            torch.bmm(cols[s:e], filters[c0 : c0 + e - s], out=buf)
            out[s:e].copy_(buf.view(e - s, h, w, f, f).transpose(2, 3))
        return out.view(n, c, h * f, w * f)

    @staticmethod
    @once_differentiable
    @torch.amp.custom_bwd(device_type="cpu")
    def backward(ctx, grad_out: Tensor) -> tuple[Tensor | None, Tensor | None]:
        x, filters = ctx.saved_tensors
        n, c, h, w = x.shape
        f = math.isqrt(filters.shape[-1])
        need_x, need_filters = ctx.needs_input_grad
        grad_planes = grad_out.reshape(n * c, h, f, w, f)
        cols = _neighbourhoods(x.reshape(n * c, h, w)).transpose(1, 2) if need_filters else None
        grad_cols = x.new_empty(n * c, h * w, 9) if need_x else None
        grad_filters = torch.zeros_like(filters) if need_filters else None
        chunks = _chunks(n, c, h * w * f * f)
        phases = x.new_empty(chunks[0][1] - chunks[0][0], h * w, f * f)
        for s, e, c0 in chunks:
            buf = phases[: e - s]
            buf.view(e - s, h, w, f, f).copy_(grad_planes[s:e].permute(0, 1, 3, 2, 4))
            if grad_cols is not None:
                torch.bmm(buf, filters[c0 : c0 + e - s].transpose(1, 2), out=grad_cols[s:e])
            if grad_filters is not None:
                grad_filters[c0 : c0 + e - s].baddbmm_(cols[s:e], buf)
        grad_x = None
        if grad_cols is not None:
            # Each input pixel sent its value to 9 neighbourhoods; gather their gradients back.
            padded = x.new_zeros(n * c, h + 2, w + 2)
            grad_cols = grad_cols.view(n * c, h, w, 3, 3)
            for i in range(3):
                for j in range(3):
                    padded[:, i : i + h, j : j + w] += grad_cols[..., i, j]
            grad_x = padded[:, 1 : h + 1, 1 : w + 1].reshape(n, c, h, w)
        return grad_x, grad_filters


def _neighbourhoods(planes: Tensor) -> Tensor:
    """(P, H, W) -> (P, H*W, 9): the zero-padded 3x3 neighbourhood of every pixel, row-major.

    One strided copy. ``F.unfold`` computes the same, but with two threads on a busy CPU it
    measured orders of magnitude slower on many one-channel planes.
    """
    p, h, w = planes.shape
    windows = F.pad(planes, (1, 1, 1, 1)).unfold(1, 3, 1).unfold(2, 3, 1)  # (P, H, W, 3, 3) view
    return windows.reshape(p, h * w, 9)


def _chunks(images: int, channels: int, plane_numel: int) -> list[tuple[int, int, int]]:
    """(start, end, first channel) of runs of at most ``_CHUNK_NUMEL`` output elements, each
    within one image so that its filters are a contiguous slice."""
    step = max(1, min(channels, _CHUNK_NUMEL // plane_numel))
    return [
        (i * channels + c0, i * channels + min(c0 + step, channels), c0)
        for i in range(images)
        for c0 in range(0, channels, step)
    ]
