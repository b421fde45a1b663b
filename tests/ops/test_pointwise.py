"""hyenapixel.ops.pixel_linear and layers.PixelLinear (per-pixel linear maps by oneDNN's 1 x 1 convolutions on CPU)
against ``F.linear``: values and gradients in float64 and float32, numerical derivatives, the layouts and dtypes
the dispatch distinguishes (one or several threads, channels-last maps, non-contiguous views, other ranks), and
nn.Linear's state dict."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from hyenapixel.layers import PixelLinear
from hyenapixel.ops.parallel import intra_op_threads
from hyenapixel.ops.pointwise import pixel_linear


def _grads(y: torch.Tensor, up: torch.Tensor, wrt: list[torch.Tensor]) -> tuple[torch.Tensor, ...]:
    return torch.autograd.grad((y * up).sum(), wrt)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("shape", [(2, 5, 7, 6), (1, 1, 1, 6), (3, 6), (2, 7, 5, 6, "view")])
def test_values_and_gradients_equal_f_linear(threads: int, bias: bool, shape) -> None:
    g = torch.Generator().manual_seed(len(shape) + threads)
    if shape[-1] == "view":  # a non-contiguous (B, H, W, C) view
        x = torch.randn(*shape[:-1], generator=g, dtype=torch.float64).transpose(1, 2)
    else:
        x = torch.randn(*shape, generator=g, dtype=torch.float64)
    x.requires_grad_()
    w = torch.randn(4, 6, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(4, generator=g, dtype=torch.float64, requires_grad=True) if bias else None
    wrt = [t for t in (x, w, b) if t is not None]
    with intra_op_threads(threads):
        y = pixel_linear(x, w, b)
        up = torch.randn(y.shape, generator=g, dtype=torch.float64)
        got = _grads(y, up, wrt)
        assert torch.autograd.gradcheck(lambda *t: pixel_linear(*t), tuple(wrt))
    ref = F.linear(x, w, b)
    assert y.shape == ref.shape
    torch.testing.assert_close(y, ref, rtol=1e-12, atol=1e-12)
    for a, e in zip(got, _grads(ref, up, wrt)):
        torch.testing.assert_close(a, e, rtol=1e-12, atol=1e-12)


def test_pixel_linear_module_is_an_nn_linear_with_its_state_dict() -> None:
    ref = nn.Linear(6, 4)
    m = PixelLinear(6, 4)
    m.load_state_dict(ref.state_dict())
    assert isinstance(m, nn.Linear) and m.state_dict().keys() == ref.state_dict().keys()
    x = torch.randn(2, 3, 5, 6)
    torch.testing.assert_close(m(x), ref(x), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("bias", [True, False])
def test_float32_maps_against_float64_linear(threads: int, bias: bool) -> None:
    """float32 channels-last maps (oneDNN's 1 x 1 convolution where torch has it) against F.linear in float64."""
    g = torch.Generator().manual_seed(11)
    x = torch.randn(2, 5, 7, 16, generator=g, requires_grad=True)
    w = torch.randn(24, 16, generator=g, requires_grad=True)
    b = torch.randn(24, generator=g, requires_grad=True) if bias else None
    up = torch.randn(2, 5, 7, 24, generator=g)
    with intra_op_threads(threads):
        y = pixel_linear(x, w, b)
        grads = _grads(y, up, [t for t in (x, w, b) if t is not None])
    assert y.shape == (2, 5, 7, 24) and y.dtype == torch.float32 and y.is_contiguous()  # a (B, H, W, C) map
    xd, wd = x.detach().double().requires_grad_(), w.detach().double().requires_grad_()
    bd = b.detach().double().requires_grad_() if bias else None
    ref = F.linear(xd, wd, bd)
    torch.testing.assert_close(y.double(), ref, rtol=1e-5, atol=1e-5)
    for a, e in zip(grads, _grads(ref, up.double(), [t for t in (xd, wd, bd) if t is not None])):
        torch.testing.assert_close(a.double(), e, rtol=1e-5, atol=1e-4)
