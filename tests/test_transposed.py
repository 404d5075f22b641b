"""corr2d / trans_conv / conv_matrix: the seed chapter's numbers, checked against PyTorch's ops."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F

from segnet.layers.transposed import conv_matrix, corr2d, trans_conv

X2 = torch.tensor([[0.0, 1.0], [2.0, 3.0]])
K2 = torch.tensor([[0.0, 1.0], [2.0, 3.0]])


def test_seed_trans_conv_no_padding():
    expected = torch.tensor([[0.0, 0.0, 1.0], [0.0, 4.0, 6.0], [4.0, 12.0, 9.0]])
    assert torch.equal(trans_conv(X2, K2), expected)


def test_seed_trans_conv_padding_removes_output_border():
    assert torch.equal(trans_conv(X2, K2, padding=1), torch.tensor([[4.0]]))


def test_seed_trans_conv_stride_spaces_the_output():
    expected = torch.tensor(
        [[0.0, 0.0, 0.0, 1.0], [0.0, 0.0, 2.0, 3.0], [0.0, 2.0, 0.0, 3.0], [4.0, 6.0, 6.0, 9.0]]
    )
    assert torch.equal(trans_conv(X2, K2, stride=2), expected)


def test_seed_matrix_transposition_example():
    X = torch.arange(9.0).reshape(3, 3)
    K = torch.tensor([[0, 1], [2, 3]])  # integer kernel, as in the seed
    Y = corr2d(X, K)
    assert torch.equal(Y, torch.tensor([[19.0, 25.0], [37.0, 43.0]]))
    W = conv_matrix(K, (3, 3))
    expected_W = torch.tensor(
        [
            [0.0, 1.0, 0.0, 2.0, 3.0, 0.0, 0.0, 0.0, 0.0],
            [0.0, 0.0, 1.0, 0.0, 2.0, 3.0, 0.0, 0.0, 0.0],
            [0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 2.0, 3.0, 0.0],
            [0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 2.0, 3.0],
        ]
    )
    assert torch.equal(W, expected_W)
    assert torch.equal(torch.mv(W, X.reshape(-1)).reshape(2, 2), Y)
    Z = trans_conv(X2, K)
    assert torch.equal(torch.mv(W.T, X2.reshape(-1)).reshape(3, 3), Z)


@pytest.mark.parametrize("input_shape", [(1, 1), (3, 5), (6, 4)])
@pytest.mark.parametrize("kernel_shape", [(1, 1), (2, 3), (3, 2)])
def test_conv_matrix_any_shape(input_shape, kernel_shape):
    if kernel_shape[0] > input_shape[0] or kernel_shape[1] > input_shape[1]:
        with pytest.raises(ValueError, match="larger than input"):
            conv_matrix(torch.ones(kernel_shape), input_shape)
        return
    torch.manual_seed(0)
    X = torch.randn(input_shape, dtype=torch.float64)
    K = torch.randn(kernel_shape, dtype=torch.float64)
    W = conv_matrix(K, input_shape)
    oh, ow = input_shape[0] - kernel_shape[0] + 1, input_shape[1] - kernel_shape[1] + 1
    assert W.shape == (oh * ow, input_shape[0] * input_shape[1])
    torch.testing.assert_close(W @ X.flatten(), corr2d(X, K).flatten())
    Y = torch.randn(oh, ow, dtype=torch.float64)
    torch.testing.assert_close(W.T @ Y.flatten(), trans_conv(Y, K).flatten())
    # Adjointness: <W x, y> == <x, W^T y>, i.e. <corr2d(X), Y> == <X, trans_conv(Y)>.
    torch.testing.assert_close((corr2d(X, K) * Y).sum(), (X * trans_conv(Y, K)).sum())


@pytest.mark.parametrize(
    ("size", "kernel"),
    list(itertools.product([(1, 1), (2, 3), (4, 4)], [(1, 1), (2, 3), (3, 3)])),
)
def test_trans_conv_matches_conv_transpose2d(size, kernel):
    torch.manual_seed(0)
    X, K = torch.randn(size, dtype=torch.float64), torch.randn(kernel, dtype=torch.float64)
    for stride, padding in itertools.product([1, 2, 3], [0, 1]):
        full = (stride * (size[0] - 1) + kernel[0], stride * (size[1] - 1) + kernel[1])
        if 2 * padding >= min(full):
            with pytest.raises(ValueError, match="removes the whole"):
                trans_conv(X, K, stride=stride, padding=padding)
            continue
        ours = trans_conv(X, K, stride=stride, padding=padding)
        ref = F.conv_transpose2d(X[None, None], K[None, None], stride=stride, padding=padding)
        torch.testing.assert_close(ours, ref[0, 0])


def test_trans_conv_rectangular_stride_and_padding():
    torch.manual_seed(0)
    X, K = torch.randn(3, 4, dtype=torch.float64), torch.randn(3, 2, dtype=torch.float64)
    ours = trans_conv(X, K, stride=(2, 3), padding=(1, 0))
    ref = F.conv_transpose2d(X[None, None], K[None, None], stride=(2, 3), padding=(1, 0))
    assert ours.shape == (2 * 2 + 3 - 2, 3 * 3 + 2)
    torch.testing.assert_close(ours, ref[0, 0])


@pytest.mark.parametrize(("size", "kernel"), [((5, 5), (1, 1)), ((4, 6), (2, 3)), ((7, 3), (3, 3))])
def test_corr2d_matches_conv2d(size, kernel):
    torch.manual_seed(0)
    X, K = torch.randn(size, dtype=torch.float64), torch.randn(kernel, dtype=torch.float64)
    torch.testing.assert_close(corr2d(X, K), F.conv2d(X[None, None], K[None, None])[0, 0])


@pytest.mark.parametrize("i", [1, 5, 6, 11])
@pytest.mark.parametrize(("k", "s", "p"), [(5, 3, 2), (4, 2, 1), (3, 1, 1), (2, 2, 0), (16, 8, 4)])
def test_trans_conv_output_size_is_the_formula_and_values_match_pytorch(i, k, s, p):
    """o = s(i - 1) + k - 2p, the FCN upsampler's geometry (k=2f, s=f, p=f/2) included."""
    torch.manual_seed(0)
    x, w = torch.randn(i, i, dtype=torch.float64), torch.randn(k, k, dtype=torch.float64)
    side = s * (i - 1) + k - 2 * p
    ours = trans_conv(x, w, stride=s, padding=p)
    assert ours.shape == (side, side)
    ref = F.conv_transpose2d(x[None, None], w[None, None], stride=s, padding=p)[0, 0]
    torch.testing.assert_close(ours, ref)


def test_argument_validation():
    with pytest.raises(ValueError, match="non-empty 2-D"):
        corr2d(torch.ones(1, 3, 3), torch.ones(2, 2))
    with pytest.raises(ValueError, match="non-empty 2-D"):
        trans_conv(torch.ones(2, 2), torch.ones(0, 2))
    with pytest.raises(TypeError, match="torch.Tensor"):
        corr2d([[1.0, 2.0]], torch.ones(1, 1))
    with pytest.raises(ValueError, match="larger than input"):
        corr2d(torch.ones(2, 2), torch.ones(3, 1))
    with pytest.raises(ValueError, match="stride must be >= 1"):
        trans_conv(X2, K2, stride=0)
    with pytest.raises(ValueError, match="padding must be >= 0"):
        trans_conv(X2, K2, padding=-1)
    with pytest.raises(TypeError, match="stride must be an int or a pair"):
        trans_conv(X2, K2, stride=1.5)
    with pytest.raises(TypeError, match="padding must be an int or a pair"):
        trans_conv(X2, K2, padding=(1, 1, 1))
    with pytest.raises(ValueError, match="input_shape must be >= 1"):
        conv_matrix(K2, (0, 3))
