"""The DFT-matrix long convolutions of hyenapixel.ops.dft against the direct-convolution reference
(hyenapixel.ops.reference) and against the FFT path they replace at export."""

from __future__ import annotations

import pytest
import torch

from hyenapixel.ops import fftconv1d_ref, fftconv2d, fftconv2d_ref, plan_conv1d, plan_conv2d
from hyenapixel.ops.dft import (
    DFTAxis,
    DFTConv2d,
    DFTSpectrum2d,
    channels_last_spectrum,
    dft_axes2d,
    dft_conv1d,
    dft_conv2d,
    dft_conv2d_cached,
    dft_conv2d_channels_last,
    dft_matrices2d,
    dft_spectrum2d,
    plan_matrices2d,
    sequence_dft,
)


def _conv2d(x: torch.Tensor, k: torch.Tensor, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Channels-first in and out (as the references), channels-last inside."""
    rows, cols = dft_axes2d(x.shape[-2], x.shape[-1], k.shape[-2], k.shape[-1])
    kr, ki = (s.to(dtype) for s in channels_last_spectrum(*dft_spectrum2d(k, rows, cols)))
    mats = {name: m.to(dtype) for name, m in dft_matrices2d(rows, cols).items()}
    y = dft_conv2d_channels_last(x.permute(0, 2, 3, 1), kr, ki, **mats)
    return y.permute(0, 3, 1, 2)


def _conv1d(x: torch.Tensor, k: torch.Tensor, causal: bool) -> torch.Tensor:
    m = sequence_dft(x.shape[-1], k.shape[-1], causal)
    kr, ki = m.spectrum(k)
    return dft_conv1d(x, kr, ki, m.fa, m.tw, m.f1, m.g1, m.ga, m.offset)


# kernels larger than the map, even and non-square kernels, non-square maps, 1x1, and the S18 stage-4 geometry
SHAPES_2D = [(6, 6, 11, 11), (5, 7, 3, 9), (4, 3, 15, 2), (1, 1, 1, 1), (7, 7, 13, 13), (3, 8, 4, 4)]


@pytest.mark.parametrize(("h", "w", "kh", "kw"), SHAPES_2D)
def test_dft_conv2d_equals_direct_convolution(h: int, w: int, kh: int, kw: int) -> None:
    x = torch.randn(2, 3, h, w, dtype=torch.float64)
    k = torch.randn(3, kh, kw, dtype=torch.float64)
    got = _conv2d(x, k)
    assert got.shape == x.shape
    assert (got - fftconv2d_ref(x, k)).abs().max().item() < 1e-12


@pytest.mark.parametrize(
    ("length", "kernel_len", "causal"),
    [
        (10, 19, False),
        (10, 10, True),
        (7, 3, False),
        (5, 20, True),
        (9, 31, False),
        (1, 1, True),
        (49, 97, False),
        (196, 391, False),
        (64, 64, True),
        (100, 37, False),
        (13, 13, True),
    ],
)
def test_dft_conv1d_equals_direct_convolution(length: int, kernel_len: int, causal: bool) -> None:
    x = torch.randn(2, 4, length, dtype=torch.float64)
    k = torch.randn(4, kernel_len, dtype=torch.float64)
    got = _conv1d(x, k, causal)
    assert got.shape == x.shape
    assert (got - fftconv1d_ref(x, k, causal=causal)).abs().max().item() < 1e-12


def test_float32_matches_the_fft_path() -> None:
    # The exported form must agree with what the model computes in eval (the FFT path) to float32 rounding; a
    # wrong crop or a missing conjugate gives O(1) errors.
    x = torch.randn(2, 8, 14, 14)
    k = torch.randn(8, 27, 27) / 27
    got = _conv2d(x, k, torch.float32)
    assert got.dtype == torch.float32
    assert (got - fftconv2d(x, k)).abs().max().item() < 1e-5


def test_reduced_precision_input_is_computed_in_float32() -> None:
    # bf16 in, bf16 out, but no bf16 DFT: the result equals the float32 computation on the same bf16 input,
    # rounded once (differences of a whole bf16 step would show a bf16 transform).
    x = torch.randn(2, 4, 7, 7).to(torch.bfloat16)
    k = torch.randn(4, 13, 13) / 13
    got = _conv2d(x, k, torch.float32)
    assert got.dtype == torch.bfloat16
    ref = fftconv2d_ref(x.float(), k).to(torch.bfloat16)
    step = 2**-7 * ref.float().abs().max().item()  # one bf16 step at the largest output
    assert (got.float() - ref.float()).abs().max().item() <= step


def test_interleaved_matrices_act_on_alternating_parts() -> None:
    # the interleaved H matrices applied to rows (t, Re/Im) alternating give the stacked block matrices' result
    axis = DFTAxis.make(plan_conv2d(5, 5, 7, 7).axes[0])
    re, im = torch.randn(5, 3, dtype=torch.float64), torch.randn(5, 3, dtype=torch.float64)
    stacked = axis.full_fwd @ torch.cat([re, im])
    assert torch.allclose(axis.interleaved_fwd() @ torch.stack([re, im], 1).reshape(10, 3), stacked)
    z = torch.randn(2 * axis.n, 3, dtype=torch.float64)
    interleaved = (axis.full_inv @ z).reshape(2, 5, 3).transpose(0, 1).reshape(10, 3)  # rows (t, Re/Im)
    assert torch.allclose(axis.interleaved_inv() @ z, interleaved)


def test_axis_uses_the_smallest_wrap_free_length() -> None:
    plan = plan_conv2d(14, 14, 27, 27).axes[0]
    axis = DFTAxis.make(plan)
    assert axis.n == plan.min_len == 27 and axis.bins == 14
    assert axis.real_fwd.shape == (14, 28) and axis.full_fwd.shape == (54, 28)
    assert axis.full_inv.shape == (28, 54) and axis.real_inv.shape == (28, 14)
    assert axis.interleaved_fwd().shape == (54, 28) and axis.interleaved_inv().shape == (28, 54)
    causal = DFTAxis.make(plan_conv1d(10, 10, causal=True).axes[0])
    assert causal.n == 19 and causal.taps == (0, 10)


def test_sequence_dft_is_factored() -> None:
    # hb stage 1 at 224 px: 3136 tokens, kernel 6271. A dense DFT matrix would have 3136 x 6272 entries; the
    # four-step form uses two small factors of a fast length.
    m = sequence_dft(3136, 6271, causal=False, dtype=torch.float32)
    assert m.n == 6272 and m.n >= m.plan.min_len and 1 < m.n1 < m.n2 < 6272
    assert m.fa.shape == (2 * m.n2, -(-3136 // m.n1)) and m.f1.shape == (m.n1, 2 * m.n1)
    assert sum(t.numel() for t in (m.fa, m.tw, m.f1, m.g1, m.ga)) < 100_000


# ---- the cached eval path: DFTSpectrum2d and its dispatch ----------------------------------------------------------


@pytest.mark.parametrize(("h", "w", "kh", "kw"), [*SHAPES_2D, (14, 14, 27, 27), (9, 12, 33, 5)])
def test_dft_kernel2d_equals_direct_convolution(h: int, w: int, kh: int, kw: int) -> None:
    # as the mixer's cache makes it: the kernel cut to the taps that reach the map, under the cropped plan
    full = plan_conv2d(h, w, kh, kw)
    x = torch.randn(2, 3, h, w, dtype=torch.float64)
    k = torch.randn(3, kh, kw, dtype=torch.float64)
    spectrum = DFTSpectrum2d.make(k[(slice(None), *full.taps)], full.cropped())
    assert spectrum.kr.dtype == torch.float64
    y = dft_conv2d_cached(x.permute(0, 2, 3, 1), spectrum, full.cropped()).permute(0, 3, 1, 2)
    ref = fftconv2d_ref(x, k)
    assert (y - ref).abs().max().item() <= 1e-12 * max(1.0, ref.abs().max().item())
    # float32 (the models' dtype): within float32 rounding of the float64 result, relative to its scale
    p32 = DFTSpectrum2d.make(k.float()[(slice(None), *full.taps)], full.cropped())
    y32 = dft_conv2d_cached(x.float().permute(0, 2, 3, 1), p32, full.cropped()).permute(0, 3, 1, 2)
    assert y32.dtype == torch.float32 and p32.kr.dtype == torch.float32
    assert (y32.double() - ref).abs().max().item() <= 1e-5 * ref.abs().max().item()


def test_dft_preferred_for_small_cpu_maps_only(monkeypatch) -> None:
    import hyenapixel.ops.dft as dft

    x = torch.randn(1, 14, 14, 4)
    assert dft.dft_preferred(plan_conv2d(14, 14, 27, 27).cropped(), x)  # DFT lengths 27 x 27
    assert dft.dft_preferred(plan_conv2d(7, 7, 13, 13), x)
    big = plan_conv2d(28, 28, 55, 55)
    assert max(a.min_len for a in big.axes) > dft.DFT_MAX_LEN and not dft.dft_preferred(big, x)
    assert not dft.dft_preferred(plan_conv1d(10, 19, False), x)  # 1D plans are not served
    monkeypatch.setattr(dft, "tracing", lambda: True)  # traced graphs keep the FFT operators
    assert not dft.dft_preferred(plan_conv2d(7, 7, 13, 13), x)


def test_dft_conv2d_cached_stays_float32_under_autocast() -> None:
    # as the FFT path: a bfloat16 map under CPU autocast is convolved in float32 and returned in bfloat16
    full = plan_conv2d(7, 7, 13, 13)
    k = torch.randn(4, 13, 13)
    spectrum = DFTSpectrum2d.make(k[(slice(None), *full.taps)], full.cropped())
    x = torch.randn(2, 7, 7, 4).bfloat16()
    want = dft_conv2d_cached(x.float(), spectrum, full.cropped())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = dft_conv2d_cached(x, spectrum, full.cropped())
    assert got.dtype == torch.bfloat16
    torch.testing.assert_close(got.float(), want.bfloat16().float(), rtol=0, atol=0)


def test_matrices_made_in_inference_mode_serve_an_input_gradient_later() -> None:
    # the shared DFT matrices are made once per plan; the first call may run under torch.inference_mode (validate),
    # a later one may need the gradient with respect to the input (the ERF of a model in eval mode)
    from hyenapixel.ops.dft import plan_matrices2d

    plan_matrices2d.cache_clear()
    full = plan_conv2d(5, 6, 9, 11)
    k = torch.randn(3, 9, 11, dtype=torch.float64)
    spectrum = DFTSpectrum2d.make(k[(slice(None), *full.taps)], full.cropped())
    with torch.inference_mode():
        dft_conv2d_cached(torch.randn(1, 5, 6, 3, dtype=torch.float64), spectrum, full.cropped())
    x = torch.randn(2, 3, 5, 6, dtype=torch.float64, requires_grad=True)
    up = torch.randn(2, 3, 5, 6, dtype=torch.float64)
    y = dft_conv2d_cached(x.permute(0, 2, 3, 1), spectrum, full.cropped()).permute(0, 3, 1, 2)
    (got,) = torch.autograd.grad((y * up).sum(), x)
    (want,) = torch.autograd.grad((fftconv2d_ref(x, k) * up).sum(), x)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)


# ---- the training path: dft_conv2d, differentiable in map and kernel ------------------------------------------------


@pytest.mark.parametrize(("h", "w", "kh", "kw"), [*SHAPES_2D, (14, 14, 27, 27), (9, 12, 33, 5)])
def test_dft_conv2d_values_and_both_gradients_equal_direct_convolution(h: int, w: int, kh: int, kw: int) -> None:
    # as the mixer calls it in training: the kernel cut to the taps that reach the map, under the cropped plan
    full = plan_conv2d(h, w, kh, kw)
    g = torch.Generator().manual_seed(h * 100 + kh)
    x = torch.randn(2, 3, h, w, dtype=torch.float64, generator=g, requires_grad=True)
    k = torch.randn(3, kh, kw, dtype=torch.float64, generator=g, requires_grad=True)
    up = torch.randn(2, 3, h, w, dtype=torch.float64, generator=g)
    y = dft_conv2d(x.permute(0, 2, 3, 1), k[(slice(None), *full.taps)], full.cropped()).permute(0, 3, 1, 2)
    ref = fftconv2d_ref(x, k)
    scale = max(1.0, ref.abs().max().item())
    assert (y - ref).abs().max().item() <= 1e-12 * scale
    got = torch.autograd.grad((y * up).sum(), (x, k))
    want = torch.autograd.grad((ref * up).sum(), (x, k))
    for a, e in zip(got, want):
        assert (a - e).abs().max().item() <= 1e-11 * max(1.0, e.abs().max().item())


@pytest.mark.parametrize("batch", [0, 1, 3])
@pytest.mark.parametrize("wrt", ["both", "map", "kernel"])
def test_dft_conv2d_function_equals_the_products_it_replaces(batch: int, wrt: str) -> None:
    # DFTConv2d's hand-written backward against autograd through dft_conv2d_channels_last, on the same arguments
    full = plan_conv2d(6, 9, 11, 17)
    plan = full.cropped()
    g = torch.Generator().manual_seed(batch + len(wrt))
    x = torch.randn(batch, 6, 9, 4, dtype=torch.float64, generator=g, requires_grad=wrt != "kernel")
    k = torch.randn(4, 11, 17, dtype=torch.float64, generator=g)[(slice(None), *full.taps)]
    spec = torch.fft.rfft2(k, s=plan.fft_shape)
    kr, ki = (t.requires_grad_(wrt != "map") for t in channels_last_spectrum(spec.real, spec.imag))
    mats = [plan_matrices2d(*plan.axes, torch.float64, x.device)[m] for m in ("fw", "fh", "gh", "aw")]
    up = torch.randn(batch, 6, 9, 4, dtype=torch.float64, generator=g)
    inputs = [t for t in (x, kr, ki) if t.requires_grad]
    results = []
    for fn in (DFTConv2d.apply, dft_conv2d_channels_last):
        y = fn(x, kr, ki, *mats)
        results.append((y, *torch.autograd.grad((y * up).sum(), inputs)))
    for a, e in zip(*results):
        assert a.shape == e.shape
        torch.testing.assert_close(a, e, rtol=1e-12, atol=1e-12)


def test_dft_conv2d_numerical_first_and_second_derivatives() -> None:
    full = plan_conv2d(4, 5, 7, 9)
    x = torch.randn(1, 4, 5, 2, dtype=torch.float64, requires_grad=True)
    k = torch.randn(2, 7, 9, dtype=torch.float64)[(slice(None), *full.taps)].detach().requires_grad_()
    fn = lambda a, b: dft_conv2d(a, b, full.cropped())  # noqa: E731
    assert torch.autograd.gradcheck(fn, (x, k))
    assert torch.autograd.gradgradcheck(fn, (x, k))


def test_dft_conv2d_in_float32_under_autocast_and_refuses_mismatched_channels() -> None:
    full = plan_conv2d(7, 7, 13, 13)
    k = torch.randn(4, 13, 13)
    x = torch.randn(2, 7, 7, 4).bfloat16()
    want = dft_conv2d(x.float(), k, full)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = dft_conv2d(x, k, full)
    assert got.dtype == torch.bfloat16  # computed in float32, returned in the map's dtype (as the FFT path)
    torch.testing.assert_close(got.float(), want.bfloat16().float(), rtol=0, atol=0)
    with pytest.raises(ValueError, match=r"\(C, kh, kw\) kernel"):
        dft_conv2d(torch.randn(1, 7, 7, 5), k, full)
