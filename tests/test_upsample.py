"""bilinear_kernel and BilinearUpsample: values, shapes, borders, gradients, channel isolation."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from segnet.layers import upsample
from segnet.layers.transposed import trans_conv
from segnet.layers.upsample import BilinearUpsample, bilinear_kernel

FACTORS = [2, 3, 4, 8, 16, 32]


def reference(x: torch.Tensor, weight: torch.Tensor, factor: int) -> torch.Tensor:
    """PyTorch's own depthwise transposed convolution with the layer's geometry."""
    padding = math.ceil((factor - 1) / 2)
    return F.conv_transpose2d(x, weight, stride=factor, padding=padding, groups=x.shape[1])


def test_bilinear_kernel_exact_values():
    assert torch.equal(bilinear_kernel(1), torch.tensor([[1.0]]))
    assert torch.equal(bilinear_kernel(2), torch.full((2, 2), 0.25))
    k3 = torch.tensor([[0.25, 0.5, 0.25], [0.5, 1.0, 0.5], [0.25, 0.5, 0.25]])
    assert torch.equal(bilinear_kernel(3), k3)
    taps4 = torch.tensor([0.25, 0.75, 0.75, 0.25])
    assert torch.equal(bilinear_kernel(4), torch.outer(taps4, taps4))
    assert bilinear_kernel(4)[1, 2] == 0.5625 and bilinear_kernel(4).dtype == torch.float32


@pytest.mark.parametrize("k", range(1, 12))
def test_bilinear_kernel_symmetric_separable_positive(k):
    K = bilinear_kernel(k)
    assert K.shape == (k, k)
    assert torch.equal(K, K.T) and torch.equal(K, K.flip(0)) and torch.equal(K, K.flip(1))
    taps = (
        K.sum(0) / K.sum().sqrt()
    )  # K = outer(t, t) => K.sum(0) = t * t.sum(), K.sum() = t.sum()**2
    torch.testing.assert_close(K, torch.outer(taps, taps))
    assert K.min() > 0 and K.max() <= 1


@pytest.mark.parametrize("factor", [1, *FACTORS, 5, 7])
def test_stride_f_taps_partition_unity(factor):
    """The taps landing on any one output phase sum to 1, so constants stay constant."""
    k = 2 * factor - factor % 2
    K = F.pad(bilinear_kernel(k).double(), (0, 2 * factor - k, 0, 2 * factor - k))
    phase_sums = K.view(2, factor, 2, factor).sum(dim=(0, 2))
    torch.testing.assert_close(phase_sums, torch.ones(factor, factor, dtype=torch.float64))


@pytest.mark.parametrize("bad", [0, -3, 2.0, True, "4"])
def test_bilinear_kernel_rejects_bad_size(bad):
    with pytest.raises(ValueError, match="kernel_size must be an int >= 1"):
        bilinear_kernel(bad)


@pytest.mark.parametrize(
    ("factor", "k", "p"), [(1, 1, 0), (2, 4, 1), (3, 5, 1), (8, 16, 4), (32, 64, 16)]
)
def test_module_geometry_and_parameters(factor, k, p):
    layer = BilinearUpsample(3, factor)
    assert (layer.kernel_size, layer.padding) == (k, p)
    assert list(layer.state_dict()) == ["weight"] and len(list(layer.parameters())) == 1
    assert layer.weight.shape == (3, 1, k, k) and layer.weight.requires_grad
    assert torch.equal(layer.weight.detach(), bilinear_kernel(k).expand(3, 1, k, k))
    assert f"factor={factor}" in repr(layer)


@pytest.mark.parametrize("factor", FACTORS)
@pytest.mark.parametrize("size", [(1, 1), (3, 5), (7, 2)])
def test_output_is_exactly_factor_times_larger(factor, size):
    x = torch.randn(2, 3, *size)
    assert BilinearUpsample(3, factor)(x).shape == (2, 3, size[0] * factor, size[1] * factor)


@pytest.mark.parametrize("factor", [1, 2, 3, 4, 5, 8])
def test_forward_and_gradients_equal_conv_transpose2d(factor):
    torch.manual_seed(factor)
    layer = BilinearUpsample(3, factor).double()
    with torch.no_grad():
        layer.weight.add_(torch.randn_like(layer.weight))  # any filters, not only bilinear
    x = torch.randn(2, 3, 5, 4, dtype=torch.float64, requires_grad=True)
    w = layer.weight.detach().clone().requires_grad_()
    grad = torch.randn(2, 3, 5 * factor, 4 * factor, dtype=torch.float64)
    out, ref = layer(x), reference(x, w, factor)
    torch.testing.assert_close(out, ref)
    gx, gw = torch.autograd.grad(out, (x, layer.weight), grad)
    rx, rw = torch.autograd.grad(ref, (x, w), grad)
    torch.testing.assert_close(gx, rx)
    torch.testing.assert_close(gw, rw)


def test_many_chunks_and_strided_tensors(monkeypatch):
    """The CPU path splits the (n, c) planes into chunks; a ragged last chunk must not matter."""
    monkeypatch.setattr(upsample, "_CHUNK_NUMEL", 2 * 6 * 6 * 3 * 3)  # 2 planes per chunk
    torch.manual_seed(0)
    layer = BilinearUpsample(5, 3).double()
    with torch.no_grad():
        layer.weight.add_(torch.randn_like(layer.weight))
    x = torch.randn(3, 6, 6, 5, dtype=torch.float64).permute(0, 3, 1, 2)  # (3, 5, 6, 6), strided
    x.requires_grad_()
    w = layer.weight.detach().clone().requires_grad_()
    out, ref = layer(x), reference(x, w, 3)
    torch.testing.assert_close(out, ref)
    grad = torch.randn(3, 5, 18, 18, dtype=torch.float64).transpose(2, 3)  # strided gradient
    gx, gw = torch.autograd.grad(out, (x, layer.weight), grad)
    rx, rw = torch.autograd.grad(ref, (x, w), grad)
    torch.testing.assert_close(gx, rx)
    torch.testing.assert_close(gw, rw)


def test_bf16_autocast_runs_in_float32_and_backpropagates():
    """bf16-mixed training: autocast does not reach backward, so the layer computes in float32,
    to float32 precision (bf16 products would be ~1e-2 off), forward and backward."""
    torch.manual_seed(0)
    layer = BilinearUpsample(3, 4)
    with torch.no_grad():
        layer.weight.add_(torch.randn_like(layer.weight))  # a trained, non-bilinear filter
    x = torch.randn(2, 3, 5, 6, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = layer(x.bfloat16())
    assert out.dtype == torch.float32
    grad = torch.randn_like(out)
    out.backward(grad)
    # PyTorch's transposed conv in float64 on the same bf16-rounded input.
    x64 = x.detach().bfloat16().double().requires_grad_()
    w64 = layer.weight.detach().double().requires_grad_()
    ref = reference(x64, w64, 4)
    ref.backward(grad.double())
    torch.testing.assert_close(out.double(), ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(layer.weight.grad.double(), w64.grad, rtol=1e-5, atol=1e-4)
    # The input's gradient passes back through its bf16 cast: bf16 precision there.
    torch.testing.assert_close(x.grad.double(), x64.grad, rtol=1e-2, atol=1e-2)


def test_other_devices_use_plain_transposed_conv():
    """Off the CPU the layer is PyTorch's depthwise conv_transpose2d (checked on "meta")."""
    layer = BilinearUpsample(3, 4).to("meta")
    out = layer(torch.empty(2, 3, 5, 7, device="meta"))
    assert out.device.type == "meta" and out.shape == (2, 3, 20, 28)


@pytest.mark.parametrize("factor", FACTORS)
def test_interior_equals_interpolate(factor):
    torch.manual_seed(0)
    x = torch.randn(2, 3, 6, 5)
    out = BilinearUpsample(3, factor)(x)
    ref = F.interpolate(x, scale_factor=factor, mode="bilinear", align_corners=False)
    b = factor // 2  # rows/cols whose sampling point lies outside the input
    rows, cols = slice(b, 6 * factor - b), slice(b, 5 * factor - b)
    torch.testing.assert_close(out[..., rows, cols], ref[..., rows, cols], atol=1e-5, rtol=0)
    border = torch.ones_like(out, dtype=torch.bool)
    border[..., rows, cols] = False
    assert (out - ref).abs()[border].max() > 1e-2  # ... and the border really differs


@pytest.mark.parametrize("factor", [2, 3, 4, 8, 32])
def test_border_equals_zero_padded_transposed_conv(factor):
    """Everywhere, border included, the output is bilinear interpolation of the input padded
    with zeros, which is the seed's transposed convolution with the bilinear kernel."""
    torch.manual_seed(0)
    x = torch.randn(1, 2, 4, 3)
    out = BilinearUpsample(2, factor)(x)
    padded = F.interpolate(F.pad(x, (1, 1, 1, 1)), scale_factor=factor, mode="bilinear")
    torch.testing.assert_close(out, padded[..., factor:-factor, factor:-factor], atol=1e-5, rtol=0)
    k, p = 2 * factor - factor % 2, math.ceil((factor - 1) / 2)
    seed = trans_conv(x[0, 1], bilinear_kernel(k), stride=factor, padding=p)
    torch.testing.assert_close(out[0, 1], seed, atol=1e-5, rtol=0)


@pytest.mark.parametrize("factor", [2, 3, 4])
def test_constant_image_fades_at_the_border(factor):
    out = BilinearUpsample(1, factor)(torch.ones(1, 1, 4, 4))[0, 0]
    edge = (1 + 1 / factor) / 2
    b = factor // 2
    torch.testing.assert_close(out[b:-b, b:-b], torch.ones(4 * factor - 2 * b, 4 * factor - 2 * b))
    torch.testing.assert_close(out[0, b:-b], torch.full((4 * factor - 2 * b,), edge))
    torch.testing.assert_close(out[-1, -1], torch.tensor(edge**2))


def test_gradients_reach_weights_only_when_trainable():
    x = torch.randn(2, 3, 4, 5, requires_grad=True)
    trainable = BilinearUpsample(3, 4)
    trainable(x).square().sum().backward()
    assert trainable.weight.grad is not None and trainable.weight.grad.abs().sum() > 0
    assert x.grad is not None and x.grad.abs().sum() > 0

    x.grad = None
    frozen = BilinearUpsample(3, 4, trainable=False)
    assert list(frozen.parameters()) == [frozen.weight] and not frozen.weight.requires_grad
    frozen(x).square().sum().backward()
    assert frozen.weight.grad is None
    assert x.grad is not None and x.grad.abs().sum() > 0  # the input still gets its gradient
    assert not frozen.trainable and "trainable=False" in repr(frozen)


def test_state_dict_moves_between_trainable_and_frozen():
    trained = BilinearUpsample(2, 2)
    with torch.no_grad():
        trained.weight.mul_(2)
    frozen = BilinearUpsample(2, 2, trainable=False)
    frozen.load_state_dict(trained.state_dict())
    assert torch.equal(frozen.weight, trained.weight) and not frozen.weight.requires_grad
    frozen.reset_parameters()
    assert torch.equal(frozen.weight[0, 0], bilinear_kernel(4))


@pytest.mark.parametrize("trainable", [True, False])
def test_no_cross_channel_mixing(trainable):
    torch.manual_seed(0)
    layer = BilinearUpsample(3, 4, trainable=trainable)
    with torch.no_grad():
        layer.weight.add_(torch.rand_like(layer.weight))  # even after "training"
    x = torch.zeros(2, 3, 5, 5)
    x[:, 1] = torch.rand(2, 5, 5)
    out = layer(x)
    assert out[:, [0, 2]].abs().max() == 0 and out[:, 1].abs().min() > 0
    x.requires_grad_()
    (grad_x,) = torch.autograd.grad(layer(x)[:, 0].sum(), x)
    assert grad_x[:, 1:].abs().max() == 0 and grad_x[:, 0].abs().min() > 0


def test_argument_validation():
    for kwargs in ({"channels": 0, "factor": 2}, {"channels": 3, "factor": 0}):
        with pytest.raises(ValueError, match="must be an int >= 1"):
            BilinearUpsample(**kwargs)
    with pytest.raises(ValueError, match="factor must be an int >= 1, got 2.5"):
        BilinearUpsample(3, 2.5)
    layer = BilinearUpsample(3, 2)
    with pytest.raises(
        ValueError, match=r"expected input of shape \(N, 3, H, W\), got \(1, 4, 2, 2\)"
    ):
        layer(torch.zeros(1, 4, 2, 2))
    with pytest.raises(ValueError, match="expected input of shape"):
        layer(torch.zeros(3, 2, 2))
