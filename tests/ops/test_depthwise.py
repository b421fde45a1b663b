"""hyenapixel.ops.depthwise_conv2d (the HyenaPixel mixer's short convolution, with its own CPU backward) against
torch's ``F.conv2d`` and numerical derivatives: values, all three gradients and second derivatives in float64, in
the cases the function and torch's kernels treat differently (one or several threads and samples, with and without a
gradient, channels-last inputs)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from hyenapixel.layers import DepthwiseConv2d
from hyenapixel.ops.depthwise import depthwise_conv2d
from hyenapixel.ops.parallel import intra_op_threads


def _inputs(batch: int, k: int, padding: int, channels_last: bool, bias: bool, channels: int = 6):
    g = torch.Generator().manual_seed(k + padding + batch)
    x = torch.randn(batch, channels, 11, 9, generator=g, dtype=torch.float64)
    if channels_last:  # the mixer's layout: a permuted (B, H, W, C) tensor
        x = x.permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2)
    w = torch.randn(channels, 1, k, k, generator=g, dtype=torch.float64)
    b = torch.randn(channels, generator=g, dtype=torch.float64) if bias else None
    return [t.requires_grad_() for t in (x, w, b) if t is not None], g


@pytest.mark.parametrize(("batch", "k", "padding"), [(1, 5, 2), (3, 5, 2), (2, 3, 1), (1, 4, 2), (2, 3, 0)])
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("bias", [True, False])
def test_values_and_gradients_equal_torch_conv2d(batch, k, padding, threads, channels_last, bias) -> None:
    wrt, g = _inputs(batch, k, padding, channels_last, bias)
    x, w, b = wrt[0], wrt[1], (wrt[2] if bias else None)
    with intra_op_threads(threads):
        y = depthwise_conv2d(x, w, b, padding)
        up = torch.randn(y.shape, generator=g, dtype=torch.float64)
        got = torch.autograd.grad((y * up).sum(), wrt)
    ref = F.conv2d(x, w, b, padding=padding, groups=x.shape[1])
    torch.testing.assert_close(y, ref, rtol=1e-12, atol=1e-12)
    for a, e in zip(got, torch.autograd.grad((ref * up).sum(), wrt)):
        torch.testing.assert_close(a, e, rtol=1e-12, atol=1e-11)


@pytest.mark.parametrize(("batch", "threads"), [(1, 2), (2, 1), (2, 2)])
def test_gradients_and_second_derivatives_match_numerical_ones(batch: int, threads: int) -> None:
    wrt, _ = _inputs(batch, 3, 1, channels_last=False, bias=True, channels=2)
    with intra_op_threads(threads):
        assert torch.autograd.gradcheck(lambda x, w, b: depthwise_conv2d(x, w, b, 1), wrt)
        assert torch.autograd.gradgradcheck(lambda x, w, b: depthwise_conv2d(x, w, b, 1), wrt)


def test_second_derivatives_equal_torch_conv2d() -> None:
    g = torch.Generator().manual_seed(7)
    x = torch.randn(2, 4, 7, 8, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(4, 1, 5, 5, generator=g, dtype=torch.float64, requires_grad=True)
    up = torch.randn(2, 4, 7, 8, generator=g, dtype=torch.float64)
    out = []
    with intra_op_threads(1):
        for conv in (lambda: depthwise_conv2d(x, w, None, 2), lambda: F.conv2d(x, w, padding=2, groups=4)):
            gx, gw = torch.autograd.grad((conv() * up).sum(), (x, w), create_graph=True)
            out.append(torch.autograd.grad((gx * gx).sum() + (gw * gw).sum(), (x, w)))
    for a, e in zip(*out):
        torch.testing.assert_close(a, e, rtol=1e-12, atol=1e-11)


@pytest.mark.parametrize("padding", [0, 1])
def test_an_empty_batch_gives_a_zero_weight_gradient_of_the_right_shape(padding: int) -> None:
    x = torch.randn(0, 3, 6, 5, dtype=torch.float64, requires_grad=True)
    w = torch.randn(3, 1, 3, 3, dtype=torch.float64, requires_grad=True)
    got = torch.autograd.grad(depthwise_conv2d(x, w, None, padding).sum(), (x, w))
    ref = torch.autograd.grad(F.conv2d(x, w, padding=padding, groups=3).sum(), (x, w))
    for a, e in zip(got, ref):
        assert a.shape == e.shape
        torch.testing.assert_close(a, e, rtol=0, atol=0)


def test_without_gradient_and_bad_shapes_are_named() -> None:
    x, w = torch.randn(1, 3, 6, 6), torch.randn(3, 1, 3, 3, requires_grad=True)
    with torch.no_grad():
        torch.testing.assert_close(depthwise_conv2d(x, w, None, 1), F.conv2d(x, w, padding=1, groups=3))
    with pytest.raises(ValueError, match="weight"):
        depthwise_conv2d(x, torch.randn(3, 2, 3, 3), None, 1)


@pytest.mark.parametrize("threads", [1, 2])
def test_depthwise_module_is_an_nn_conv2d_with_its_state_dict(threads: int) -> None:
    ref = torch.nn.Conv2d(6, 6, 5, padding=2, groups=6).double()
    m = DepthwiseConv2d(6, 5).double()
    m.load_state_dict(ref.state_dict())
    assert isinstance(m, torch.nn.Conv2d) and m.state_dict().keys() == ref.state_dict().keys()
    x = torch.randn(2, 6, 9, 7, dtype=torch.float64, requires_grad=True)
    with intra_op_threads(threads):
        y = m(x)
        got = torch.autograd.grad(y.square().sum(), (x, m.weight, m.bias))
    e = ref(x)
    torch.testing.assert_close(y, e, rtol=1e-12, atol=1e-12)
    for a, b in zip(got, torch.autograd.grad(e.square().sum(), (x, ref.weight, ref.bias))):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-11)
