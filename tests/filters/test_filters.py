"""Filters against closed forms: the Wang & Liu 2D encoding, the Eq. 4 window, Hyena's positional bands and
window, and resampling to other sizes."""

from __future__ import annotations

import math

import pytest
import torch

from hyenapixel.filters import (
    ExplicitFilter2d,
    ImplicitFilter1d,
    ImplicitFilter2d,
    SeparableFilter2d,
    decay_rates,
    hyena_positional_encoding,
    radial_distance,
    sincos_positional_encoding_2d,
)


def test_sincos_2d_closed_form():
    pe = sincos_positional_encoding_2d(8, 5, 7)
    half = 4
    for c, (fn, axis) in enumerate(
        [
            (math.sin, "w"),
            (math.cos, "w"),
            (math.sin, "w"),
            (math.cos, "w"),
            (math.sin, "h"),
            (math.cos, "h"),
            (math.sin, "h"),
            (math.cos, "h"),
        ]
    ):
        i = (c % half) // 2
        f = 10000 ** (-2 * i / half)
        for y in range(5):
            for x in range(7):
                pos = x if axis == "w" else y
                assert pe[c, y, x].item() == pytest.approx(fn(pos * f), abs=1e-6)
    with pytest.raises(ValueError, match="multiple of 4"):
        sincos_positional_encoding_2d(6, 3, 3)


def test_radial_distance_and_window():
    d = radial_distance(5, 5)
    assert d[2, 2] == 0 and d[0, 0] == pytest.approx(math.sqrt(8))
    f = ImplicitFilter2d(3, kernel_size=5, emb_dim=4)
    with torch.no_grad():
        f.shift.copy_(torch.tensor([0.1, 0.2, 0.3]))
    w = f.window()
    for c in range(3):
        expected = math.exp(-abs(f.decay[c].item()) * math.sqrt(8)) + f.shift[c].item()
        assert w[c, 0, 0].item() == pytest.approx(expected, rel=1e-6)
        assert w[c, 2, 2].item() == pytest.approx(1 + f.shift[c].item(), rel=1e-6)


def test_implicit_2d_is_mlp_times_window():
    f = ImplicitFilter2d(4, kernel_size=(5, 3), emb_dim=8).double()
    k = f()
    z = f.pos_emb.permute(1, 2, 0)  # (kh, kw, K)
    h = torch.sin(f.mlp[1].freq * (z @ f.mlp[0].weight.t() + f.mlp[0].bias))
    h = torch.sin(f.mlp[3].freq * (h @ f.mlp[2].weight.t() + f.mlp[2].bias))
    ref = (h @ f.mlp[4].weight.t()).permute(2, 0, 1) * f.window()
    torch.testing.assert_close(k, ref)


def test_hyena_encoding_closed_form():
    z, t = hyena_positional_encoding(7, 5, causal=False)
    assert z.shape == (7, 5)
    torch.testing.assert_close(z[:, 0], torch.tensor([0, 1 / 3, 2 / 3, 1, 2 / 3, 1 / 3, 0]))
    torch.testing.assert_close(t, 1 - z[:, 0])
    f = torch.tensor([1e-4, 1.0])
    w = 2 * math.pi * torch.arange(7.0) / 7
    torch.testing.assert_close(z[:, 1:3], torch.cos(f * w[:, None]))
    torch.testing.assert_close(z[:, 3:5], -torch.sin(f * w[:, None]))
    zc, tc = hyena_positional_encoding(4, 3, causal=True)
    torch.testing.assert_close(tc, torch.tensor([0, 1 / 3, 2 / 3, 1]))
    with pytest.raises(ValueError, match="odd"):
        hyena_positional_encoding(6, 5, causal=False)


def test_decay_rates_closed_form():
    # Hyena's modulation: the slowest channel falls to 1e-2 over 1.5 of the kernel, the fastest over 0.3
    torch.testing.assert_close(
        decay_rates(3),
        torch.tensor([math.log(1e-2) / 1.5, (math.log(1e-2) / 1.5 + math.log(1e-2) / 0.3) / 2, math.log(1e-2) / 0.3]),
    )
    r = decay_rates(5, fast_decay_pct=0.5, slow_decay_pct=2.0, target=0.1)
    assert math.exp(r[0].item() * 2.0) == pytest.approx(0.1) and math.exp(r[-1].item() * 0.5) == pytest.approx(0.1)
    with pytest.raises(ValueError, match="target"):
        decay_rates(4, target=2.0)


def test_both_filters_use_the_shared_decay_rates():
    torch.testing.assert_close(ImplicitFilter1d(6, kernel_len=9, emb_dim=5).decay, decay_rates(6))
    torch.testing.assert_close(ImplicitFilter2d(6, kernel_size=(7, 11), emb_dim=4).decay.detach(), decay_rates(6) / 11)


@pytest.mark.parametrize("causal", [False, True])
def test_1d_filter_is_mlp_times_window(causal):
    """Eq. 2: kernel = FFN(PE(t)) * exp(-|alpha| t_norm), with t_norm the normalised distance from the center
    (bidirectional) or from lag 0 (causal), computed here from the tap index alone."""
    n = 9
    f = ImplicitFilter1d(3, kernel_len=n, emb_dim=5, hidden=8, causal=causal).double()
    z = f.pos_emb
    h = torch.sin(f.mlp[1].freq * (z @ f.mlp[0].weight.t() + f.mlp[0].bias))
    for i in range(2, len(f.mlp) - 1, 2):
        h = torch.sin(f.mlp[i + 1].freq * (h @ f.mlp[i].weight.t() + f.mlp[i].bias))
    ffn = (h @ f.mlp[-1].weight.t()).t()  # (channels, n)
    taps = torch.arange(n, dtype=torch.float64)
    t_norm = taps / (n - 1) if causal else (taps - n // 2).abs() / (n // 2)
    ref = ffn * torch.exp(-t_norm[None] * decay_rates(3).double().abs()[:, None])
    torch.testing.assert_close(f(), ref)
    if not causal:
        torch.testing.assert_close(ref[:, n // 2], ffn[:, n // 2])  # the window is 1 at the center tap


def test_1d_resampling_keeps_endpoints_and_center():
    f = ImplicitFilter1d(2, kernel_len=31, emb_dim=5, hidden=8, causal=False)
    z, t = f.embedding(31)
    assert z is f.pos_emb
    z2, t2 = f.embedding(11)
    assert z2.shape == (11, 5)
    torch.testing.assert_close(z2[[0, 5, 10]], f.pos_emb[[0, 15, 30]])
    torch.testing.assert_close(t2[[0, 5, 10]], t[[0, 15, 30]])
    assert f(11).shape == (2, 11)
    with pytest.raises(ValueError, match="odd"):
        f.embedding(10)


def test_2d_resample_scales_decay_and_keeps_relative_window():
    """Resampling maps new tap positions to old ones by the size ratio (as the bicubic resize of the embedding
    does), so the window at new distance d equals the old window at d * old / new."""
    f = ImplicitFilter2d(3, kernel_size=11, emb_dim=8)
    old_decay = f.decay.detach().abs().clone()
    f.resample_(21)
    assert f.pos_emb.shape == (8, 21, 21) and f().shape == (3, 21, 21)
    w_new = f.window()
    for c in range(3):
        for i, j in ((10, 0), (3, 17), (10, 10)):
            d_old = math.hypot(i - 10, j - 10) * 11 / 21
            assert w_new[c, i, j].item() == pytest.approx(math.exp(-old_decay[c].item() * d_old), rel=1e-5)


@pytest.mark.parametrize(
    "make",
    [
        lambda **kw: ImplicitFilter2d(4, 5, emb_dim=4, **kw),
        lambda **kw: ImplicitFilter1d(4, 9, emb_dim=5, **kw),
        lambda **kw: ExplicitFilter2d(4, 5, emb_dim=4, **kw),
        lambda **kw: SeparableFilter2d(4, 5, emb_dim=4, **kw),
    ],
)
def test_misspelled_keyword_is_an_error(make):
    make()  # the spelled-right call works
    with pytest.raises(TypeError, match="kernel_sise"):
        make(kernel_sise=7)


def test_explicit_filters_build_their_kernels():
    e = ExplicitFilter2d(3, (5, 7))
    assert e().shape == (3, 5, 7) and e() is e.weight
    s = SeparableFilter2d(3, (5, 7))
    k = s()
    torch.testing.assert_close(k[1, 2, 4], s.weight_v[1, 2] * s.weight_h[1, 4])
    torch.testing.assert_close(k[0], torch.outer(s.weight_v[0], s.weight_h[0]))  # an outer product per channel
