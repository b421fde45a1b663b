"""Mixers against independent references: direct (non-FFT) convolutions of the filter's kernel, the Section 3
equations written out, causality, ablation filters, and the eval kernel cache."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from hyenapixel.filters import ExplicitFilter2d, SeparableFilter2d
from hyenapixel.mixers import BidirectionalHyenaMixer, CausalHyenaMixer, HyenaPixelMixer, clear_spectrum_caches
from hyenapixel.models import MIXER_NORM
from hyenapixel.ops import fftconv2d_ref


def _reference_hpx(m: HyenaPixelMixer, x: torch.Tensor) -> torch.Tensor:
    """Eq. 3 with the Eq. 4 filter, written with plain convolutions, float64."""
    xc = x.permute(0, 3, 1, 2)
    qkv = F.conv2d(xc, m.in_proj.weight[:, :, None, None], m.in_proj.bias)
    qkv = F.conv2d(qkv, m.short_conv.weight, m.short_conv.bias, padding=m.short_conv.padding, groups=qkv.shape[1])
    q, k, v = qkv.chunk(3, 1)
    qk = m.qk_norm((q * k).permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
    kernel = m.filter()
    y = fftconv2d_ref(qk, kernel) + qk * m.filter.skip[None, :, None, None]
    y = (v * y).permute(0, 2, 3, 1)
    return m.out_proj(m.out_norm(y))


@pytest.mark.parametrize("kernel_size, size", [(9, (7, 7)), (27, (14, 14)), (13, (9, 6)), (8, (5, 6))])
@pytest.mark.parametrize("norm", [None, MIXER_NORM])
def test_hyenapixel_mixer_matches_direct_reference(kernel_size, size, norm):
    m = HyenaPixelMixer(8, kernel_size=kernel_size, filter_emb_dim=8, qk_norm_layer=norm, out_norm_layer=norm).double()
    x = torch.randn(2, *size, 8, dtype=torch.float64)
    torch.testing.assert_close(m(x), _reference_hpx(m, x), rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("filter_layer", [ExplicitFilter2d, SeparableFilter2d])
def test_ablation_filters_in_mixer(filter_layer):
    m = HyenaPixelMixer(6, kernel_size=9, filter_layer=filter_layer).double()
    x = torch.randn(1, 10, 12, 6, dtype=torch.float64)
    torch.testing.assert_close(m(x), _reference_hpx(m, x), rtol=1e-9, atol=1e-10)


def test_separable_filter_is_two_axis_convolutions():
    f = SeparableFilter2d(3, kernel_size=(7, 5)).double()
    u = torch.randn(2, 3, 9, 11, dtype=torch.float64)
    sequential = fftconv2d_ref(fftconv2d_ref(u, f.weight_v[:, :, None]), f.weight_h[:, None, :])
    torch.testing.assert_close(fftconv2d_ref(u, f()), sequential)


def _reference_hyena1d(m, x: torch.Tensor) -> torch.Tensor:
    B, H, W, C = x.shape
    L = H * W
    u = m.in_proj(x.reshape(B, L, C)).transpose(1, 2)
    u = F.conv1d(u, m.short_conv.weight, m.short_conv.bias, padding=m.short_conv.padding, groups=u.shape[1])[..., :L]
    x0, x1, v = u.chunk(3, 1)
    g = m.qk_norm((v * x1).transpose(1, 2)).transpose(1, 2)
    k = m.filter(m.kernel_len(L))  # (C, K)
    K = k.shape[-1]
    if m.causal:  # y[t] = sum_j k[j] g[t - j]
        y = F.conv1d(F.pad(g, (K - 1, 0)), k.flip(-1)[:, None], groups=C)
    else:  # y[t] = sum_j k[j] g[t + K//2 - j]
        y = F.conv1d(F.pad(g, (K - 1 - K // 2, K // 2)), k.flip(-1)[:, None], groups=C)
    y = y + g * m.filter.skip[None, :, None]
    return m.out_proj(m.out_norm((x0 * y).transpose(1, 2))).reshape(B, H, W, C)


@pytest.mark.parametrize("cls", [BidirectionalHyenaMixer, CausalHyenaMixer])
@pytest.mark.parametrize("size", [(4, 4), (3, 5), (6, 6)])
@pytest.mark.parametrize("norm", [None, MIXER_NORM])
def test_hyena_mixers_match_direct_reference(cls, size, norm):
    """Trained for 4x4 = 16 tokens; other sizes exercise the resampled filter."""
    m = cls(8, seq_len=16, filter_emb_dim=5, filter_hidden=8, qk_norm_layer=norm, out_norm_layer=norm).double()
    x = torch.randn(2, *size, 8, dtype=torch.float64)
    torch.testing.assert_close(m(x), _reference_hyena1d(m, x), rtol=1e-9, atol=1e-10)


def test_causal_hyena_is_causal_and_bidirectional_is_not():
    x = torch.randn(1, 4, 4, 8, dtype=torch.float64)
    x2 = x.clone()
    x2[0, 2, 1] += 1.0  # token 9 of the flattened sequence
    for cls, expect_past_change in ((CausalHyenaMixer, False), (BidirectionalHyenaMixer, True)):
        m = cls(8, seq_len=16, filter_emb_dim=5, filter_hidden=8).double()
        d = (m(x2) - m(x)).reshape(16, 8).abs().sum(-1)
        assert (d[:9].max() > 1e-9) == expect_past_change
        assert d[9] > 1e-9


def test_mixer_gradients_reach_all_parameters():
    for m in (HyenaPixelMixer(8, 9, 8, qk_norm_layer=MIXER_NORM), BidirectionalHyenaMixer(8, 16, 5, 8)):
        m(torch.randn(2, 4, 4, 8)).square().sum().backward()
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in m.parameters())


# ---- eval kernel cache ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("make", [lambda: HyenaPixelMixer(8, 9, 8), lambda: BidirectionalHyenaMixer(8, 16, 5, 8)])
def test_cache_used_in_eval_and_matches_uncached(make):
    m = make().eval()
    x = torch.randn(2, 4, 4, 8)
    with torch.no_grad():
        first = m(x)
        assert len(m.spectrum_cache) == 1
        second = m(x)
        m.spectrum_cache.enabled = False
        uncached = m(x)
        m.spectrum_cache.enabled = True
        m(torch.randn(1, 5, 3, 8))  # another size: another entry
    assert len(m.spectrum_cache) == 2
    torch.testing.assert_close(first, second, rtol=0, atol=0)
    torch.testing.assert_close(first, uncached)


def test_cache_not_used_when_filter_needs_grad():
    m = HyenaPixelMixer(8, 9, 8).eval()
    m(torch.randn(1, 4, 4, 8)).sum().backward()  # eval mode, grad enabled, params require grad
    assert len(m.spectrum_cache) == 0
    assert m.filter.pos_emb.grad is not None


def test_cache_invalidated_by_optimizer_step_load_state_dict_and_to():
    m = HyenaPixelMixer(8, 9, 8)
    x = torch.randn(1, 4, 4, 8)

    def eval_out(mod, inp):
        mod.eval()
        with torch.no_grad():
            return mod(inp)

    before = eval_out(m, x)
    opt = torch.optim.SGD(m.parameters(), lr=0.1)
    m.train()
    m(x).square().sum().backward()
    opt.step()
    after_step = eval_out(m, x)
    m.spectrum_cache.enabled = False
    torch.testing.assert_close(after_step, eval_out(m, x))
    m.spectrum_cache.enabled = True
    assert (after_step - before).abs().max() > 1e-6

    other = HyenaPixelMixer(8, 9, 8)
    m.load_state_dict(other.state_dict())
    torch.testing.assert_close(eval_out(m, x), eval_out(other, x))

    m64 = m.to(torch.float64)
    out64 = eval_out(m64, x.double())
    assert out64.dtype == torch.float64
    torch.testing.assert_close(out64.float(), eval_out(other, x), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("make", [lambda: HyenaPixelMixer(8, 9, 8), lambda: BidirectionalHyenaMixer(8, 16, 5, 8)])
def test_cache_sees_every_kind_of_weight_change(make):
    """Fused optimizer steps leave the version counters alone; ``.data`` edits and buffer changes too, or bump
    nothing the parameters show. Every eval output is compared with a fresh copy of the current weights (empty
    cache)."""
    m = make()
    x = torch.randn(2, 4, 4, 8)

    def check(what: str) -> None:
        with torch.no_grad():
            got, want = m(x), copy.deepcopy(m)(x)
        torch.testing.assert_close(got, want, rtol=0, atol=0, msg=what)

    m.eval()
    check("warm-up")
    params = [p for p in m.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-2, fused=True)
    m(x).square().sum().backward()  # stays in eval: only the step hook can tell
    version = m.filter.pos_emb._version if hasattr(m.filter, "pos_emb") else None
    opt.step()
    if version is not None:
        assert m.filter.pos_emb._version == version  # the case the step hook exists for
    check("fused AdamW step in eval mode")
    m.train()
    with torch.no_grad():
        for p in m.filter.parameters():
            p.data.mul_(1.5)  # unseen by any counter ...
    m.eval()  # ... but the mode switch empties the cache
    check(".data edit in train mode, then eval()")
    with torch.no_grad():
        m(x)
    buffer = next(m.filter.buffers())
    buffer.mul_(1.25)  # in place on a buffer: its version counter moves
    check("in-place buffer change")
    with torch.no_grad():
        m(x)
    for p in m.filter.parameters():
        p.data.mul_(0.5)
    clear_spectrum_caches(m)
    check(".data edit in eval, then clear_spectrum_caches")


def test_cache_keeps_within_its_byte_budget():
    m = HyenaPixelMixer(8, 9, 8).eval()
    sizes = [(4, 4), (6, 5), (8, 8), (12, 10)]
    with torch.no_grad():
        for h, w in sizes[:2]:
            m(torch.randn(1, h, w, 8))
        two = m.spectrum_cache.nbytes()
        assert len(m.spectrum_cache) == 2 and two > 0
        m.spectrum_cache.max_bytes = two  # room for these two only
        want = m(torch.randn(1, 8, 8, 8).clone())
        assert len(m.spectrum_cache) <= 2 and m.spectrum_cache.nbytes() <= two  # the oldest went first
        m.spectrum_cache.max_bytes = 1  # less than one entry: the newest is still kept
        x = torch.randn(1, 12, 10, 8)
        got = m(x)
        assert len(m.spectrum_cache) == 1
        torch.testing.assert_close(got, copy.deepcopy(m)(x), rtol=0, atol=0)
        assert want.shape == (1, 8, 8, 8)


def test_cache_not_copied_by_deepcopy():
    m = HyenaPixelMixer(8, 9, 8).eval()
    with torch.no_grad():
        m(torch.randn(1, 4, 4, 8))
    assert len(copy.deepcopy(m).spectrum_cache) == 0


@pytest.mark.parametrize(
    "make",
    [
        lambda **kw: HyenaPixelMixer(8, 9, 8, **kw),
        lambda **kw: BidirectionalHyenaMixer(8, 16, 5, 8, **kw),
        lambda **kw: CausalHyenaMixer(8, 16, 5, 8, **kw),
    ],
)
def test_misspelled_keyword_is_an_error(make):
    make()
    with pytest.raises(TypeError, match="kernel_sise"):
        make(kernel_sise=5)


@pytest.mark.parametrize(("size", "kernel_size", "dft"), [((7, 7), 13, True), ((5, 9), 9, True), ((20, 18), 39, False)])
def test_cached_eval_dispatch_computes_the_same_mixer(size, kernel_size, dft):
    # small maps take the DFT matrix products from the cache (ops.dft.dft_preferred), larger ones the FFT spectrum;
    # both are Eq. 3 with the direct convolution (float64) and the uncached FFT path (float32)
    from hyenapixel.ops.dft import DFTSpectrum2d

    m = HyenaPixelMixer(6, kernel_size, 8, qk_norm_layer=MIXER_NORM, out_norm_layer=MIXER_NORM).double().eval()
    x = torch.randn(2, *size, 6, dtype=torch.float64)
    with torch.no_grad():
        got = m(x)
        (entry,) = m.spectrum_cache._entries.values()
        assert isinstance(entry, DFTSpectrum2d) == dft
        torch.testing.assert_close(got, _reference_hpx(m, x), rtol=1e-10, atol=1e-12)
        m32 = m.float()
        x32 = x.float()
        cached = m32(x32)
        m32.spectrum_cache.enabled = False
        uncached = m32(x32)
    torch.testing.assert_close(cached, uncached, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(("size", "kernel_size", "dft"), [((7, 7), 13, True), ((5, 9), 9, True), ((20, 18), 39, False)])
def test_training_dispatch_computes_the_same_mixer_and_gradients(size, kernel_size, dft, monkeypatch):
    # in training, small maps take DFT matrix products with the kernel regenerated (ops.dft.dft_conv2d), larger ones
    # the FFT path; values and the gradients of the input and of every parameter equal Eq. 3 with the direct
    # convolution (float64)
    import hyenapixel.ops.dft as dft_module

    calls, original = [], dft_module.dft_conv2d
    monkeypatch.setattr(dft_module, "dft_conv2d", lambda *a: calls.append(1) or original(*a))
    m = HyenaPixelMixer(6, kernel_size, 8, qk_norm_layer=MIXER_NORM, out_norm_layer=MIXER_NORM).double().train()
    x = torch.randn(2, *size, 6, dtype=torch.float64, requires_grad=True)
    up = torch.randn(2, *size, 6, dtype=torch.float64)
    params = [x, *m.parameters()]
    got = m(x)
    assert bool(calls) == dft and not m.spectrum_cache._entries
    grads = torch.autograd.grad((got * up).sum(), params)
    ref = _reference_hpx(m, x)
    torch.testing.assert_close(got, ref, rtol=1e-10, atol=1e-12)
    for a, e in zip(grads, torch.autograd.grad((ref * up).sum(), params)):
        torch.testing.assert_close(a, e, rtol=1e-9, atol=1e-11)
