"""FFT long convolutions: the operator behind Hyena, bidirectional Hyena and HyenaPixel (paper Section 3).

The paper computes its global convolutions with zero-padded circular FFT convolutions, which equal true linear
convolution when the padding is large enough. These functions compute exactly that linear convolution, with as
little padding as is valid and an FFT length whose prime factors the FFT libraries handle fast.

Conventions (one kernel per channel, "same" output):

* ``fftconv2d(x, k)``: ``y[b,c,i,j] = sum_{a,b'} k[c,a,b'] * x[b,c, i + kh//2 - a, j + kw//2 - b']``
* ``fftconv1d(x, k, causal=True)``: ``y[t] = sum_{j<=t} k[j] * x[t - j]`` (original Hyena)
* ``fftconv1d(x, k, causal=False)``: ``y[t] = sum_j k[j] * x[t + K//2 - j]`` (bidirectional Hyena)

with ``x`` zero outside its support. Kernels may be larger than the input: taps that can never reach an output are
cropped away before the transform. Computation happens in ``promote_types(x.dtype, float32)`` (half-precision
FFTs are unsafe: the CPU has none and cuFFT supports them only at power-of-two sizes) and the result has the dtype
of ``x``.

For callers that reuse one kernel across many inputs (eval-mode caching in the mixers), the work is split into
:func:`plan_conv2d` / :func:`plan_conv1d` (pure shape arithmetic), :func:`kernel_spectrum` (transform of the
kernel) and :func:`apply_spectrum` (transform of the input, product, inverse transform, crop).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch.autograd.function import once_differentiable

from hyenapixel.ops.parallel import parallel_map, split_evenly
from hyenapixel.ops.tracing import tracing

__all__ = [
    "AxisPlan",
    "ConvPlan",
    "FFTConv",
    "apply_spectrum",
    "conv_fresh_kernel",
    "conv_saving_spectrum",
    "conv_with_plan",
    "fftconv1d",
    "fftconv2d",
    "kernel_spectrum",
    "next_fast_len",
    "plan_conv1d",
    "plan_conv2d",
]


# CPU only: when a batch's complex spectra exceed SPECTRUM_CHUNK_ABOVE bytes, the FFT path runs in blocks of samples
# and channels (the convolution is depthwise, so both are independent) whose spectra take at most about
# SPECTRUM_CHUNK_BYTES, so that transform, product and inverse transform of a block run in cache (the tuning is in
# docs/benchmarks.md).
SPECTRUM_CHUNK_BYTES = 3 << 19
SPECTRUM_CHUNK_ABOVE = 12 << 20
# Padded elements per transformed plane from which the forward transform is one multi-dimensional FFT.
MULTIDIM_FFT_ABOVE = 64 * 64
# Padded elements per transformed plane from which the channel slices run on Python threads
# (:func:`~hyenapixel.ops.parallel.parallel_map`); smaller planes go as one loop on torch's threads. Between the
# largest plane of a 224-px model (112 x 112) and the stage-3 planes of dense inputs (docs/benchmarks.md).
THREADS_FROM_PLANE = 14 << 10


@functools.lru_cache(maxsize=4096)
def next_fast_len(n: int, even: bool = False) -> int:
    """Smallest integer ``>= n`` whose prime factors are all in {2, 3, 5, 7} (and which is even if asked).

    pocketfft (CPU) and cuFFT both have specialised radix kernels for these factors.
    """
    if n < 1:
        raise ValueError(f"FFT length must be positive, got {n}")
    m = max(n, 2 if even else 1)
    while True:
        if not (even and m % 2):
            r = m
            for p in (2, 3, 5, 7):
                while r % p == 0:
                    r //= p
            if r == 1:
                return m
        m += 1


@dataclass(frozen=True)
class AxisPlan:
    """How one axis of a centered linear convolution maps onto a circular FFT convolution.

    The output is ``y[i] = sum_a k[a] x[i + center - a]`` for ``i in [0, length)``, computed with only the kernel taps
    ``k[start:stop]`` (the others never meet the input) and a circular convolution of size ``fft_len``.
    """

    length: int
    start: int
    stop: int
    center: int
    fft_len: int

    @property
    def min_len(self) -> int:
        """Smallest circular length without wrap-around onto the input's support: ``N >= L + c`` and
        ``N >= L + taps - 1 - c``. ``fft_len`` is the next fast length from here."""
        return self.length + max(self.center, self.stop - self.start - 1 - self.center, 0)

    @staticmethod
    def make(length: int, kernel_len: int, center: int, even: bool = False) -> AxisPlan:
        # Taps a contribute to some output i in [0, L) from some input j in [0, L) iff |a - center| <= L - 1.
        start = max(0, center - (length - 1))
        stop = min(kernel_len, center + length)
        unsized = AxisPlan(length, start, stop, center - start, 0)
        # a traced graph gets the plain function (torch.compile would warn that it skips the cache wrapper)
        fast_len = next_fast_len.__wrapped__ if tracing() else next_fast_len
        return dataclasses.replace(unsized, fft_len=fast_len(unsized.min_len, even=even))


@dataclass(frozen=True)
class ConvPlan:
    """Per-axis plans for a 1D (one axis) or 2D (two axes) centered FFT convolution."""

    axes: tuple[AxisPlan, ...]

    @property
    def fft_shape(self) -> tuple[int, ...]:
        return tuple(a.fft_len for a in self.axes)

    @property
    def taps(self) -> tuple[slice, ...]:
        """Per axis, the kernel taps that can reach an output; a kernel generator needs to compute only these."""
        return tuple(slice(a.start, a.stop) for a in self.axes)

    def cropped(self) -> ConvPlan:
        """The same convolution for a kernel that is already cut down to :attr:`taps` (same FFT lengths)."""
        return ConvPlan(tuple(dataclasses.replace(a, start=0, stop=a.stop - a.start) for a in self.axes))


def plan_conv2d(height: int, width: int, kh: int, kw: int) -> ConvPlan:
    """Plan for :func:`fftconv2d` of an ``height x width`` input with a ``kh x kw`` kernel centered at ``k//2``.

    Sizes are taken as Python ints: under ``torch.jit`` tracing (fvcore's MAC counter, ONNX export) ``x.shape[i]`` is a
    0-d tensor, which would otherwise reach the cached :func:`next_fast_len`.
    """
    height, width, kh, kw = int(height), int(width), int(kh), int(kw)
    return ConvPlan((AxisPlan.make(height, kh, kh // 2), AxisPlan.make(width, kw, kw // 2, even=True)))


def plan_conv1d(length: int, kernel_len: int, causal: bool) -> ConvPlan:
    """Plan for :func:`fftconv1d`; the causal kernel starts at lag 0, the bidirectional one is centered (sizes are
    taken as Python ints, see :func:`plan_conv2d`)."""
    length, kernel_len = int(length), int(kernel_len)
    center = 0 if causal else kernel_len // 2
    return ConvPlan((AxisPlan.make(length, kernel_len, center, even=True),))


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    if not dtype.is_floating_point:
        raise TypeError(f"fftconv expects real floating-point tensors, got {dtype}; convert with .float()")
    return torch.promote_types(dtype, torch.float32)


def _forward_transform(x: torch.Tensor, plan: ConvPlan) -> torch.Tensor:
    """Zero-padded real FFT over the planned trailing axes.

    Small planes go one axis at a time, last axis first: the other axes are still unpadded then, so that pass touches
    only the input's rows. From ``MULTIDIM_FFT_ABOVE`` padded elements per plane on, one multi-dimensional
    transform is faster: it reads the strided axes in place, where the per-axis pass along a non-last axis pads and
    transposes a copy (timings in docs/benchmarks.md).
    """
    nd = len(plan.axes)
    if math.prod(plan.fft_shape) >= MULTIDIM_FFT_ABOVE:
        return torch.fft.rfftn(x, s=plan.fft_shape, dim=tuple(range(-nd, 0)))
    y = torch.fft.rfft(x, n=plan.axes[-1].fft_len, dim=-1)
    for i in range(nd - 2, -1, -1):
        y = torch.fft.fft(y, n=plan.axes[i].fft_len, dim=i - nd)
    return y


def _inverse_transform(
    y_f: torch.Tensor, plan: ConvPlan, starts: tuple[int, ...], lengths: tuple[int, ...]
) -> torch.Tensor:
    """Inverse of :func:`_forward_transform` followed by the crop ``[start, start + length)`` per axis, cropping
    each axis right after its transform so that the final real inverse FFT runs on the kept rows only."""
    nd = len(plan.axes)
    y = y_f
    for i in range(nd - 1):
        y = torch.fft.ifft(y, dim=i - nd).narrow(i - nd, starts[i], lengths[i])
    y = torch.fft.irfft(y, n=plan.axes[-1].fft_len, dim=-1)
    return y.narrow(-1, starts[-1], lengths[-1])


def _spectrum_bytes(plan: ConvPlan, dtype: torch.dtype) -> int:
    """Bytes of one channel's complex spectrum under ``plan`` for real inputs of ``dtype``."""
    *rows, last = plan.fft_shape
    return math.prod(rows) * (last // 2 + 1) * 2 * torch.empty((), dtype=dtype).element_size()


@dataclass(frozen=True)
class Blocks:
    """How the (batch, channel) pairs of a convolution are split into blocks: every batch slice for each channel
    slice in turn (channel-major), so a block's kernel spectrum is made once and the kernel gradient of a channel
    slice is complete, and transformed back, as soon as its last batch slice is done."""

    batch: tuple[slice, ...]
    channels: tuple[slice, ...]

    @staticmethod
    def make(
        batch: int, channels: int, plan: ConvPlan, dtype: torch.dtype, device: torch.device, workers: int = 1
    ) -> Blocks:
        """The whole problem on GPUs; on CPU the whole batch when its spectra are small, else blocks of at most
        about ``SPECTRUM_CHUNK_BYTES`` of spectrum: whole samples while one fits, else single samples split by
        channel. The channel slices are of near-equal size, and where there are several, with ``workers`` CPU
        threads their number is a multiple of ``workers`` (at most one slice per channel), so that every thread gets
        an equal share of the channel slices where :func:`_convolve_blocks` spreads them over the threads (on smaller
        planes, one loop on torch's threads was fastest with the same slices). One channel slice stays one: its
        operations use torch's own threads (faster there than Python threads on halves of the channels,
        docs/benchmarks.md)."""
        per_channel = _spectrum_bytes(plan, dtype)
        if device.type != "cpu":
            return Blocks((slice(0, batch),), (slice(0, channels),))
        slices = 1
        if per_channel * channels * batch <= SPECTRUM_CHUNK_ABOVE:
            batches = (slice(0, batch),)
        elif per_channel * channels <= SPECTRUM_CHUNK_BYTES:
            step = SPECTRUM_CHUNK_BYTES // (per_channel * channels)
            batches = tuple(slice(i, i + step) for i in range(0, batch, step))
        else:
            batches = tuple(slice(i, i + 1) for i in range(batch))
            slices = -(-channels // max(1, SPECTRUM_CHUNK_BYTES // per_channel))
        if workers > 1 and slices > 1:  # a multiple of the workers: each takes the same number of equal slices
            slices = min(channels, -(-slices // workers) * workers)
        return Blocks(batches, tuple(slice(r.start, r.stop) for r in split_evenly(channels, slices)))


def _threads_for_blocks(x: torch.Tensor) -> int:
    """The threads :class:`Blocks` plans for: the torch threads on CPU, 1 elsewhere and while a graph is traced
    (checked first: dynamo cannot trace the thread count)."""
    if tracing() or x.device.type != "cpu":
        return 1
    return torch.get_num_threads()


def _spread(plan: ConvPlan) -> bool:
    """Whether the channel slices of a convolution under ``plan`` are worth Python threads (``THREADS_FROM_PLANE``)."""
    return math.prod(plan.fft_shape) >= THREADS_FROM_PLANE


def _convolve_blocks(
    x: torch.Tensor,
    spectrum_of: Callable[[slice], torch.Tensor],
    plan: ConvPlan,
    starts: tuple[int, ...] | None = None,
    lengths: tuple[int, ...] | None = None,
    visit: Callable[[slice, slice, torch.Tensor], torch.Tensor] | None = None,
    finish: Callable[[torch.Tensor], torch.Tensor] | None = None,
    blocks: Blocks | None = None,
) -> tuple[torch.Tensor, list[torch.Tensor | None]]:
    """``crop(IFFT(FFT(x) * K))`` block by block (:class:`Blocks`) into one compact output tensor.

    ``spectrum_of(channels)`` gives the kernel spectrum ``K`` of a channel slice (once per slice). ``visit(batch,
    channels, x_f)``, if given, sees each block's input spectrum and returns a tensor; these are summed over the
    batch blocks of each channel slice and, through ``finish`` if given, returned per channel slice (the backward
    makes the kernel gradient from them). The channel slices are independent; on large planes they run on every CPU
    thread (:func:`~hyenapixel.ops.parallel.parallel_map`, ``THREADS_FROM_PLANE``); ``blocks`` defaults to
    :meth:`Blocks.make` for the current threads. Built from differentiable operations (slice assignment into a fresh
    tensor), so it can be used inside a backward that must itself be differentiable (it then runs as one plain loop).

    Shape:
        x: (B, C, *spatial), spectrum_of(slice) -> (len(slice), *spectrum) -> (B, C, *lengths), [per channel slice]
    """
    if blocks is None:
        blocks = Blocks.make(x.shape[0], x.shape[1], plan, _compute_dtype(x.dtype), x.device, _threads_for_blocks(x))
    whole = len(blocks.batch) == len(blocks.channels) == 1
    starts = starts if starts is not None else tuple(a.center for a in plan.axes)
    lengths = lengths if lengths is not None else tuple(a.length for a in plan.axes)
    out = None if whole else x.new_empty((*x.shape[:2], *lengths))

    def channel_slice(cs: slice) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        k_f = spectrum_of(cs)
        total = y = None
        for bs in blocks.batch:
            x_f = _forward_transform(x[bs, cs], plan)
            if visit is not None:
                part = visit(bs, cs, x_f)
                total = part if total is None else total + part
            y = _inverse_transform(x_f * k_f, plan, starts, lengths)
            if out is not None:
                out[bs, cs] = y
        if total is not None and finish is not None:
            total = finish(total)
        return (y if out is None else None), total

    results = parallel_map(channel_slice, blocks.channels, _spread(plan))
    if whole:  # the cropped view would otherwise keep the whole padded inverse-FFT buffer
        out = results[0][0].contiguous()
    return out, [total for _, total in results]


def _shift_phase(plan: ConvPlan, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """Spectrum factor ``exp(-2 pi i f c / N)`` per axis (outer product) that delays a signal by each axis' center.

    Shape:
        -> (*fft_shape[:-1], fft_shape[-1] // 2 + 1)
    """
    real = torch.float64
    phase = None
    for i, a in enumerate(plan.axes):
        bins = a.fft_len // 2 + 1 if i == len(plan.axes) - 1 else a.fft_len
        f = torch.arange(bins, dtype=real, device=device) * (a.center % a.fft_len)
        p = torch.polar(torch.ones_like(f), -2 * math.pi * f / a.fft_len)
        phase = p if phase is None else phase[..., None] * p
    return phase.to(dtype)


def _conv_backward(
    ctx,
    grad_y: torch.Tensor,
    x: torch.Tensor | None,
    spectrum_of: Callable[[slice], torch.Tensor],
    blocks: Blocks | None = None,
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Both gradients of a centered FFT convolution, block by block (``blocks``, default :meth:`Blocks.make`),
    from the kernel spectrum of each channel slice (``spectrum_of``) and the saved input ``x`` (needed only for the
    kernel gradient).

    With ``G`` the spectrum of the output gradient and ``P`` the delay by the kernel center:
    ``grad_x = crop_[0, L)(IFFT(G P conj(K)))`` and ``grad_k = crop_[0, taps)(IFFT(P sum_b G_b conj(X_b)))``; the
    kernel gradient of a channel slice is transformed back right after its last block.
    """
    plan = ctx.plan
    nd = len(plan.axes)
    grad_y = grad_y.to(ctx.compute_dtype).contiguous()
    phase = _shift_phase(plan, grad_y.device, torch.promote_types(grad_y.dtype, torch.complex64))
    need_x, need_k = ctx.needs_input_grad[0], ctx.needs_input_grad[1]

    def kernel_grad(bs: slice, cs: slice, g_f: torch.Tensor) -> torch.Tensor:
        """This block's share of the kernel-gradient spectrum, ``sum_b G_b conj(X_b)``."""
        prod = g_f * _forward_transform(x[bs, cs], plan).conj()
        return prod[0] if prod.shape[0] == 1 else prod.sum(0)  # one sample (dense tasks): no copy

    def finish_kernel_grad(part: torch.Tensor) -> torch.Tensor:
        return _inverse_transform(part * phase, plan, (0,) * nd, ctx.kernel_shape)

    grad_x = grad_k = None
    if need_x:  # each output-gradient spectrum serves both gradients
        starts, lengths = (0,) * nd, tuple(a.length for a in plan.axes)
        grad_x, grad_k_slices = _convolve_blocks(
            grad_y,
            lambda cs: spectrum_of(cs).conj() * phase,
            plan,
            starts,
            lengths,
            kernel_grad if need_k else None,
            finish_kernel_grad,
            blocks,
        )
    elif need_k:
        if blocks is None:
            blocks = Blocks.make(
                grad_y.shape[0], grad_y.shape[1], plan, grad_y.dtype, grad_y.device, _threads_for_blocks(grad_y)
            )

        def channel_slice(cs: slice) -> torch.Tensor:
            total = None  # summed block by block, as _convolve_blocks does, so one partial sum is alive at a time
            for bs in blocks.batch:
                part = kernel_grad(bs, cs, _forward_transform(grad_y[bs, cs], plan))
                total = part if total is None else total + part
            return finish_kernel_grad(total)

        grad_k_slices = parallel_map(channel_slice, blocks.channels, _spread(plan))
    if need_k:
        grad_k = grad_k_slices[0] if len(grad_k_slices) == 1 else torch.cat(grad_k_slices)
    return grad_x, grad_k


class FFTConv(torch.autograd.Function):
    """Centered linear FFT convolution with a hand-written backward (:func:`_conv_backward`) that saves the real
    input instead of its (about four times larger, complex) spectrum, and only when the kernel needs a gradient.
    The backward recomputes the kernel spectrum from the saved kernel with differentiable operations, so
    higher-order gradients work. :func:`conv_with_plan` applies it; it is public so that tools reading traced
    graphs can name it (a ``torch.jit`` trace shows it as one op, ``prim::PythonOp.FFTConv``).
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, k: torch.Tensor, plan: ConvPlan) -> torch.Tensor:
        y, _ = _convolve_blocks(x, lambda cs: _forward_transform(k[cs], plan), plan)
        ctx.plan, ctx.kernel_shape, ctx.compute_dtype = plan, tuple(k.shape[1:]), k.dtype
        ctx.save_for_backward(x if ctx.needs_input_grad[1] else None, k)
        return y

    @staticmethod
    def backward(ctx, grad_y: torch.Tensor):  # built from differentiable ops: double backward works too
        x, k = ctx.saved_tensors
        grad_x, grad_k = _conv_backward(ctx, grad_y, x, lambda cs: _forward_transform(k[cs], ctx.plan))
        return grad_x, grad_k, None


class _FFTConvSavedSpectrum(torch.autograd.Function):
    """:class:`FFTConv` that saves the kernel's spectrum (made in forward anyway, about the kernel's size) instead
    of the kernel, so the backward does not transform the kernel again. Not twice differentiable."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, k: torch.Tensor, plan: ConvPlan) -> torch.Tensor:
        spectra: dict[tuple[int, int], torch.Tensor] = {}  # per channel slice; filled from several threads

        def spectrum_of(cs: slice) -> torch.Tensor:
            spectra[cs.start, cs.stop] = _forward_transform(k[cs], plan)
            return spectra[cs.start, cs.stop]

        # the backward uses the same blocks, whatever the thread count is by then
        blocks = Blocks.make(x.shape[0], x.shape[1], plan, _compute_dtype(x.dtype), x.device, _threads_for_blocks(x))
        y, _ = _convolve_blocks(x, spectrum_of, plan, blocks=blocks)
        ctx.plan, ctx.kernel_shape, ctx.compute_dtype, ctx.blocks = plan, tuple(k.shape[1:]), k.dtype, blocks
        ctx.save_for_backward(x if ctx.needs_input_grad[1] else None, *(spectra[key] for key in sorted(spectra)))
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_y: torch.Tensor):
        x, *spectra = ctx.saved_tensors
        keys = sorted((cs.start, cs.stop) for cs in ctx.blocks.channels)
        by_slice = dict(zip(keys, spectra, strict=True))
        grad_x, grad_k = _conv_backward(ctx, grad_y, x, lambda cs: by_slice[cs.start, cs.stop], ctx.blocks)
        return grad_x, grad_k, None


def conv_with_plan(x: torch.Tensor, k: torch.Tensor, plan: ConvPlan) -> torch.Tensor:
    """Differentiable centered linear convolution of ``x`` with the full (uncropped) kernel ``k`` under ``plan``.

    Shape:
        x: (B, C, *spatial), k: (C, *kernel) -> (B, C, *spatial)
    """
    out_dtype = x.dtype
    ctype = _compute_dtype(x.dtype)
    if x.numel() == 0:  # no image or no channel: nothing to transform (MKL rejects empty FFT batches)
        return x.clone()
    y = FFTConv.apply(x.to(ctype), k.to(ctype)[(slice(None), *plan.taps)], plan)
    return y.to(out_dtype)


def conv_saving_spectrum(x: torch.Tensor, k: torch.Tensor, plan: ConvPlan) -> torch.Tensor:
    """:func:`conv_with_plan` with the same values and gradients, whose graph keeps the kernel's spectrum instead of
    the kernel (about the same memory), so backward skips one kernel transform; not twice differentiable. For
    kernels that are regenerated every step, like the HyenaPixel mixer's (see :func:`conv_fresh_kernel`).

    Shape:
        x: (B, C, *spatial), k: (C, *kernel) -> (B, C, *spatial)
    """
    out_dtype = x.dtype
    ctype = _compute_dtype(x.dtype)
    if x.numel() == 0:
        return x.clone()
    y = _FFTConvSavedSpectrum.apply(x.to(ctype), k.to(ctype)[(slice(None), *plan.taps)], plan)
    return y.to(out_dtype)


def conv_fresh_kernel(x: torch.Tensor, k: torch.Tensor, plan: ConvPlan) -> torch.Tensor:
    """Differentiable convolution with a kernel made for this call (a filter's kernel while it trains): the same
    values and gradients as :func:`conv_with_plan`. Where the kernel's spectrum is about the kernel's size (a kernel
    that covers the map), the graph keeps the spectrum instead of the kernel at no cost in memory
    (:func:`conv_saving_spectrum`, not twice differentiable); a kernel much smaller than its spectrum (224-px kernels
    on larger maps) is kept itself (:func:`conv_with_plan`).

    Shape:
        x: (B, C, *spatial), k: (C, *kernel) -> (B, C, *spatial)
    """
    *rows, last = plan.fft_shape
    if 2 * math.prod(rows) * (last // 2 + 1) <= 1.5 * k[0].numel():
        return conv_saving_spectrum(x, k, plan)
    return conv_with_plan(x, k, plan)


def kernel_spectrum(k: torch.Tensor, plan: ConvPlan, dtype: torch.dtype | None = None) -> torch.Tensor:
    """Real FFT of the (cropped) kernel, ready for :func:`apply_spectrum`.

    Shape:
        k: (C, *kernel) with one trailing dim per planned axis -> (C, *fft_shape[:-1], fft_shape[-1] // 2 + 1)
    """
    nd = len(plan.axes)
    if k.dim() != nd + 1:
        layout = "(C, kh, kw)" if nd == 2 else "(C, K)"
        raise ValueError(f"kernel must have {nd + 1} dims {layout}, got shape {tuple(k.shape)}")
    k = k.to(_compute_dtype(dtype or k.dtype))
    if k.numel() == 0:  # no channel
        shape = (k.shape[0], *plan.fft_shape[:-1], plan.fft_shape[-1] // 2 + 1)
        return torch.zeros(shape, dtype=k.dtype.to_complex(), device=k.device)
    return _forward_transform(k[(slice(None), *plan.taps)], plan)


def apply_spectrum(x: torch.Tensor, k_f: torch.Tensor, plan: ConvPlan) -> torch.Tensor:
    """Convolve ``x`` with a kernel given by its spectrum (from :func:`kernel_spectrum`) and crop the result.

    Shape:
        x: (B, C, *spatial), k_f: (C, *spectrum) -> (B, C, *spatial)
    """
    out_dtype = x.dtype
    x = x.to(_compute_dtype(x.dtype))
    if x.numel() == 0:
        return x.to(out_dtype).clone()
    return _convolve_blocks(x, lambda cs: k_f[cs], plan)[0].to(out_dtype)


def _check_pair(x: torch.Tensor, k: torch.Tensor, nd: int, name: str) -> None:
    xs = "(B, C, H, W)" if nd == 2 else "(B, C, L)"
    ks = "(C, kh, kw)" if nd == 2 else "(C, K)"
    if not isinstance(x, torch.Tensor) or not isinstance(k, torch.Tensor):
        raise TypeError(f"{name} expects tensors")
    if x.dim() != nd + 2:
        raise ValueError(f"{name}: x must be {xs}, got shape {tuple(x.shape)}")
    if k.dim() != nd + 1:
        raise ValueError(f"{name}: k must be {ks}, got shape {tuple(k.shape)}")
    if k.shape[0] != x.shape[1]:
        raise ValueError(f"{name}: k has {k.shape[0]} channels but x has {x.shape[1]} (one kernel per channel)")
    if min(x.shape[2:]) < 1 or min(k.shape[1:]) < 1:
        raise ValueError(f"{name}: empty spatial size: x {tuple(x.shape)}, k {tuple(k.shape)}")


def fftconv2d(x: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Centered depthwise linear 2D convolution with "same" output, computed with FFTs.

    ``y[b,c,i,j] = sum_{a,b'} k[c,a,b'] * x[b,c, i + kh//2 - a, j + kw//2 - b']`` with zeros outside the image.
    Any kernel size works, including larger than the input and non-square.

    Shape:
        x: (B, C, H, W), k: (C, kh, kw) -> (B, C, H, W)
    """
    _check_pair(x, k, 2, "fftconv2d")
    plan = plan_conv2d(x.shape[-2], x.shape[-1], k.shape[-2], k.shape[-1])
    return conv_with_plan(x, k, plan)


def fftconv1d(x: torch.Tensor, k: torch.Tensor, *, causal: bool) -> torch.Tensor:
    """Depthwise linear 1D convolution with same-length output, computed with FFTs.

    ``causal=True``: ``y[t] = sum_{j<=t} k[j] x[t-j]``; ``causal=False``: ``y[t] = sum_j k[j] x[t + K//2 - j]``.

    Shape:
        x: (B, C, L), k: (C, K) -> (B, C, L)
    """
    _check_pair(x, k, 1, "fftconv1d")
    plan = plan_conv1d(x.shape[-1], k.shape[-1], causal)
    return conv_with_plan(x, k, plan)
