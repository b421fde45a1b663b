"""The dense-size training path of the FFT convolution: kernels larger than the map cut to the taps that can reach
it (:attr:`ConvPlan.taps`, :meth:`ConvPlan.cropped`), and the one-call multi-dimensional transform used for large
planes, against the direct float64 convolution ``fftconv2d_ref``; also with the blocks on two threads."""

from __future__ import annotations

import pytest
import torch

from hyenapixel.ops import (
    ConvPlan,
    conv_fresh_kernel,
    conv_saving_spectrum,
    conv_with_plan,
    fftconv,
    fftconv2d,
    fftconv2d_ref,
    kernel_spectrum,
    plan_conv2d,
)
from hyenapixel.ops.fftconv import MULTIDIM_FFT_ABOVE, apply_spectrum

# (nh, nw, kh, kw): covering kernels 2F - 1 as at 800 x 1333 (both axes cut on a non-square map), even and odd
# kernels larger than the map on one axis only, and a plane above / below the multi-dimensional FFT threshold.
SHAPES = [(10, 17, 35, 35), (9, 6, 19, 4), (6, 9, 8, 30), (40, 70, 139, 139), (5, 7, 3, 3)]


def _close(a: torch.Tensor, b: torch.Tensor, tol: float = 1e-12) -> None:
    """Float64 agreement relative to the result's scale (large kernels sum thousands of taps)."""
    assert a.shape == b.shape
    assert (a - b).abs().max().item() <= tol * max(1.0, b.abs().max().item())


def _problem(
    seed: int, b: int, c: int, nh: int, nw: int, kh: int, kw: int, x_grad: bool = True, k_grad: bool = True
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, ConvPlan]:
    """A float64 input (B, C, nh, nw), kernel (C, kh, kw), upstream gradient like the output, and their plan."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, c, nh, nw, generator=g, dtype=torch.float64, requires_grad=x_grad)
    k = torch.randn(c, kh, kw, generator=g, dtype=torch.float64, requires_grad=k_grad)
    up = torch.randn(b, c, nh, nw, generator=g, dtype=torch.float64)
    return x, k, up, plan_conv2d(nh, nw, kh, kw)


@pytest.mark.parametrize(("nh", "nw", "kh", "kw"), SHAPES)
def test_taps_are_exactly_the_reachable_ones(nh: int, nw: int, kh: int, kw: int) -> None:
    # A tap at offset d from the kernel center reaches some output iff |d| <= side - 1 (from the definition).
    plan = plan_conv2d(nh, nw, kh, kw)
    for taps, n, k in zip(plan.taps, (nh, nw), (kh, kw)):
        reachable = [a for a in range(k) if abs(a - k // 2) <= n - 1]
        assert list(range(k))[taps] == reachable


@pytest.mark.parametrize(("nh", "nw", "kh", "kw"), SHAPES)
def test_cropped_kernel_gives_the_full_kernels_convolution(nh: int, nw: int, kh: int, kw: int) -> None:
    x, k, up, plan = _problem(0, 2, 3, nh, nw, kh, kw)

    def cut(x: torch.Tensor, k: torch.Tensor, plan) -> torch.Tensor:  # noqa: ANN001 - the taps that reach the map
        return conv_with_plan(x, k[(slice(None), *plan.taps)], plan.cropped())

    _check_against_direct(cut, x, k, up, plan)  # values and gradients (the kernel's for all its taps)
    assert plan.cropped().fft_shape == plan.fft_shape
    # the eval path: spectrum of the cut kernel under the cropped plan
    k_f = kernel_spectrum(k.detach()[(slice(None), *plan.taps)], plan.cropped())
    _close(apply_spectrum(x.detach(), k_f, plan.cropped()), fftconv2d_ref(x.detach(), k.detach()))


def test_large_planes_use_the_multidimensional_transform_and_stay_exact() -> None:
    # 40 x 70 with a 139 kernel pads to 80 x 140 (above the threshold); float32 against float64 direct.
    plan = plan_conv2d(40, 70, 139, 139)
    assert plan.fft_shape[0] * plan.fft_shape[1] >= MULTIDIM_FFT_ABOVE
    g = torch.Generator().manual_seed(1)
    x = torch.randn(1, 4, 40, 70, generator=g)
    k = torch.randn(4, 139, 139, generator=g) / 139
    ref = fftconv2d_ref(x, k)
    err = (fftconv2d(x, k).double() - ref).abs().max() / ref.abs().max()
    assert err < 1e-5


def _check_against_direct(conv, x: torch.Tensor, k: torch.Tensor, up: torch.Tensor, plan) -> None:  # noqa: ANN001
    """``conv(x, k, plan)`` and its gradients (for the upstream gradient ``up``) equal the direct convolution's."""
    y = conv(x, k, plan)
    ref = fftconv2d_ref(x, k)
    _close(y, ref)
    wrt = [t for t in (x, k) if t.requires_grad]
    for a, b in zip(torch.autograd.grad((y * up).sum(), wrt), torch.autograd.grad((ref * up).sum(), wrt)):
        _close(a, b)


@pytest.mark.parametrize(("x_grad", "k_grad"), [(True, True), (True, False), (False, True)])
@pytest.mark.parametrize("blocked", [False, True])
def test_conv_saving_spectrum_equals_the_direct_convolution(monkeypatch, x_grad: bool, k_grad: bool, blocked) -> None:
    if blocked:  # (sample, channel) blocks: the saved spectra are per channel slice
        monkeypatch.setattr(fftconv, "SPECTRUM_CHUNK_ABOVE", 0)
        monkeypatch.setattr(fftconv, "SPECTRUM_CHUNK_BYTES", 1)
    x, k, up, plan = _problem(2, 2, 3, 7, 11, 15, 21, x_grad, k_grad)
    _check_against_direct(conv_saving_spectrum, x, k, up, plan)


@pytest.mark.parametrize(("nh", "nw", "kh", "kw", "covering"), [(7, 11, 15, 21, True), (20, 24, 5, 5, False)])
def test_conv_fresh_kernel_equals_the_direct_convolution(nh: int, nw: int, kh: int, kw: int, covering: bool) -> None:
    # a covering kernel (its spectrum about its size) keeps the spectrum in the graph, not twice differentiable; a
    # kernel much smaller than its spectrum keeps the kernel, twice differentiable; the same values either way
    x, k, up, plan = _problem(4, 2, 3, nh, nw, kh, kw)

    def fresh(x: torch.Tensor, k: torch.Tensor, plan) -> torch.Tensor:  # noqa: ANN001 - as the mixer calls it
        return conv_fresh_kernel(x, k[(slice(None), *plan.taps)], plan.cropped())

    _check_against_direct(fresh, x, k, up, plan)
    (g,) = torch.autograd.grad((fresh(x, k, plan) * up).sum(), k, create_graph=True)
    if covering:
        with pytest.raises(RuntimeError):
            torch.autograd.grad(g.square().sum(), x)
    else:
        (gg,) = torch.autograd.grad(g.square().sum(), x)
        (ref_g,) = torch.autograd.grad((fftconv2d_ref(x, k) * up).sum(), k, create_graph=True)
        _close(gg, torch.autograd.grad(ref_g.square().sum(), x)[0])


@pytest.mark.parametrize(("x_grad", "k_grad"), [(True, True), (True, False), (False, True)])
@pytest.mark.parametrize("conv", [conv_with_plan, conv_saving_spectrum])
def test_blocks_on_several_threads_equal_the_direct_convolution(monkeypatch, block_threads, conv, x_grad, k_grad):
    # one block per (sample, channel): 2 x 5 blocks, the kernel gradient of each channel summed over both samples
    monkeypatch.setattr(fftconv, "SPECTRUM_CHUNK_ABOVE", 0)
    monkeypatch.setattr(fftconv, "SPECTRUM_CHUNK_BYTES", 1)
    x, k, up, plan = _problem(3, 2, 5, 9, 13, 17, 25, x_grad, k_grad)
    _check_against_direct(conv, x, k, up, plan)
    k_f = kernel_spectrum(k.detach()[(slice(None), *plan.taps)], plan.cropped())
    with torch.inference_mode():  # the eval path of the mixers' spectrum cache
        _close(apply_spectrum(x.detach(), k_f, plan.cropped()), fftconv2d_ref(x.detach(), k.detach()))


@pytest.mark.parametrize(("x_grad", "k_grad"), [(True, True), (False, True)])
def test_only_planes_from_the_threshold_on_spread_over_threads(monkeypatch, two_threads_pool_tasks, x_grad, k_grad):
    # with two threads and forced blocks: a plane below THREADS_FROM_PLANE runs its channel slices as one loop on
    # torch's threads, one at or above it on Python threads; both equal the direct convolution
    monkeypatch.setattr(fftconv, "SPECTRUM_CHUNK_ABOVE", 0)
    monkeypatch.setattr(fftconv, "SPECTRUM_CHUNK_BYTES", 1)
    small, large = (6, 9, 11, 17), (10, 17, 35, 35)
    threshold = plan_conv2d(*large).fft_shape[0] * plan_conv2d(*large).fft_shape[1]
    assert plan_conv2d(*small).fft_shape[0] * plan_conv2d(*small).fft_shape[1] < threshold
    monkeypatch.setattr(fftconv, "THREADS_FROM_PLANE", threshold)
    for shape, spreads in ((small, False), (large, True)):
        two_threads_pool_tasks.clear()
        x, k, up, plan = _problem(7, 2, 4, *shape, x_grad, k_grad)
        _check_against_direct(conv_with_plan, x, k, up, plan)
        k_f = kernel_spectrum(k.detach(), plan)
        with torch.inference_mode():
            _close(apply_spectrum(x.detach(), k_f, plan), fftconv2d_ref(x.detach(), k.detach()))
        assert bool(two_threads_pool_tasks) == spreads, shape


def test_blocks_stay_twice_differentiable_with_several_threads(monkeypatch, block_threads) -> None:
    # a backward that records its operations (create_graph) runs its blocks as one loop: the graph stays valid
    monkeypatch.setattr(fftconv, "SPECTRUM_CHUNK_ABOVE", 0)
    monkeypatch.setattr(fftconv, "SPECTRUM_CHUNK_BYTES", 1)
    x, k, up, _ = _problem(4, 1, 3, 6, 7, 11, 13)
    grads = []
    for conv in (fftconv2d, fftconv2d_ref):
        gx, gk = torch.autograd.grad((conv(x, k) * up).sum(), (x, k), create_graph=True)
        grads.append(torch.autograd.grad(gx.square().sum() + (gk * gk.detach()).sum(), (x, k)))
    for a, b in zip(*grads):
        _close(a, b)


@pytest.mark.parametrize(
    ("channels", "step", "workers", "slices"),
    [(128, 121, 2, 2), (64, 30, 2, 4), (5, 4, 2, 2), (1, 1, 2, 1), (7, 6, 1, 2)],
)
def test_channel_slices_are_equal_shares_for_the_workers(monkeypatch, channels, step, workers, slices) -> None:
    # blocks of at most ``step`` channels' spectra: the slices are near-equal rather than ``step`` channels and a
    # remainder (128 channels in at most 121: 64 and 64, not 121 and 7), and a multiple of the workers (64 in at
    # most 30 on two threads: four of 16, not three), at most one per channel
    monkeypatch.setattr(fftconv, "SPECTRUM_CHUNK_ABOVE", 0)
    plan = plan_conv2d(6, 5, 9, 7)
    monkeypatch.setattr(fftconv, "SPECTRUM_CHUNK_BYTES", fftconv._spectrum_bytes(plan, torch.float64) * step)
    blocks = fftconv.Blocks.make(3, channels, plan, torch.float64, torch.device("cpu"), workers)
    sizes = [cs.stop - cs.start for cs in blocks.channels]
    assert len(sizes) == slices and max(sizes) - min(sizes) <= 1
    assert [cs.start for cs in blocks.channels] == [0, *(cs.stop for cs in blocks.channels[:-1])]
    assert blocks.channels[-1].stop == channels and len(blocks.batch) == 3


def test_one_channel_slice_stays_one_with_several_threads() -> None:
    # below the blocking threshold the batch stays whole and so do the channels (torch's own threads run it)
    plan = plan_conv2d(6, 5, 9, 7)
    for workers in (1, 2):
        blocks = fftconv.Blocks.make(4, 6, plan, torch.float64, torch.device("cpu"), workers)
        assert (len(blocks.batch), len(blocks.channels)) == (1, 1)


def test_saved_spectra_survive_a_thread_count_change_before_backward(monkeypatch) -> None:
    # the backward of conv_saving_spectrum uses the forward's blocks, whatever the thread count is by then (5
    # channels in at most 2: three slices with one thread, four with two)
    x, k, up, plan = _problem(6, 2, 5, 9, 13, 17, 25)
    monkeypatch.setattr(fftconv, "SPECTRUM_CHUNK_ABOVE", 0)
    monkeypatch.setattr(fftconv, "SPECTRUM_CHUNK_BYTES", 2 * fftconv._spectrum_bytes(plan, torch.float64))
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        y = conv_saving_spectrum(x, k[(slice(None), *plan.taps)], plan.cropped())
        torch.set_num_threads(1)
        got = torch.autograd.grad((y * up).sum(), (x, k))
    finally:
        torch.set_num_threads(before)
    ref = fftconv2d_ref(x, k)
    _close(y, ref)
    for a, b in zip(got, torch.autograd.grad((ref * up).sum(), (x, k))):
        _close(a, b)
