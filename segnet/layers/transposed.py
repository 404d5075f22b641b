"""Reference 2-D cross-correlation and transposed convolution (d2l, "Transposed Convolution").

Single-channel, 2-D tensors only: these functions define the operations and back the unit
tests. Networks use the batched layers (``torch.nn.ConvTranspose2d``,
:class:`~segnet.layers.upsample.BilinearUpsample`).

A transposed convolution *broadcasts* each input element through the kernel, where a
convolution *reduces* a window of the input to one element. With the convolution written as
a matrix ``W`` (:func:`conv_matrix`), the transposed convolution is multiplication by
``W.T``, which is where its name comes from (Dumoulin & Visin, 2016, "A guide to convolution
arithmetic for deep learning").
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def corr2d(X: Tensor, K: Tensor) -> Tensor:
    """2-D cross-correlation without padding or stride (what deep learning calls convolution).

    ``Y[i, j] = (X[i:i+kh, j:j+kw] * K).sum()``.

    Args:
        X: input, shape (h, w).
        K: kernel, shape (kh, kw), no larger than ``X``.

    Returns:
        Tensor of shape (h - kh + 1, w - kw + 1), dtype promoted from ``X`` and ``K``.
    """
    _check_2d(X, "X")
    _check_2d(K, "K")
    (h, w), (kh, kw) = X.shape, K.shape
    if kh > h or kw > w:
        raise ValueError(f"kernel of shape {tuple(K.shape)} is larger than input {tuple(X.shape)}")
    windows = X.unfold(0, kh, 1).unfold(1, kw, 1)  # (h-kh+1, w-kw+1, kh, kw), a view
    return (windows * K).sum(dim=(-2, -1))


def trans_conv(
    X: Tensor, K: Tensor, stride: int | tuple[int, int] = 1, padding: int | tuple[int, int] = 0
) -> Tensor:
    """2-D transposed convolution by its broadcast definition.

    Every input element ``X[i, j]`` scales the whole kernel, and the scaled copy is added to
    the output at rows ``i*sh : i*sh+kh`` and columns ``j*sw : j*sw+kw``: the stride spaces the
    copies out on the *output*. Padding then removes ``ph`` rows from the top and bottom and
    ``pw`` columns from the left and right of that output (it is never added to the input).

    Args:
        X: input, shape (h, w).
        K: kernel, shape (kh, kw).
        stride: int or (sh, sw), each >= 1.
        padding: int or (ph, pw), each >= 0.

    Returns:
        Tensor of shape (sh*(h-1) + kh - 2*ph, sw*(w-1) + kw - 2*pw), floating point. This is
        ``torch.nn.functional.conv_transpose2d`` for one input and one output channel.
    """
    _check_2d(X, "X")
    _check_2d(K, "K")
    sh, sw = _pair(stride, "stride", minimum=1)
    ph, pw = _pair(padding, "padding", minimum=0)
    (h, w), (kh, kw) = X.shape, K.shape
    full = (sh * (h - 1) + kh, sw * (w - 1) + kw)
    if 2 * ph >= full[0] or 2 * pw >= full[1]:
        raise ValueError(
            f"padding {(ph, pw)} removes the whole {full[0]}x{full[1]} output "
            f"(input {tuple(X.shape)}, kernel {tuple(K.shape)}, stride {(sh, sw)})"
        )
    dtype = torch.promote_types(torch.result_type(X, K), torch.float32)
    # blocks[:, i*w + j] is the kernel scaled by X[i, j], flattened; fold places each block at
    # (i*sh, j*sw), sums where blocks overlap, and crops `padding` from every side.
    blocks = (X.to(dtype).reshape(1, -1) * K.to(dtype).reshape(-1, 1)).unsqueeze(0)
    Y = F.fold(blocks, full, (kh, kw), stride=(sh, sw))
    return Y[0, 0, ph : full[0] - ph, pw : full[1] - pw]


def conv_matrix(K: Tensor, input_shape: tuple[int, int]) -> Tensor:
    """The matrix of :func:`corr2d` with kernel ``K`` on inputs of shape ``input_shape``.

    Row ``i*ow + j`` holds the kernel at the positions of window ``(i, j)`` of the flattened
    input, so for any ``X`` of shape (h, w) and ``Y`` of shape (oh, ow) = (h-kh+1, w-kw+1)::

        W @ X.flatten()   == corr2d(X, K).flatten()
        W.T @ Y.flatten() == trans_conv(Y, K).flatten()

    Args:
        K: kernel, shape (kh, kw).
        input_shape: (h, w) of the convolution's input, each at least the kernel's size.

    Returns:
        Tensor of shape (oh*ow, h*w), dtype of ``K`` promoted to floating point.
    """
    _check_2d(K, "K")
    h, w = _pair(input_shape, "input_shape", minimum=1)
    kh, kw = K.shape
    if kh > h or kw > w:
        raise ValueError(f"kernel of shape {tuple(K.shape)} is larger than input {(h, w)}")
    oh, ow = h - kh + 1, w - kw + 1
    dtype = torch.promote_types(K.dtype, torch.float32)
    i = torch.arange(oh).view(oh, 1, 1, 1)
    j = torch.arange(ow).view(1, ow, 1, 1)
    a = torch.arange(kh).view(1, 1, kh, 1)
    b = torch.arange(kw).view(1, 1, 1, kw)
    rows = (i * ow + j).expand(oh, ow, kh, kw)
    cols = (i + a) * w + (j + b)  # (oh, ow, kh, kw): input index under kernel tap (a, b)
    W = torch.zeros(oh * ow, h * w, dtype=dtype, device=K.device)
    W[rows.reshape(-1), cols.reshape(-1)] = K.to(dtype).expand(oh, ow, kh, kw).reshape(-1)
    return W


def _check_2d(T: Tensor, name: str) -> None:
    if not isinstance(T, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(T).__name__}")
    if T.dim() != 2 or T.numel() == 0:
        raise ValueError(f"{name} must be a non-empty 2-D tensor, got shape {tuple(T.shape)}")


def _pair(value: int | tuple[int, int], name: str, minimum: int) -> tuple[int, int]:
    pair = (value, value) if isinstance(value, int) else value
    if (
        not isinstance(pair, (tuple, list, torch.Size))
        or len(pair) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) for v in pair)
    ):
        raise TypeError(f"{name} must be an int or a pair of ints, got {value!r}")
    if min(pair) < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value!r}")
    return pair[0], pair[1]
