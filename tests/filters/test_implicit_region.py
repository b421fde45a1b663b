"""The fused implicit 2D filter (paper Eq. 4) against its module-by-module evaluation: the whole kernel, and regions
of taps (what the mixers ask for when a kernel is larger than the feature map), values and gradients in float64."""

from __future__ import annotations

import pytest
import torch

from hyenapixel.filters import ExplicitFilter2d, ImplicitFilter2d, SeparableFilter2d
from hyenapixel.ops import implicit as fused


def _straightforward(f: ImplicitFilter2d) -> torch.Tensor:
    """``FFN(PE) * (exp(-|alpha| d) + b)`` on every tap, through the filter's own modules (Sine, Linear)."""
    kh, kw = f.kernel_size
    h = f.pos_emb.flatten(1).t()  # (P, E)
    *body, last = list(f.mlp)
    for layer in body:
        h = layer(h)
    k = (h @ last.weight.t()).t().reshape(f.channels, kh, kw)
    return k * (torch.exp(-f.distance * f.decay.abs()[:, None, None]) + f.shift[:, None, None])


REGIONS = [
    None,
    (slice(0, 9), slice(0, 7)),  # all taps, given explicitly
    (slice(2, 7), slice(1, 6)),  # centered crop, as a plan gives it for a small map
    (slice(0, 3), slice(4, 7)),  # off-center corner, without the center tap
    (slice(4, 5), slice(3, 4)),  # the single center tap
]


@pytest.mark.parametrize("region", REGIONS)
@pytest.mark.parametrize("num_inner", [0, 1, 2])
@pytest.mark.parametrize("block_elements", [None, 40])  # one block; blocks of one or two kernel rows
def test_region_equals_the_crop_of_the_straightforward_kernel(
    monkeypatch, region, num_inner: int, block_elements
) -> None:
    if block_elements is not None:
        monkeypatch.setattr(fused, "BLOCK_ELEMENTS", block_elements)
    torch.manual_seed(num_inner)
    f = ImplicitFilter2d(5, kernel_size=(9, 7), emb_dim=8, num_inner=num_inner).double()
    with torch.no_grad():  # non-trivial values for every parameter the kernel depends on
        f.shift.uniform_(-0.5, 0.5)
        for p in f.mlp.parameters():
            p.add_(0.1 * torch.randn_like(p))
    rows, cols = region or (slice(None), slice(None))
    got = f(region)
    ref = _straightforward(f)[:, rows, cols]
    assert got.shape == ref.shape
    torch.testing.assert_close(got, ref, rtol=1e-12, atol=1e-13)
    up = torch.randn_like(ref)
    params = [p for n, p in f.named_parameters() if n != "skip"]  # the skip term is applied by the mixer
    g_got = torch.autograd.grad((got * up).sum(), params)
    g_ref = torch.autograd.grad((ref * up).sum(), params)
    for (name, _), a, b in zip([(n, p) for n, p in f.named_parameters() if n != "skip"], g_got, g_ref):
        torch.testing.assert_close(a, b, rtol=1e-11, atol=1e-12, msg=name)


def test_gradient_is_zero_outside_the_region() -> None:
    f = ImplicitFilter2d(3, kernel_size=11, emb_dim=4).double()
    f((slice(3, 8), slice(0, 4))).sum().backward()
    g = f.pos_emb.grad
    assert g[:, 3:8, 0:4].abs().sum() > 0
    mask = torch.ones_like(g, dtype=torch.bool)
    mask[:, 3:8, 0:4] = False
    assert g[mask].abs().max() == 0


def test_float32_kernel_matches_float64_straightforward() -> None:
    # The fused evaluation folds the sine frequencies into the layers: equal in exact arithmetic, so the float32
    # kernel differs from the float64 one by float32 rounding only.
    torch.manual_seed(0)
    f = ImplicitFilter2d(16, kernel_size=(41, 63), emb_dim=32)
    ref = _straightforward(f.double()).float()
    f = f.float()
    err = (f() - ref).abs().max() / ref.abs().max()
    assert err < 1e-5


def test_autocast_does_not_lower_the_kernel_precision() -> None:
    f = ImplicitFilter2d(4, kernel_size=9, emb_dim=8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        k = f()
    assert k.dtype == torch.float32
    torch.testing.assert_close(k, f())


@pytest.mark.parametrize("make", [lambda: ExplicitFilter2d(3, (9, 7)), lambda: SeparableFilter2d(3, (9, 7))])
def test_explicit_filters_give_regions_of_their_kernel(make) -> None:
    f = make()
    rows, cols = slice(2, 7), slice(1, 4)
    torch.testing.assert_close(f((rows, cols)), f()[:, rows, cols], rtol=0, atol=0)


@pytest.mark.parametrize("region", [None, (slice(2, 7), slice(1, 6))])
def test_compile_path_equals_the_straightforward_kernel(monkeypatch, region) -> None:
    """While torch.compile traces, the filter takes its plain-op path: values and gradients equal the reference, and
    unlike the fused evaluation (not twice differentiable) it gives second derivatives."""
    torch.manual_seed(3)
    f = ImplicitFilter2d(5, kernel_size=(9, 7), emb_dim=8, num_inner=1).double()
    with torch.no_grad():
        f.shift.uniform_(-0.5, 0.5)
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    rows, cols = region or (slice(None), slice(None))
    got = f(region)
    ref = _straightforward(f)[:, rows, cols]
    torch.testing.assert_close(got, ref, rtol=1e-12, atol=1e-13)
    params = [p for n, p in f.named_parameters() if n != "skip"]
    up = torch.randn_like(ref)
    g_got = torch.autograd.grad((got * up).sum(), params, create_graph=True)
    for a, b in zip(g_got, torch.autograd.grad((ref * up).sum(), params, create_graph=True)):
        torch.testing.assert_close(a, b, rtol=1e-11, atol=1e-12)
    (g_ref,) = torch.autograd.grad((ref * up).sum(), params[0], create_graph=True)
    g2_got = torch.autograd.grad(g_got[0].square().sum(), f.decay)
    g2_ref = torch.autograd.grad(g_ref.square().sum(), f.decay)
    torch.testing.assert_close(g2_got, g2_ref, rtol=1e-10, atol=1e-12)


def test_eager_kernel_is_not_twice_differentiable() -> None:
    """The eager (fused) evaluation keeps no activations for a second derivative, and says so."""
    f = ImplicitFilter2d(3, kernel_size=5, emb_dim=4).double()
    (g,) = torch.autograd.grad(f().sum(), f.decay, create_graph=True)
    with pytest.raises(RuntimeError):
        torch.autograd.grad(g.sum(), f.shift)


@pytest.mark.parametrize("region", [None, (slice(2, 9), slice(1, 6))])
def test_row_blocks_on_several_threads_equal_the_straightforward_kernel(monkeypatch, block_threads, region) -> None:
    # blocks of one kernel row; with two threads each worker sums its own share of the parameter gradients
    monkeypatch.setattr(fused, "BLOCK_ELEMENTS", 8)
    torch.manual_seed(5)
    f = ImplicitFilter2d(6, kernel_size=(9, 7), emb_dim=8, num_inner=1).double()
    with torch.no_grad():
        f.shift.uniform_(-0.5, 0.5)
    rows, cols = region or (slice(None), slice(None))
    got = f(region)
    ref = _straightforward(f)[:, rows, cols]
    torch.testing.assert_close(got, ref, rtol=1e-12, atol=1e-13)
    up = torch.randn_like(ref)
    names, params = zip(*[(n, p) for n, p in f.named_parameters() if n != "skip"])
    g_got = torch.autograd.grad((got * up).sum(), params)
    g_ref = torch.autograd.grad((ref * up).sum(), params)
    for name, a, b in zip(names, g_got, g_ref):
        torch.testing.assert_close(a, b, rtol=1e-11, atol=1e-12, msg=name)
