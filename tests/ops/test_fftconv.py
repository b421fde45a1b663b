"""Tests for the FFT long convolutions in ``hyenapixel.ops.fftconv`` against an independent direct convolution.

The reference is ``hyenapixel.ops.fftconv2d_ref`` / ``fftconv1d_ref``, a plain depthwise ``conv2d``/``conv1d``
(cross-correlation with a flipped kernel and explicit zero padding, so kernels larger than the input work), itself
checked against an explicit loop over the definition on tiny shapes.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest
import torch

from hyenapixel.ops import (
    AxisPlan,
    ConvPlan,
    apply_spectrum,
    fftconv1d,
    fftconv1d_ref,
    fftconv2d,
    fftconv2d_ref,
    kernel_spectrum,
    next_fast_len,
    plan_conv1d,
    plan_conv2d,
)


@pytest.fixture(autouse=True, scope="module")
def _single_thread() -> Iterator[None]:
    """Tiny shapes gain nothing from intra-op threads, and on a busy machine their barriers make small ops slow."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# --------------------------------------------------------------------------------------------------------------------
# Independent references
# --------------------------------------------------------------------------------------------------------------------


def loop_conv2d(x: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Literal transcription of the 2D definition (tiny shapes only)."""
    nb, nc, nh, nw = x.shape
    _, kh, kw = k.shape
    y = torch.zeros(nb, nc, nh, nw, dtype=torch.float64)
    for b, c, i, j, a, bb in itertools.product(range(nb), range(nc), range(nh), range(nw), range(kh), range(kw)):
        u, v = i + kh // 2 - a, j + kw // 2 - bb
        if 0 <= u < nh and 0 <= v < nw:
            y[b, c, i, j] += float(k[c, a, bb]) * float(x[b, c, u, v])
    return y


def loop_conv1d(x: torch.Tensor, k: torch.Tensor, causal: bool) -> torch.Tensor:
    """Literal transcription of the 1D definitions (tiny shapes only)."""
    nb, nc, nl = x.shape
    nk = k.shape[1]
    y = torch.zeros(nb, nc, nl, dtype=torch.float64)
    for b, c, t, j in itertools.product(range(nb), range(nc), range(nl), range(nk)):
        s = t - j if causal else t + nk // 2 - j
        if 0 <= s < nl:
            y[b, c, t] += float(k[c, j]) * float(x[b, c, s])
    return y


def smooth_numbers(limit: int) -> list[int]:
    """All 2,3,5,7-smooth numbers up to ``limit``, generated as products (not by trial division)."""
    out = []
    p2 = 1
    while p2 <= limit:
        p3 = p2
        while p3 <= limit:
            p5 = p3
            while p5 <= limit:
                p7 = p5
                while p7 <= limit:
                    out.append(p7)
                    p7 *= 7
                p5 *= 5
            p3 *= 3
        p2 *= 2
    return sorted(out)


SMOOTH = smooth_numbers(5000)


def smallest_smooth(n: int, even: bool = False) -> int:
    return next(m for m in SMOOTH if m >= n and not (even and m % 2))


def close_to(out: torch.Tensor, ref: torch.Tensor, rel: float) -> None:
    """``max|out - ref| <= rel * max(1, max|ref|)`` (errors of FFT convolutions scale with the signal norm)."""
    err = (out.double() - ref.double()).abs().max().item()
    scale = max(1.0, ref.abs().max().item())
    assert err <= rel * scale, f"max abs error {err:.3e} > {rel:.1e} * {scale:.3e}"


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# --------------------------------------------------------------------------------------------------------------------
# The references themselves
# --------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("nb", "nc", "nh", "nw", "kh", "kw"),
    [(1, 1, 3, 3, 3, 3), (2, 2, 4, 3, 2, 5), (1, 2, 3, 5, 7, 9), (1, 1, 1, 1, 1, 1), (1, 2, 2, 4, 6, 1)],
)
def test_reference2d_matches_loop(nb: int, nc: int, nh: int, nw: int, kh: int, kw: int) -> None:
    g = _gen(0)
    x = torch.randn(nb, nc, nh, nw, generator=g, dtype=torch.float64)
    k = torch.randn(nc, kh, kw, generator=g, dtype=torch.float64)
    torch.testing.assert_close(fftconv2d_ref(x, k), loop_conv2d(x, k), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize(("nl", "nk"), [(1, 1), (5, 3), (5, 4), (4, 9), (6, 11), (3, 2)])
def test_reference1d_matches_loop(nl: int, nk: int, causal: bool) -> None:
    g = _gen(1)
    x = torch.randn(2, 2, nl, generator=g, dtype=torch.float64)
    k = torch.randn(2, nk, generator=g, dtype=torch.float64)
    torch.testing.assert_close(fftconv1d_ref(x, k, causal=causal), loop_conv1d(x, k, causal), rtol=1e-12, atol=1e-12)


# --------------------------------------------------------------------------------------------------------------------
# Values and gradients against the reference
# --------------------------------------------------------------------------------------------------------------------

SHAPES_2D = [
    # (nb, nc, nh, nw, kh, kw)
    (2, 3, 8, 8, 3, 3),  # small odd kernel
    (1, 2, 7, 9, 4, 6),  # even, non-square kernel on a non-square input
    (2, 3, 9, 7, 2, 2),
    (1, 2, 12, 10, 4, 1),
    (2, 2, 6, 5, 11, 9),  # exactly 2H-1 x 2W-1 (global)
    (1, 2, 5, 4, 15, 13),  # beyond 2H-1 x 2W-1 (taps that never reach an output)
    (1, 2, 5, 4, 16, 2),  # even and larger than the input on one axis only
    (1, 2, 16, 12, 32, 24),  # even global kernels
    (1, 1, 1, 1, 1, 1),  # 1x1 everything
    (1, 2, 1, 1, 5, 3),  # 1x1 image, large kernel
    (3, 2, 1, 6, 1, 11),  # single row
    (1, 2, 10, 3, 2, 1),
    (1, 3, 7, 7, 13, 13),  # HyenaPixel S18 stage 4 (7x7, kernel 13)
    (2, 2, 14, 14, 27, 27),  # stage 3 (14x14, kernel 27)
    (1, 1, 28, 28, 55, 55),  # stage 2
    (1, 1, 56, 56, 111, 111),  # stage 1
    (1, 2, 11, 13, 6, 30),
]


@pytest.mark.parametrize(("nb", "nc", "nh", "nw", "kh", "kw"), SHAPES_2D)
def test_fftconv2d_matches_direct_float64(nb: int, nc: int, nh: int, nw: int, kh: int, kw: int) -> None:
    g = _gen(2)
    x = torch.randn(nb, nc, nh, nw, generator=g, dtype=torch.float64)
    k = torch.randn(nc, kh, kw, generator=g, dtype=torch.float64)
    y = fftconv2d(x, k)
    assert y.shape == (nb, nc, nh, nw)
    assert y.dtype == torch.float64
    close_to(y, fftconv2d_ref(x, k), 1e-12)


@pytest.mark.parametrize(("nb", "nc", "nh", "nw", "kh", "kw"), SHAPES_2D)
def test_fftconv2d_matches_direct_float32(nb: int, nc: int, nh: int, nw: int, kh: int, kw: int) -> None:
    g = _gen(3)
    x = torch.randn(nb, nc, nh, nw, generator=g)
    k = torch.randn(nc, kh, kw, generator=g)
    y = fftconv2d(x, k)
    assert y.dtype == torch.float32
    close_to(y, fftconv2d_ref(x, k), 1e-5)


@pytest.mark.parametrize(("nb", "nc", "nh", "nw", "kh", "kw"), SHAPES_2D)
def test_fftconv2d_gradients_match_direct(nb: int, nc: int, nh: int, nw: int, kh: int, kw: int) -> None:
    g = _gen(4)
    x = torch.randn(nb, nc, nh, nw, generator=g, dtype=torch.float64, requires_grad=True)
    k = torch.randn(nc, kh, kw, generator=g, dtype=torch.float64, requires_grad=True)
    up = torch.randn(nb, nc, nh, nw, generator=g, dtype=torch.float64)
    gx, gk = torch.autograd.grad((fftconv2d(x, k) * up).sum(), (x, k))
    rx, rk = torch.autograd.grad((fftconv2d_ref(x, k) * up).sum(), (x, k))
    assert gx.shape == x.shape and gk.shape == k.shape
    close_to(gx, rx, 1e-12)
    close_to(gk, rk, 1e-12)


SHAPES_1D = [
    # (nb, nc, nl, nk)
    (2, 3, 16, 16),
    (1, 2, 16, 31),  # 2L-1
    (2, 2, 15, 8),
    (1, 2, 7, 40),  # kernel much longer than the input
    (1, 1, 1, 1),
    (3, 2, 1, 6),  # single sample, longer kernel
    (1, 2, 10, 1),
    (2, 4, 196, 196),  # 14x14 tokens, as in Hyena on flattened images
    (1, 2, 50, 9),
    (2, 3, 33, 64),
]


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize(("nb", "nc", "nl", "nk"), SHAPES_1D)
def test_fftconv1d_matches_direct(nb: int, nc: int, nl: int, nk: int, causal: bool) -> None:
    g = _gen(5)
    x = torch.randn(nb, nc, nl, generator=g, dtype=torch.float64)
    k = torch.randn(nc, nk, generator=g, dtype=torch.float64)
    y = fftconv1d(x, k, causal=causal)
    assert y.shape == (nb, nc, nl) and y.dtype == torch.float64
    ref = fftconv1d_ref(x, k, causal=causal)
    close_to(y, ref, 1e-12)
    y32 = fftconv1d(x.float(), k.float(), causal=causal)
    assert y32.dtype == torch.float32
    close_to(y32, ref, 1e-5)


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize(("nb", "nc", "nl", "nk"), SHAPES_1D)
def test_fftconv1d_gradients_match_direct(nb: int, nc: int, nl: int, nk: int, causal: bool) -> None:
    g = _gen(6)
    x = torch.randn(nb, nc, nl, generator=g, dtype=torch.float64, requires_grad=True)
    k = torch.randn(nc, nk, generator=g, dtype=torch.float64, requires_grad=True)
    up = torch.randn(nb, nc, nl, generator=g, dtype=torch.float64)
    gx, gk = torch.autograd.grad((fftconv1d(x, k, causal=causal) * up).sum(), (x, k))
    rx, rk = torch.autograd.grad((fftconv1d_ref(x, k, causal=causal) * up).sum(), (x, k))
    close_to(gx, rx, 1e-12)
    close_to(gk, rk, 1e-12)


def test_causal_output_ignores_the_future() -> None:
    g = _gen(7)
    x = torch.randn(1, 2, 20, generator=g, dtype=torch.float64)
    k = torch.randn(2, 20, generator=g, dtype=torch.float64)
    x2 = x.clone()
    x2[..., 12:] = torch.randn(1, 2, 8, generator=g, dtype=torch.float64)
    y, y2 = fftconv1d(x, k, causal=True), fftconv1d(x2, k, causal=True)
    torch.testing.assert_close(y[..., :12], y2[..., :12], rtol=0, atol=1e-12)
    assert (y[..., 12:] - y2[..., 12:]).abs().max() > 1e-3


def test_delta_kernel_is_identity_and_shift() -> None:
    x = torch.randn(2, 3, 6, 5, generator=_gen(8), dtype=torch.float64)
    k = torch.zeros(3, 7, 4, dtype=torch.float64)
    k[:, 3, 2] = 1.0  # the center tap (kh//2, kw//2): identity
    close_to(fftconv2d(x, k), x, 1e-13)
    k = torch.zeros(3, 7, 4, dtype=torch.float64)
    k[:, 4, 2] = 1.0  # one row below the center: y[i] = x[i - 1]
    y = fftconv2d(x, k)
    close_to(y[:, :, 1:], x[:, :, :-1], 1e-13)
    close_to(y[:, :, :1], torch.zeros_like(y[:, :, :1]), 1e-13)


def test_noncontiguous_input() -> None:
    g = _gen(9)
    x_nhwc = torch.randn(2, 6, 5, 4, generator=g, dtype=torch.float64)
    x = x_nhwc.permute(0, 3, 1, 2)  # NHWC view as NCHW, as the mixers pass it
    assert not x.is_contiguous()
    k = torch.randn(4, 11, 9, generator=g, dtype=torch.float64)
    close_to(fftconv2d(x, k), fftconv2d_ref(x.contiguous(), k), 1e-12)


@pytest.mark.parametrize(
    ("shape", "kshape"), [((1, 2, 3, 4), (2, 5, 3)), ((2, 1, 2, 3), (1, 6, 8)), ((1, 1, 1, 2), (1, 2, 2))]
)
def test_gradcheck_2d(shape: tuple[int, ...], kshape: tuple[int, ...]) -> None:
    g = _gen(10)
    x = torch.randn(*shape, generator=g, dtype=torch.float64, requires_grad=True)
    k = torch.randn(*kshape, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(fftconv2d, (x, k))
    assert torch.autograd.gradgradcheck(fftconv2d, (x, k))


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize(("nl", "nk"), [(5, 3), (4, 9), (1, 2)])
def test_gradcheck_1d(nl: int, nk: int, causal: bool) -> None:
    g = _gen(11)
    x = torch.randn(2, 2, nl, generator=g, dtype=torch.float64, requires_grad=True)
    k = torch.randn(2, nk, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: fftconv1d(a, b, causal=causal), (x, k))
    assert torch.autograd.gradgradcheck(lambda a, b: fftconv1d(a, b, causal=causal), (x, k))


@pytest.mark.parametrize(
    ("chunk_bytes", "batch_slices", "channel_slices"),
    [(1, 5, 2), (900, 5, 2), (1600, 5, 1), (3300, 3, 1)],  # a channel's spectrum is 800 bytes, a sample's 1600
)
def test_blocks_give_the_same_values_and_gradients(
    monkeypatch, chunk_bytes: int, batch_slices: int, channel_slices: int
) -> None:
    """Large spectra are processed in blocks of samples and channels (forward, both backward products, eval);
    results are unchanged."""
    import hyenapixel.ops.fftconv as fc

    monkeypatch.setattr(fc, "SPECTRUM_CHUNK_BYTES", chunk_bytes)
    monkeypatch.setattr(fc, "SPECTRUM_CHUNK_ABOVE", 0)
    g = _gen(23)
    x = torch.randn(5, 2, 6, 5, generator=g, dtype=torch.float64, requires_grad=True)
    k = torch.randn(2, 9, 7, generator=g, dtype=torch.float64, requires_grad=True)
    plan = plan_conv2d(6, 5, 9, 7)
    k_f = kernel_spectrum(k.detach(), plan)
    blocks = fc.Blocks.make(5, 2, plan, torch.float64, x.device)
    assert (len(blocks.batch), len(blocks.channels)) == (batch_slices, channel_slices)
    covered = torch.zeros(5, 2, dtype=torch.int64)
    for cs in blocks.channels:
        for bs in blocks.batch:
            covered[bs, cs] += 1
    assert covered.eq(1).all()  # every (sample, channel) pair exactly once
    meta = fc.Blocks.make(5, 2, plan, torch.float64, torch.device("meta"))
    assert len(meta.batch) == len(meta.channels) == 1  # GPUs (any non-CPU device) transform everything at once
    up = torch.randn(5, 2, 6, 5, generator=g, dtype=torch.float64)
    y = fftconv2d(x, k)
    close_to(y, fftconv2d_ref(x.detach(), k.detach()), 1e-12)
    gx, gk = torch.autograd.grad((y * up).sum(), (x, k))
    rx, rk = torch.autograd.grad((fftconv2d_ref(x, k) * up).sum(), (x, k))
    close_to(gx, rx, 1e-12)
    close_to(gk, rk, 1e-12)
    close_to(apply_spectrum(x.detach(), k_f, plan), fftconv2d_ref(x.detach(), k.detach()), 1e-12)
    small = (x[:3].detach().requires_grad_(), k)
    assert torch.autograd.gradgradcheck(fftconv2d, small)


@pytest.mark.parametrize(("x_grad", "k_grad"), [(True, False), (False, True), (False, False)])
def test_gradient_of_one_input_only(x_grad: bool, k_grad: bool) -> None:
    g = _gen(19)
    x = torch.randn(2, 3, 9, 7, generator=g, dtype=torch.float64, requires_grad=x_grad)
    k = torch.randn(3, 15, 6, generator=g, dtype=torch.float64, requires_grad=k_grad)
    y = fftconv2d(x, k)
    close_to(y, fftconv2d_ref(x.detach(), k.detach()), 1e-12)
    assert y.requires_grad == (x_grad or k_grad)
    if not y.requires_grad:
        return
    up = torch.randn(2, 3, 9, 7, generator=g, dtype=torch.float64)
    (got,) = torch.autograd.grad((y * up).sum(), x if x_grad else k)
    xd, kd = x.detach().requires_grad_(x_grad), k.detach().requires_grad_(k_grad)
    (want,) = torch.autograd.grad((fftconv2d_ref(xd, kd) * up).sum(), xd if x_grad else kd)
    close_to(got, want, 1e-12)


@pytest.mark.parametrize("k_grad", [True, False])
def test_autograd_saves_no_spectra(k_grad: bool) -> None:
    # Training memory: the graph keeps at most the (real) input and kernel, never a padded or complex spectrum,
    # which is about four times the input's size here.
    g = _gen(20)
    x = torch.randn(2, 3, 14, 14, generator=g, requires_grad=True)
    k = torch.randn(3, 27, 27, generator=g, requires_grad=k_grad)
    saved: list[int] = []

    def pack(t: torch.Tensor) -> torch.Tensor:
        saved.append(t.numel() * t.element_size())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        y = fftconv2d(x, k)
    budget = (x.numel() if k_grad else 0) * x.element_size() + k.numel() * k.element_size()
    assert sum(saved) <= budget, saved
    y.sum().backward()
    assert x.grad is not None and (k.grad is not None) == k_grad


# --------------------------------------------------------------------------------------------------------------------
# Dtypes and autocast
# --------------------------------------------------------------------------------------------------------------------

# Relative rounding of one result element (half an ulp, with margin).
HALF_ULP = {torch.float16: 2.0**-10, torch.bfloat16: 2.0**-7}


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize(("nh", "nw", "kh", "kw"), [(14, 14, 27, 27), (9, 6, 4, 11), (28, 28, 55, 55)])
def test_half_inputs_are_computed_in_float32(dtype: torch.dtype, nh: int, nw: int, kh: int, kw: int) -> None:
    g = _gen(12)
    x = torch.randn(2, 3, nh, nw, generator=g).to(dtype)
    k = (torch.randn(3, kh, kw, generator=g) / kh).to(dtype)
    y = fftconv2d(x, k)
    assert y.dtype == dtype
    ref = fftconv2d_ref(x, k)  # exact result for the rounded inputs
    # Only the final rounding to ``dtype`` may cost more than float32 accuracy; an FFT in half precision would not
    # meet this bound on the small-magnitude outputs.
    err = (y.double() - ref).abs()
    bound = HALF_ULP[dtype] * ref.abs() + 1e-5 * ref.abs().max()
    assert bool((err <= bound).all()), f"max excess {(err - bound).max().item():.3e}"


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_inputs_1d_and_gradients(dtype: torch.dtype) -> None:
    g = _gen(13)
    x = torch.randn(2, 3, 40, generator=g).to(dtype).requires_grad_()
    k = (torch.randn(3, 40, generator=g) / 8).to(dtype).requires_grad_()
    for causal in (True, False):
        y = fftconv1d(x, k, causal=causal)
        assert y.dtype == dtype
        ref = fftconv1d_ref(x.detach(), k.detach(), causal=causal)
        err = (y.double() - ref).abs()
        assert bool((err <= HALF_ULP[dtype] * ref.abs() + 1e-5 * ref.abs().max()).all())
    up = torch.randn(2, 3, 40, generator=g).to(dtype)
    gx, gk = torch.autograd.grad((fftconv1d(x, k, causal=False) * up).float().sum(), (x, k))
    assert gx.dtype == dtype and gk.dtype == dtype
    xd, kd = x.detach().double().requires_grad_(), k.detach().double().requires_grad_()
    rx, rk = torch.autograd.grad((fftconv1d_ref(xd, kd, causal=False) * up.double()).sum(), (xd, kd))
    close_to(gx, rx, 4 * HALF_ULP[dtype])
    close_to(gk, rk, 4 * HALF_ULP[dtype])


def test_mixed_dtypes_follow_x() -> None:
    g = _gen(14)
    x = torch.randn(1, 2, 6, 6, generator=g)
    k = torch.randn(2, 5, 5, generator=g, dtype=torch.float64)
    assert fftconv2d(x, k).dtype == torch.float32
    assert fftconv2d(x.double(), k.float()).dtype == torch.float64
    close_to(fftconv2d(x.half(), k), fftconv2d_ref(x.half(), k), 2e-3)


def test_autocast_bfloat16() -> None:
    g = _gen(15)
    x = torch.randn(2, 4, 14, 14, generator=g, requires_grad=True)
    k = torch.randn(4, 27, 27, generator=g, requires_grad=True)
    w = torch.randn(4, 4, generator=g)
    up = torch.randn(2, 4, 14, 14, generator=g)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = fftconv2d(x, k)  # float32 input stays float32
        z = torch.einsum("bchw,dc->bdhw", x, w)  # bfloat16 under autocast
        yz = fftconv2d(z, k)
    assert y.dtype == torch.float32
    assert yz.dtype == z.dtype == torch.bfloat16
    close_to(y, fftconv2d_ref(x.detach(), k.detach()), 1e-5)
    ref_z = fftconv2d_ref(z.detach(), k.detach())
    assert bool(
        ((yz.double() - ref_z).abs() <= HALF_ULP[torch.bfloat16] * ref_z.abs() + 1e-5 * ref_z.abs().max()).all()
    )
    gx, gk = torch.autograd.grad((y * up).sum() + (yz.float() * up).sum(), (x, k))
    assert gx.dtype == torch.float32 and gk.dtype == torch.float32
    assert torch.isfinite(gx).all() and torch.isfinite(gk).all()
    xd, kd = x.detach().double().requires_grad_(), k.detach().double().requires_grad_()
    rx, rk = torch.autograd.grad((fftconv2d_ref(xd, kd) * up).sum(), (xd, kd))
    # The bfloat16 branch adds gradient terms of bfloat16 accuracy; the float32 branch must dominate the match.
    rzx, rzk = torch.autograd.grad(
        (fftconv2d_ref(torch.einsum("bchw,dc->bdhw", xd, w.double()), kd) * up).sum(), (xd, kd)
    )
    close_to(gx, rx + rzx, 3e-2)
    close_to(gk, rk + rzk, 3e-2)


def test_complex_input_rejected() -> None:
    x = torch.randn(1, 1, 4, 4, dtype=torch.complex64)
    with pytest.raises(TypeError):
        fftconv2d(x, torch.randn(1, 3, 3))


def test_integer_input_rejected_not_truncated() -> None:
    with pytest.raises(TypeError, match="floating-point tensors, got torch.int64"):
        fftconv2d(torch.randint(-3, 4, (1, 2, 9, 11)), torch.randn(2, 7, 7))


@pytest.mark.parametrize("xs", [(0, 4, 8, 8), (2, 0, 8, 8)])
def test_empty_batch_or_channels_give_empty_output(xs: tuple[int, ...]) -> None:
    x = torch.randn(*xs, requires_grad=True)
    k = torch.randn(xs[1], 5, 5, requires_grad=True)
    y = fftconv2d(x, k)
    assert y.shape == x.shape and y.dtype == x.dtype
    y.sum().backward()
    assert x.grad.shape == x.shape
    plan = plan_conv2d(8, 8, 5, 5)
    assert apply_spectrum(x.detach(), kernel_spectrum(k.detach(), plan), plan).shape == x.shape
    assert fftconv1d(torch.randn(0, 3, 10), torch.randn(3, 4), causal=True).shape == (0, 3, 10)


# --------------------------------------------------------------------------------------------------------------------
# FFT sizes and plans
# --------------------------------------------------------------------------------------------------------------------


def test_next_fast_len_is_smallest_smooth() -> None:
    for n in range(1, 2100):
        assert next_fast_len(n) == smallest_smooth(n), n
        assert next_fast_len(n, even=True) == smallest_smooth(n, even=True), n


@pytest.mark.parametrize(
    ("n", "even", "expected"),
    [
        (111, False, 112),
        (27, False, 27),
        (27, True, 28),
        (13, False, 14),
        (55, False, 56),
        (121, False, 125),
        (11, True, 12),
        (1, True, 2),
    ],
)
def test_next_fast_len_examples(n: int, even: bool, expected: int) -> None:
    assert next_fast_len(n, even=even) == expected


def test_next_fast_len_rejects_nonpositive() -> None:
    with pytest.raises(ValueError):
        next_fast_len(0)


def _conv_with_axis_plan(x: torch.Tensor, k: torch.Tensor, plan: AxisPlan) -> torch.Tensor:
    p = ConvPlan((plan,))
    return apply_spectrum(x, kernel_spectrum(k, p), p)


def _minimal_valid_fft_len(nl: int, nk: int, causal: bool) -> tuple[int, AxisPlan]:
    """Smallest circular length (any integer) for which the planned crop/offset gives the exact linear result."""
    g = _gen(nl * 1000 + nk)
    x = torch.randn(1, 1, nl, generator=g, dtype=torch.float64)
    k = torch.randn(1, nk, generator=g, dtype=torch.float64)
    ref = fftconv1d_ref(x, k, causal=causal)
    plan = plan_conv1d(nl, nk, causal).axes[0]
    for n in range(1, 2 * (nl + nk) + 2):
        p = AxisPlan(plan.length, plan.start, plan.stop, plan.center, n)
        if n >= plan.center + nl and (_conv_with_axis_plan(x, k, p) - ref).abs().max() < 1e-10:
            return n, plan
    raise AssertionError("no valid length found")


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize(("nl", "nk"), list(itertools.product([1, 2, 3, 5, 8, 13], [1, 2, 3, 4, 7, 8, 15, 16, 17, 30])))
def test_plan_uses_smallest_valid_smooth_length(nl: int, nk: int, causal: bool) -> None:
    n_min, plan = _minimal_valid_fft_len(nl, nk, causal)
    # Shorter lengths alias (checked by the brute-force search), the chosen one is the next fast (even) length.
    assert plan.fft_len == smallest_smooth(n_min, even=True)
    # Cropping the taps that never meet the input bounds the transform by 2L - 1 whatever the kernel length.
    assert n_min <= 2 * nl - 1
    # All kept taps can reach an output, all cropped taps cannot.
    g = _gen(99)
    x = torch.randn(1, 1, nl, generator=g, dtype=torch.float64)
    base = torch.randn(1, nk, generator=g, dtype=torch.float64)
    y0 = fftconv1d(x, base, causal=causal)
    for a in range(nk):
        k = base.clone()
        k[0, a] += 1.0
        changed = (fftconv1d_ref(x, k, causal=causal) - fftconv1d_ref(x, base, causal=causal)).abs().max() > 1e-9
        assert changed == (plan.start <= a < plan.stop), (a, plan)
        close_to(
            fftconv1d(x, k, causal=causal) - y0,
            fftconv1d_ref(x, k, causal=causal) - fftconv1d_ref(x, base, causal=causal),
            1e-12,
        )


@pytest.mark.parametrize(
    ("nh", "nw", "kh", "kw"),
    [
        (56, 56, 111, 111),
        (28, 28, 55, 55),
        (14, 14, 27, 27),
        (7, 7, 13, 13),
        (14, 14, 99, 99),
        (9, 5, 4, 12),
        (12, 10, 3, 3),
        (1, 1, 7, 7),
    ],
)
def test_plan2d_sizes_minimal_and_valid(nh: int, nw: int, kh: int, kw: int) -> None:
    plan = plan_conv2d(nh, nw, kh, kw)
    # Minimal no-alias length per axis for a centered kernel (wanted outputs are full-convolution indices
    # [c, c + nl) of the cropped kernel): brute-force it in 1D with the same centers.
    min_h, _ = _minimal_valid_fft_len(nh, kh, causal=False)
    min_w, _ = _minimal_valid_fft_len(nw, kw, causal=False)
    fh, fw = plan.fft_shape
    assert fh in (smallest_smooth(min_h), smallest_smooth(min_h, even=True))
    assert fw in (smallest_smooth(min_w), smallest_smooth(min_w, even=True))
    # Valid: same result as the direct convolution.
    g = _gen(17)
    x = torch.randn(1, 2, nh, nw, generator=g, dtype=torch.float64)
    k = torch.randn(2, kh, kw, generator=g, dtype=torch.float64)
    close_to(apply_spectrum(x, kernel_spectrum(k, plan), plan), fftconv2d_ref(x, k), 1e-12)


def test_plan2d_s18_sizes() -> None:
    assert plan_conv2d(56, 56, 111, 111).fft_shape == (112, 112)
    assert plan_conv2d(28, 28, 55, 55).fft_shape == (56, 56)
    assert plan_conv2d(14, 14, 27, 27).fft_shape in {(27, 28), (28, 28)}
    assert plan_conv2d(7, 7, 13, 13).fft_shape == (14, 14)
    # Taps beyond 2H-1 never meet the input: they do not grow the transform.
    assert plan_conv2d(14, 14, 99, 99).fft_shape == plan_conv2d(14, 14, 27, 27).fft_shape
    # Small kernels need only a little padding, not 2x.
    fh, fw = plan_conv2d(56, 56, 5, 5).fft_shape
    assert fh < 112 and fw < 112


def test_spectrum_reuse_across_inputs() -> None:
    g = _gen(18)
    k = torch.randn(3, 27, 27, generator=g)
    plan = plan_conv2d(14, 14, 27, 27)
    k_f = kernel_spectrum(k, plan)
    for b in (1, 4):
        x = torch.randn(b, 3, 14, 14, generator=g)
        close_to(apply_spectrum(x, k_f, plan), fftconv2d(x, k), 1e-6)
        close_to(apply_spectrum(x, k_f, plan), fftconv2d_ref(x, k), 1e-5)


# --------------------------------------------------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("xs", "ks", "match"),
    [
        ((2, 3, 8), (3, 3, 3), "x must be"),
        ((1, 2, 3, 8, 8), (3, 3, 3), "x must be"),
        ((2, 3, 8, 8), (3, 3), "k must be"),
        ((2, 3, 8, 8), (1, 3, 3, 3), "k must be"),
        ((2, 3, 8, 8), (4, 3, 3), "channels"),
        ((2, 3, 0, 8), (3, 3, 3), "empty"),
        ((2, 3, 8, 8), (3, 0, 3), "empty"),
    ],
)
def test_fftconv2d_bad_input(xs: tuple[int, ...], ks: tuple[int, ...], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        fftconv2d(torch.zeros(xs), torch.zeros(ks))


@pytest.mark.parametrize(
    ("xs", "ks", "match"),
    [
        ((2, 3), (3, 3), "x must be"),
        ((2, 3, 8, 8), (3, 3), "x must be"),
        ((2, 3, 8), (3, 3, 3), "k must be"),
        ((2, 3, 8), (3,), "k must be"),
        ((2, 3, 8), (2, 5), "channels"),
    ],
)
def test_fftconv1d_bad_input(xs: tuple[int, ...], ks: tuple[int, ...], match: str) -> None:
    for causal in (True, False):
        with pytest.raises(ValueError, match=match):
            fftconv1d(torch.zeros(xs), torch.zeros(ks), causal=causal)


def test_fftconv1d_causal_is_required_keyword() -> None:
    with pytest.raises(TypeError):
        fftconv1d(torch.zeros(1, 1, 4), torch.zeros(1, 2))  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        fftconv1d(torch.zeros(1, 1, 4), torch.zeros(1, 2), True)  # type: ignore[misc]


def test_kernel_spectrum_bad_dims() -> None:
    with pytest.raises(ValueError, match="kernel must have"):
        kernel_spectrum(torch.zeros(3, 5), plan_conv2d(4, 4, 5, 5))
