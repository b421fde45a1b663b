"""hyenapixel.ops.depthwise_conv2d (the HyenaPixel mixer's short convolution with its own CPU backward) against
torch's ``F.conv2d``: values, all three gradients and second derivatives in float64."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from hyenapixel.layers import DepthwiseConv2d
from hyenapixel.ops.depthwise import _DepthwiseConv2d, depthwise_conv2d


@pytest.mark.parametrize(("batch", "k", "padding"), [(1, 5, 2), (3, 5, 2), (2, 3, 1), (1, 4, 2), (2, 3, 0)])
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("bias", [True, False])
def test_values_and_gradients_equal_torch_conv2d(monkeypatch, batch, k, padding, channels_last, bias) -> None:
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # batches take the custom backward with one thread
    try:
        _check_against_conv2d(monkeypatch, batch, k, padding, channels_last, bias)
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("channels_last", [False, True])
def test_batches_with_several_threads_take_the_custom_backward(monkeypatch, channels_last) -> None:
    before = torch.get_num_threads()
    torch.set_num_threads(2)  # batches take the custom backward with several threads too
    try:
        _check_against_conv2d(monkeypatch, 3, 5, 2, channels_last, True)
    finally:
        torch.set_num_threads(before)


def _check_against_conv2d(monkeypatch, batch: int, k: int, padding: int, channels_last: bool, bias: bool) -> None:
    calls = []
    real = _DepthwiseConv2d.apply
    monkeypatch.setattr(_DepthwiseConv2d, "apply", lambda *a: calls.append(1) or real(*a))
    g = torch.Generator().manual_seed(k + padding)
    x = torch.randn(batch, 6, 11, 9, generator=g, dtype=torch.float64)
    if channels_last:  # the mixer's layout: a permuted (B, H, W, C) tensor
        x = x.permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2)
    x.requires_grad_()
    w = torch.randn(6, 1, k, k, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(6, generator=g, dtype=torch.float64, requires_grad=True) if bias else None
    y = depthwise_conv2d(x, w, b, padding)
    ref = F.conv2d(x, w, b, padding=padding, groups=6)
    assert calls  # the custom backward ran
    torch.testing.assert_close(y, ref, rtol=1e-12, atol=1e-12)
    up = torch.randn(ref.shape, generator=g, dtype=torch.float64)
    wrt = [t for t in (x, w, b) if t is not None]
    for a, e in zip(torch.autograd.grad((y * up).sum(), wrt), torch.autograd.grad((ref * up).sum(), wrt)):
        torch.testing.assert_close(a, e, rtol=1e-12, atol=1e-11)


def test_second_derivatives_equal_torch_conv2d() -> None:
    g = torch.Generator().manual_seed(7)
    x = torch.randn(2, 4, 7, 8, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(4, 1, 5, 5, generator=g, dtype=torch.float64, requires_grad=True)
    up = torch.randn(2, 4, 7, 8, generator=g, dtype=torch.float64)
    out = []
    for conv in (lambda: depthwise_conv2d(x, w, None, 2), lambda: F.conv2d(x, w, padding=2, groups=4)):
        gx, gw = torch.autograd.grad((conv() * up).sum(), (x, w), create_graph=True)
        out.append(torch.autograd.grad((gx * gx).sum() + (gw * gw).sum(), (x, w)))
    for a, e in zip(*out):
        torch.testing.assert_close(a, e, rtol=1e-12, atol=1e-11)


def test_plain_conv2d_without_gradient_and_bad_shapes_are_named(monkeypatch) -> None:
    monkeypatch.setattr(_DepthwiseConv2d, "apply", None)  # must not run
    x, w = torch.randn(1, 3, 6, 6), torch.randn(3, 1, 3, 3, requires_grad=True)
    with torch.no_grad():
        torch.testing.assert_close(depthwise_conv2d(x, w, None, 1), F.conv2d(x, w, padding=1, groups=3))
    with pytest.raises(ValueError, match="weight"):
        depthwise_conv2d(x, torch.randn(3, 2, 3, 3), None, 1)


def test_depthwise_module_is_an_nn_conv2d_with_its_state_dict(monkeypatch) -> None:
    calls = []
    real = _DepthwiseConv2d.apply
    monkeypatch.setattr(_DepthwiseConv2d, "apply", lambda *a: calls.append(1) or real(*a))
    ref = torch.nn.Conv2d(6, 6, 5, padding=2, groups=6).double()
    m = DepthwiseConv2d(6, 5).double()
    m.load_state_dict(ref.state_dict())
    assert isinstance(m, torch.nn.Conv2d) and m.state_dict().keys() == ref.state_dict().keys()
    x = torch.randn(1, 6, 9, 7, dtype=torch.float64, requires_grad=True)
    y, e = m(x), ref(x)
    assert calls  # the module went through depthwise_conv2d's own backward
    torch.testing.assert_close(y, e, rtol=1e-12, atol=1e-12)
    wrt_m, wrt_ref = (x, m.weight, m.bias), (x, ref.weight, ref.bias)
    for a, b in zip(torch.autograd.grad(y.square().sum(), wrt_m), torch.autograd.grad(e.square().sum(), wrt_ref)):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-11)
