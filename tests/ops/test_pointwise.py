"""hyenapixel.ops.pixel_linear and layers.PixelLinear (per-pixel linear maps by 1 x 1 convolutions on multi-threaded
CPUs) against ``F.linear``: values and gradients in float64, the fallback cases, and nn.Linear's state dict."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from hyenapixel.layers import PixelLinear
from hyenapixel.ops.pointwise import _OneDnnLinear, pixel_linear


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("shape", [(2, 5, 7, 6), (1, 1, 1, 6), (3, 6)])
def test_values_and_gradients_equal_f_linear(monkeypatch, threads: int, bias: bool, shape) -> None:
    calls: list[int] = []
    real = F.conv2d
    monkeypatch.setattr(F, "conv2d", lambda *a, **k: calls.append(1) or real(*a, **k))
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        g = torch.Generator().manual_seed(len(shape) + threads)
        x = torch.randn(*shape, generator=g, dtype=torch.float64, requires_grad=True)
        w = torch.randn(4, 6, generator=g, dtype=torch.float64, requires_grad=True)
        b = torch.randn(4, generator=g, dtype=torch.float64, requires_grad=True) if bias else None
        y = pixel_linear(x, w, b)
        ref = F.linear(x, w, b)
        assert bool(calls) == (threads > 1 and len(shape) == 4)  # the 1 x 1 convolution ran where it should
    finally:
        torch.set_num_threads(before)
    assert y.shape == ref.shape
    torch.testing.assert_close(y, ref, rtol=1e-12, atol=1e-12)
    up = torch.randn(ref.shape, generator=g, dtype=torch.float64)
    wrt = [t for t in (x, w, b) if t is not None]
    for a, e in zip(torch.autograd.grad((y * up).sum(), wrt), torch.autograd.grad((ref * up).sum(), wrt)):
        torch.testing.assert_close(a, e, rtol=1e-12, atol=1e-12)


def test_pixel_linear_module_is_an_nn_linear_with_its_state_dict() -> None:
    ref = nn.Linear(6, 4)
    m = PixelLinear(6, 4)
    m.load_state_dict(ref.state_dict())
    assert isinstance(m, nn.Linear) and m.state_dict().keys() == ref.state_dict().keys()
    x = torch.randn(2, 3, 5, 6)
    torch.testing.assert_close(m(x), ref(x), rtol=1e-5, atol=1e-6)


@pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="needs oneDNN")
@pytest.mark.parametrize("bias", [True, False])
def test_one_thread_float32_by_onednn_against_float64_linear(monkeypatch, bias: bool) -> None:
    calls: list[int] = []
    real = _OneDnnLinear.apply
    monkeypatch.setattr(_OneDnnLinear, "apply", lambda *a: calls.append(1) or real(*a))
    g = torch.Generator().manual_seed(11)
    x = torch.randn(2, 5, 7, 16, generator=g, requires_grad=True)
    w = torch.randn(24, 16, generator=g, requires_grad=True)
    b = torch.randn(24, generator=g, requires_grad=True) if bias else None
    up = torch.randn(2, 5, 7, 24, generator=g)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        y = pixel_linear(x, w, b)
        grads = torch.autograd.grad((y * up).sum(), [t for t in (x, w, b) if t is not None])
    finally:
        torch.set_num_threads(before)
    assert calls and y.shape == (2, 5, 7, 24) and y.is_contiguous()
    xd, wd = x.detach().double().requires_grad_(), w.detach().double().requires_grad_()
    bd = b.detach().double().requires_grad_() if bias else None
    ref = F.linear(xd, wd, bd)
    torch.testing.assert_close(y.double(), ref, rtol=1e-5, atol=1e-5)
    want = torch.autograd.grad((ref * up.double()).sum(), [t for t in (xd, wd, bd) if t is not None])
    for a, e in zip(grads, want):
        torch.testing.assert_close(a.double(), e, rtol=1e-5, atol=1e-4)
