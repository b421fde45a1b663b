"""Long convolutions as DFT matrix products: the deployment form of the FFT convolutions of paper Section 3.

For a fixed input size and a fixed kernel (inference), the centered linear convolution of
:mod:`hyenapixel.ops.fftconv` can be written with real matrix products only: a discrete Fourier transform of the
smallest wrap-free length as a matrix, an elementwise complex product with the precomputed kernel spectrum, and the
inverse transform with the output crop folded into its matrix. Every step is a ``MatMul``, ``Mul``, ``Add``/``Sub``,
``Slice`` or ``Concat``, so the graph exports to ONNX and to ``torch.export`` without FFT or complex operators, and
runs on any backend. (``benchmarks/bench_eval_alternatives.py`` measured such products faster than the FFT path on
the small stage-3/4 maps; ``benchmarks/bench_export.py`` measures the whole models.)

Same conventions as :func:`~hyenapixel.ops.fftconv2d` / :func:`~hyenapixel.ops.fftconv1d`:

* 2D: ``y[b,c,i,j] = sum_{a,b'} k[c,a,b'] * x[b,c, i + kh//2 - a, j + kw//2 - b']``
* 1D: ``y[t] = sum_j k[j] x[t + center - j]`` with ``center = 0`` (causal) or ``K // 2`` (bidirectional)

Computation is in ``promote_types(x.dtype, float32)``, the result has the dtype of ``x``.

Along one axis of length ``L`` with a DFT of length ``N`` (``AxisPlan.min_len``), the real forward transform to
``F = N // 2 + 1`` bins is ``x @ [cos | -sin]`` (an ``L x 2F`` matrix) and the real inverse with the crop is
``Re @ A_re + Im @ A_im`` with ``A`` holding ``w_f / N * (cos, -sin)(2 pi f (t + center) / N)``, ``w_f = 2`` for the
bins that stand for a conjugate pair and 1 for DC and Nyquist. The complex transform along the second axis of a 2D
map is a real block matrix acting on the real and imaginary parts at once. 2D maps are channels-last
(:func:`dft_conv2d_channels_last`): large matrix products, and no layout change around the mixer's norms.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import NamedTuple

import torch

from hyenapixel.ops.fftconv import AxisPlan, ConvPlan, conv_fresh_kernel, next_fast_len, plan_conv1d, plan_conv2d
from hyenapixel.ops.tracing import tracing

__all__ = [
    "DFT_MAX_LEN",
    "DFTConv2d",
    "DFTAxis",
    "DFTSpectrum2d",
    "SequenceDFT",
    "dft_axes2d",
    "dft_conv1d",
    "channels_last_spectrum",
    "conv2d_channels_last",
    "dft_conv2d",
    "dft_conv2d_cached",
    "dft_conv2d_channels_last",
    "dft_matrices2d",
    "dft_preferred",
    "dft_spectrum2d",
    "plan_matrices2d",
    "sequence_dft",
]


@dataclass(frozen=True)
class DFTAxis:
    """DFT matrices of one axis of a centered linear convolution.

    ``n``: DFT length (the smallest without wrap-around), ``bins``: ``n // 2 + 1``, ``taps``: the kernel taps
    ``[start, stop)`` that can reach an output. ``real_fwd`` (length, 2 * bins): ``[cos | -sin]`` real forward
    transform. ``full_fwd`` (2 * n, 2 * length): complex forward transform (all ``n`` bins) and ``full_inv``
    (2 * length, 2 * n): complex inverse with the centered crop, both as real block matrices
    ``[[Re, -Im], [Im, Re]]`` acting on stacked ``[real; imaginary]`` parts. ``real_inv`` (2 * bins, length): real
    inverse with the crop, rows ``[A_re; A_im]``.
    """

    plan: AxisPlan
    n: int
    bins: int
    real_fwd: torch.Tensor
    full_fwd: torch.Tensor
    full_inv: torch.Tensor
    real_inv: torch.Tensor

    @property
    def taps(self) -> tuple[int, int]:
        return self.plan.start, self.plan.stop

    def interleaved_fwd(self) -> torch.Tensor:
        """``full_fwd`` with its columns reordered for inputs whose real and imaginary parts alternate row by row
        (column ``2 t + p`` multiplies part ``p`` of input row ``t``).

        Shape:
            (2 * n, 2 * length)
        """
        return self.full_fwd.reshape(2 * self.n, 2, -1).transpose(1, 2).reshape(2 * self.n, -1).contiguous()

    def interleaved_inv(self) -> torch.Tensor:
        """``full_inv`` with its rows reordered so that the output's real and imaginary parts alternate row by row
        (row ``2 t + p`` is part ``p`` of output row ``t``).

        Shape:
            (2 * length, 2 * n)
        """
        return self.full_inv.reshape(2, -1, 2 * self.n).transpose(0, 1).reshape(-1, 2 * self.n).contiguous()

    @staticmethod
    def make(plan: AxisPlan, dtype: torch.dtype = torch.float64, n: int | None = None) -> DFTAxis:
        """Matrices for ``plan``, computed in float64 and stored in ``dtype``; DFT length ``n`` (default and
        minimum: ``plan.min_len``, any larger length is as exact)."""
        d = torch.float64
        length, center = plan.length, plan.center
        n = plan.min_len if n is None else n
        if n < plan.min_len:
            raise ValueError(f"DFT length {n} is below {plan.min_len}: the convolution would wrap around")
        bins = n // 2 + 1
        t = torch.arange(length, dtype=d)
        # forward: angle(t, f) = -2 pi f t / n
        ang = -2 * math.pi * t[:, None] * torch.arange(bins, dtype=d)[None] / n  # (L, bins)
        real_fwd = torch.cat([ang.cos(), ang.sin()], 1)
        ang = -2 * math.pi * torch.arange(n, dtype=d)[:, None] * t[None] / n  # (n, L)
        re, im = ang.cos(), ang.sin()
        full_fwd = torch.cat([torch.cat([re, -im], 1), torch.cat([im, re], 1)], 0)
        # inverse with the crop: output t reads circular position t + center
        ang = 2 * math.pi * (t + center)[:, None] * torch.arange(n, dtype=d)[None] / n  # (L, n)
        re, im = ang.cos() / n, ang.sin() / n
        full_inv = torch.cat([torch.cat([re, -im], 1), torch.cat([im, re], 1)], 0)
        weight = torch.full((bins,), 2.0, dtype=d)  # Hermitian half spectrum: interior bins stand for two
        weight[0] = 1
        if n % 2 == 0:
            weight[-1] = 1
        ang = 2 * math.pi * torch.arange(bins, dtype=d)[:, None] * (t + center)[None] / n  # (bins, L)
        real_inv = torch.cat([ang.cos() * weight[:, None] / n, -ang.sin() * weight[:, None] / n], 0)
        mats = (m.to(dtype) for m in (real_fwd, full_fwd, full_inv, real_inv))
        return DFTAxis(plan, n, bins, *mats)


def dft_spectrum2d(k: torch.Tensor, rows: DFTAxis, cols: DFTAxis) -> tuple[torch.Tensor, torch.Tensor]:
    """Real and imaginary part of the spectrum of the taps of ``k`` that reach the output, in float64.

    Shape:
        k: (C, kh, kw) -> two (C, rows.n, cols.bins)
    """
    k = k.detach().to(torch.float64)[:, slice(*rows.taps), slice(*cols.taps)]
    spec = torch.fft.rfft2(k, s=(rows.n, cols.n))
    return spec.real, spec.imag


def dft_conv2d_channels_last(
    x: torch.Tensor,
    kr: torch.Tensor,
    ki: torch.Tensor,
    fw: torch.Tensor,
    fh: torch.Tensor,
    gh: torch.Tensor,
    aw: torch.Tensor,
) -> torch.Tensor:
    """Centered 'same' depthwise 2D convolution by DFT matrix products on a channels-last map.

    Along W the real transform ``[cos | -sin]``; along H the complex transform of all ``N`` bins, the elementwise
    product with the kernel spectrum, the complex inverse along H with the centered crop folded into its matrix,
    and the real inverse along W. With the channels innermost, each transform along H is one large matrix product
    per image (inner size ``F * C``; channels-first it would be one small product per channel), and the real and
    imaginary parts never need splitting or stacking: the transform along W writes ``[Re; Im]`` as a ``(2, F)``
    axis next to H, which viewed as one axis of ``2H`` rows interleaves the two parts row by row, and the H
    matrices are laid out for that interleaving (:meth:`DFTAxis.interleaved_fwd`, :meth:`DFTAxis.interleaved_inv`).

    ``fw``, ``fh``, ``gh``, ``aw`` from :func:`dft_matrices2d` and the kernel spectrum ``kr, ki`` of
    :func:`dft_spectrum2d` laid out ``(N, F * C)`` (:func:`channels_last_spectrum`), all already in the compute
    dtype (float32 for float32 and reduced-precision inputs).

    Shape:
        x: (B, H, W, C), kr/ki: (N, F * C), fw: (2F, W), fh: (2N, 2H), gh: (2H, 2N), aw: (W, 2F) -> (B, H, W, C)
    """
    out_dtype = x.dtype
    x = x.to(kr.dtype)
    b, h, w, c = x.shape
    n = kr.shape[0]
    a = torch.matmul(fw, x)  # (B, H, 2F, C): along W, [Re; Im] per row
    f2 = a.shape[2]  # 2F
    a = a.reshape(b, 2 * h, f2 // 2 * c)  # (B, 2H, F C): rows (h, Re/Im) interleaved (no -1: B may be 0)
    yr = torch.matmul(fh[:n], a)  # (B, N, F C): complex transform along H
    yi = torch.matmul(fh[n:], a)
    zr = yr * kr - yi * ki  # spectrum of the output
    zi = yr * ki + yi * kr
    u = torch.matmul(gh, torch.cat([zr, zi], dim=1))  # (B, 2H, F C): inverse along H, cropped, interleaved
    y = torch.matmul(aw, u.reshape(b, h, f2, c))  # (B, H, W, C): real inverse along W, cropped
    return y.to(out_dtype)


def dft_matrices2d(rows: DFTAxis, cols: DFTAxis) -> dict[str, torch.Tensor]:
    """The matrices of :func:`dft_conv2d_channels_last`, keyed by its argument names, in the axes' dtype: the real
    transform along W and its cropped inverse (``fw``, ``aw``), the complex transform along H and its cropped inverse
    laid out for interleaved real and imaginary rows (``fh``, ``gh``).

    Shape:
        -> fw: (2F, W), fh: (2N, 2H), gh: (2H, 2N), aw: (W, 2F)
    """
    return {"fw": cols.real_fwd.T, "fh": rows.interleaved_fwd(), "gh": rows.interleaved_inv(), "aw": cols.real_inv.T}


def channels_last_spectrum(kr: torch.Tensor, ki: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The kernel spectrum of :func:`dft_spectrum2d` in the layout of :func:`dft_conv2d_channels_last`.

    Shape:
        kr/ki: (C, N, F) -> two (N, F * C)
    """
    return tuple(s.permute(1, 2, 0).reshape(s.shape[1], -1).contiguous() for s in (kr, ki))  # type: ignore[return-value]


def dft_axes2d(
    height: int, width: int, kh: int, kw: int, dtype: torch.dtype = torch.float64
) -> tuple[DFTAxis, DFTAxis]:
    """The two :class:`DFTAxis` of a ``height x width`` map convolved with a ``kh x kw`` kernel centered at
    ``k // 2`` (the plan of :func:`~hyenapixel.ops.fftconv2d`)."""
    plan = plan_conv2d(height, width, kh, kw)
    return DFTAxis.make(plan.axes[0], dtype), DFTAxis.make(plan.axes[1], dtype)


def _split_length(n: int) -> int:
    """The factor ``n1`` of ``n = n1 * n2`` that minimises the four-step cost ``~ 4 n1 + n2`` per output."""
    return min((d for d in range(1, n + 1) if n % d == 0), key=lambda d: 4 * d + n // d)


@dataclass(frozen=True)
class SequenceDFT:
    """Matrices of a 1D centered (or causal) linear convolution as a four-step DFT of length ``n = n1 * n2``.

    A dense DFT matrix of a flattened feature map (``H * W`` tokens) costs ``O((H W)^2)``; splitting the time index
    as ``t = t1 + n1 t2`` and the frequency as ``k = k2 + n2 k1`` turns it into a DFT over ``t2`` (matrix ``fa``), a
    twiddle ``exp(-2 pi i k2 t1 / n)`` (``tw``) and a DFT over ``t1`` (``f1``), each a small matrix product, and the
    inverse likewise (``g1``, conjugate twiddle, ``ga`` with the output rows only). Spectra are laid out
    ``[k2, k1]``.

    ``fa`` (2 n2, r): ``[cos; -sin]`` over the ``r = ceil(L / n1)`` input rows. ``tw`` (2, n2, n1): twiddle real and
    imaginary part. ``f1`` / ``g1`` (n1, 2 n1): ``[Re | Im]`` forward / inverse DFT over ``t1``. ``ga`` (q, 2 n2):
    ``[Re | -Im]`` of the inverse over ``k2``, divided by ``n``, for the ``q`` rows holding the output, which starts
    at ``offset`` within them.
    """

    plan: AxisPlan
    n1: int
    n2: int
    offset: int
    fa: torch.Tensor
    tw: torch.Tensor
    f1: torch.Tensor
    g1: torch.Tensor
    ga: torch.Tensor

    @property
    def n(self) -> int:
        return self.n1 * self.n2

    @staticmethod
    def make(plan: AxisPlan, dtype: torch.dtype = torch.float64) -> SequenceDFT:
        """Matrices for ``plan``, computed in float64 and stored in ``dtype``."""
        d = torch.float64
        n = next_fast_len(plan.min_len)
        n1 = _split_length(n)
        n2 = n // n1
        rows_in = -(-plan.length // n1)
        first, last = plan.center // n1, (plan.center + plan.length - 1) // n1
        k2, k1 = torch.arange(n2, dtype=d), torch.arange(n1, dtype=d)
        ang = -2 * math.pi * k2[:, None] * torch.arange(rows_in, dtype=d)[None] / n2  # (n2, r)
        fa = torch.cat([ang.cos(), ang.sin()], 0)
        ang = -2 * math.pi * k2[:, None] * k1[None] / n  # (n2, n1): k2 * t1
        tw = torch.stack([ang.cos(), ang.sin()])
        ang = 2 * math.pi * k1[:, None] * k1[None] / n1  # (n1, n1), symmetric
        f1 = torch.cat([ang.cos(), -ang.sin()], 1)
        g1 = torch.cat([ang.cos(), ang.sin()], 1)
        ang = 2 * math.pi * torch.arange(first, last + 1, dtype=d)[:, None] * k2[None] / n2  # (q, n2)
        ga = torch.cat([ang.cos(), -ang.sin()], 1) / n
        mats = (m.to(dtype) for m in (fa, tw, f1, g1, ga))
        return SequenceDFT(plan, n1, n2, plan.center - first * n1, *mats)

    def spectrum(self, k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Real and imaginary part of the spectrum of the taps of ``k`` that reach the output, float64, ``[k2, k1]``.

        Shape:
            k: (C, K) -> two (C, n2, n1)
        """
        spec = torch.fft.fft(k.detach().to(torch.float64)[:, self.plan.start : self.plan.stop], n=self.n)
        spec = spec.view(-1, self.n1, self.n2).transpose(1, 2)  # k = k2 + n2 * k1
        return spec.real.contiguous(), spec.imag.contiguous()


def sequence_dft(length: int, kernel_len: int, causal: bool, dtype: torch.dtype = torch.float64) -> SequenceDFT:
    """The :class:`SequenceDFT` of a length-``length`` sequence convolved as :func:`~hyenapixel.ops.fftconv1d` does."""
    return SequenceDFT.make(plan_conv1d(length, kernel_len, causal).axes[0], dtype)


def dft_conv1d(
    x: torch.Tensor,
    kr: torch.Tensor,
    ki: torch.Tensor,
    fa: torch.Tensor,
    tw: torch.Tensor,
    f1: torch.Tensor,
    g1: torch.Tensor,
    ga: torch.Tensor,
    offset: int,
) -> torch.Tensor:
    """Centered (or causal) same-length depthwise 1D convolution by a four-step DFT of matrix products.

    The matrices and ``offset`` come from a :class:`SequenceDFT`, the kernel spectrum ``kr, ki`` from its
    :meth:`~SequenceDFT.spectrum`, all in the compute dtype (float32 for float32 and reduced-precision inputs).

    Shape:
        x: (B, C, L), kr/ki: (C, n2, n1) -> (B, C, L)
    """
    out_dtype = x.dtype
    x = x.to(kr.dtype)
    length, rows, (n2, n1) = x.shape[-1], fa.shape[-1], kr.shape[-2:]
    x = torch.nn.functional.pad(x, (0, rows * n1 - length)).reshape(*x.shape[:-1], rows, n1)  # x[t1 + n1 t2]
    a = torch.matmul(fa, x)  # (B, C, 2 n2, n1): DFT over t2, [Re; Im]
    ar, ai = a[..., :n2, :], a[..., n2:, :]
    br, bi = ar * tw[0] - ai * tw[1], ar * tw[1] + ai * tw[0]  # twiddle
    p = torch.matmul(torch.cat([br, bi], -2), f1)  # (B, C, 2 n2, 2 n1): DFT over t1
    yr = p[..., :n2, :n1] - p[..., n2:, n1:]
    yi = p[..., :n2, n1:] + p[..., n2:, :n1]
    z = torch.cat([yr * kr - yi * ki, yr * ki + yi * kr], -2)  # (B, C, 2 n2, n1): output spectrum [k2, k1]
    p = torch.matmul(z, g1)  # inverse over k1
    ur = p[..., :n2, :n1] - p[..., n2:, n1:]
    ui = p[..., :n2, n1:] + p[..., n2:, :n1]
    v = torch.cat([ur * tw[0] + ui * tw[1], ui * tw[0] - ur * tw[1]], -2)  # conjugate twiddle
    y = torch.matmul(ga, v)  # (B, C, q, n1): real part of the inverse over k2, output rows only
    return y.flatten(-2).narrow(-1, offset, length).to(out_dtype)


#: Largest DFT length (per axis, :attr:`AxisPlan.min_len`) at which a channels-last 2D long convolution runs as DFT
#: matrix products on CPU rather than FFTs (:func:`dft_preferred`; the timings are in docs/benchmarks.md).
DFT_MAX_LEN = 32


def dft_preferred(plan: ConvPlan, x: torch.Tensor) -> bool:
    """The one dispatch of a channels-last 2D long convolution: whether DFT matrix products serve it
    (:func:`dft_conv2d_cached` for a fixed kernel's spectrum, :func:`dft_conv2d` for a kernel that is being learned)
    rather than the FFT path (:func:`~hyenapixel.ops.apply_spectrum` / :func:`~hyenapixel.ops.conv_fresh_kernel` on
    a channels-first copy). True on CPU for real floating-point maps whose DFT lengths are at most
    :data:`DFT_MAX_LEN` on both axes (small maps, where the matrix products cost less than the transforms and need
    no layout change); False while a graph is traced (``torch.compile``, ``torch.export``, ``torch.jit``: their
    graphs, and fvcore's MAC count of the inference path, keep the FFT operators; :mod:`hyenapixel.export` freezes
    its own DFT form).

    Shape:
        x: (B, H, W, C)
    """
    if tracing():
        return False
    return (
        x.device.type == "cpu"
        and x.dtype.is_floating_point
        and len(plan.axes) == 2
        and max(a.min_len for a in plan.axes) <= DFT_MAX_LEN
    )


class DFTSpectrum2d(NamedTuple):
    """A fixed kernel's spectrum for :func:`dft_conv2d_cached`: real and imaginary part in the channels-last layout
    of :func:`dft_conv2d_channels_last`, in the compute dtype (what the mixers' eval cache keeps; the DFT matrices
    depend on the plan only and are shared, :func:`plan_matrices2d`). The DFT lengths are the plan's FFT lengths,
    so it takes the bytes of the FFT path's spectrum.

    Shape:
        kr/ki: (N, F * C)
    """

    kr: torch.Tensor
    ki: torch.Tensor

    @staticmethod
    def make(k: torch.Tensor, plan: ConvPlan, dtype: torch.dtype | None = None) -> DFTSpectrum2d:
        """The spectrum of kernel ``k`` for maps of ``plan`` (:func:`~hyenapixel.ops.plan_conv2d`, or its
        ``cropped()`` form for a kernel already cut down to its taps), computed as the FFT path computes its kernel
        spectrum (:func:`~hyenapixel.ops.kernel_spectrum`: an FFT in ``promote_types(dtype or k.dtype, float32)``);
        no gradient flows to ``k``.

        Shape:
            k: (C, kh, kw) -> two (N, F * C)
        """
        if k.dim() != 3 or len(plan.axes) != 2:
            raise ValueError(f"DFTSpectrum2d needs a 2D plan and a (C, kh, kw) kernel, got shape {tuple(k.shape)}")
        store = torch.promote_types(dtype or k.dtype, torch.float32)
        taps = k.detach().to(store)[(slice(None), *plan.taps)]
        spec = torch.fft.rfft2(taps, s=plan.fft_shape)  # (C, N, F): the DFT lengths are the FFT plan's
        return DFTSpectrum2d(*channels_last_spectrum(spec.real, spec.imag))


@functools.lru_cache(maxsize=16)
def plan_matrices2d(
    rows: AxisPlan, cols: AxisPlan, dtype: torch.dtype, device: torch.device
) -> dict[str, torch.Tensor]:
    """The matrices of :func:`dft_matrices2d` for the axes ``rows`` and ``cols`` of a plan, in ``dtype`` on
    ``device``; made on first use and kept for the 16 most recent (plan, dtype, device), shared by every kernel
    convolved under that plan (the mixers of a stage).

    Shape:
        -> fw: (2F, W), fh: (2N, 2H), gh: (2H, 2N), aw: (W, 2F)
    """
    # shared across calls in and out of inference mode: made as normal tensors, which both may use (inference tensors
    # cannot be saved for a backward, such as an input gradient through the eval path, as the ERF takes)
    with torch.inference_mode(False):
        mats = dft_matrices2d(DFTAxis.make(rows, n=rows.fft_len), DFTAxis.make(cols, n=cols.fft_len))
        return {name: m.to(device=device, dtype=dtype).contiguous() for name, m in mats.items()}


#: the argument order of the DFT matrices in :class:`DFTConv2d` and :func:`dft_conv2d_channels_last`
_MATRICES = ("fw", "fh", "gh", "aw")


def dft_conv2d_cached(x: torch.Tensor, spectrum: DFTSpectrum2d, plan: ConvPlan) -> torch.Tensor:
    """Centered 'same' depthwise 2D convolution of a channels-last map with a fixed kernel given by its
    :class:`DFTSpectrum2d` under ``plan``, by DFT matrix products (:class:`DFTConv2d`): the same
    linear convolution as :func:`~hyenapixel.ops.apply_spectrum` with the FFT spectrum of that kernel, float
    rounding apart. Not differentiable with respect to the kernel (the cache's use). The products run in the
    spectrum's dtype also under autocast (a long convolution is computed in float32 at least, as the FFT path).

    Shape:
        x: (B, H, W, C) -> (B, H, W, C)
    """
    mats = plan_matrices2d(plan.axes[0], plan.axes[1], spectrum.kr.dtype, spectrum.kr.device)
    with torch.autocast(x.device.type, enabled=False):
        y = DFTConv2d.apply(x.to(spectrum.kr.dtype), spectrum.kr, spectrum.ki, *(mats[m] for m in _MATRICES))
    return y.to(x.dtype)


class DFTConv2d(torch.autograd.Function):
    """:func:`dft_conv2d_channels_last` (map ``x``, kernel spectrum ``kr, ki``, constant DFT matrices) with a
    hand-written backward: the same values (the transform along H is one product with the whole ``fh`` instead of
    its two halves, float rounding apart) and the same gradients, with fewer map-sized temporaries than autograd
    through the individual operations: the spectral products are written into one ``[Re; Im]`` tensor (no
    concatenation), and the backward reuses the map's spectrum saved in forward.

    With the chain rule on real and imaginary parts, ``Z = Y K`` (complex, per bin) gives ``dY = dZ conj(K)`` and
    ``dK = sum_b dZ conj(Y)``. Where the backward itself is recorded (``create_graph``), it differentiates
    :func:`dft_conv2d_channels_last` of the saved inputs instead, so gradients of any order work. Public so that
    tools reading traced graphs can name it; :func:`dft_conv2d` applies it.

    Shape:
        x: (B, H, W, C), kr/ki: (N, F * C), fw: (2F, W), fh: (2N, 2H), gh: (2H, 2N), aw: (W, 2F) -> (B, H, W, C)
    """

    @staticmethod
    def forward(ctx, x, kr, ki, fw, fh, gh, aw):  # noqa: ANN001, ANN205 - autograd signature
        b, h, _, c = x.shape
        n, f2 = kr.shape[0], fw.shape[0]
        a = torch.matmul(fw, x).reshape(b, 2 * h, f2 // 2 * c)  # along W; rows (h, Re/Im) interleaved
        spec = torch.matmul(fh, a)  # (B, 2N, F C): [Re; Im] of the map's spectrum
        z = torch.empty_like(spec)
        _complex_product(spec[:, :n], spec[:, n:], kr, ki, z[:, :n], z[:, n:])
        y = torch.matmul(aw, torch.matmul(gh, z).reshape(b, h, f2, c))
        ctx.save_for_backward(x, kr, ki, spec, fw, fh, gh, aw)
        return y

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # noqa: ANN205 - autograd signature
        x, kr, ki, spec, fw, fh, gh, aw = ctx.saved_tensors
        need = ctx.needs_input_grad[:3]
        if torch.is_grad_enabled():  # create_graph: the reference formula, differentiable again
            wanted = [t for t, nd in zip((x, kr, ki), need) if nd]
            y = dft_conv2d_channels_last(x, kr, ki, fw, fh, gh, aw)
            got = iter(torch.autograd.grad(y, wanted, grad, create_graph=True))
            return (*(next(got) if nd else None for nd in need), None, None, None, None)
        b, h, _, c = grad.shape
        n, f2 = kr.shape[0], fw.shape[0]
        grad_u = torch.matmul(aw.t(), grad).reshape(b, 2 * h, f2 // 2 * c)
        grad_z = torch.matmul(gh.t(), grad_u)  # (B, 2N, F C)
        gr, gi = grad_z[:, :n], grad_z[:, n:]
        grad_x = grad_kr = grad_ki = None
        if need[1] or need[2]:  # sum_b dZ conj(Y)
            yr, yi = spec[:, :n], spec[:, n:]
            t = torch.mul(gr, yr)
            grad_kr = t.addcmul_(gi, yi).sum(0)
            torch.mul(gi, yr, out=t)
            grad_ki = t.addcmul_(gr, yi, value=-1).sum(0)
        if need[0]:  # dZ conj(K), then both transforms transposed
            grad_spec = torch.empty_like(grad_z)
            _complex_product(gr, gi, kr, ki.neg(), grad_spec[:, :n], grad_spec[:, n:])
            grad_a = torch.matmul(fh.t(), grad_spec).reshape(b, h, f2, c)
            grad_x = torch.matmul(fw.t(), grad_a)
        return grad_x, grad_kr, grad_ki, None, None, None, None


def _complex_product(
    ar: torch.Tensor, ai: torch.Tensor, br: torch.Tensor, bi: torch.Tensor, out_r: torch.Tensor, out_i: torch.Tensor
) -> None:
    """``out = a * b`` for complex numbers given by their real and imaginary parts, written into ``out_r, out_i``
    (no temporaries).

    Shape:
        ar/ai: (..., N, M), br/bi: broadcastable to them, out_r/out_i: (..., N, M)
    """
    torch.mul(ar, br, out=out_r).addcmul_(ai, bi, value=-1)
    torch.mul(ar, bi, out=out_i).addcmul_(ai, br)


def dft_conv2d(x: torch.Tensor, k: torch.Tensor, plan: ConvPlan) -> torch.Tensor:
    """Centered 'same' depthwise 2D convolution of a channels-last map with the kernel ``k`` under ``plan``, by DFT
    matrix products (:class:`DFTConv2d`, the products of :func:`dft_conv2d_channels_last` with a hand-written
    backward), differentiable in ``x`` and ``k`` (any order): the kernel's spectrum is an FFT of the kernel in the
    graph, as in the FFT path. The same linear convolution as
    :func:`~hyenapixel.ops.conv_fresh_kernel` on the channels-first map, float rounding apart; computed in
    ``promote_types(x.dtype, float32)`` also under autocast, as the FFT path. ``plan`` as for
    :meth:`DFTSpectrum2d.make`.

    Shape:
        x: (B, H, W, C), k: (C, kh, kw) -> (B, H, W, C)
    """
    if k.dim() != 3 or len(plan.axes) != 2 or k.shape[0] != x.shape[-1]:
        raise ValueError(
            f"dft_conv2d needs a 2D plan, a (B, H, W, C) map and a (C, kh, kw) kernel, got shapes {tuple(x.shape)} "
            f"and {tuple(k.shape)}"
        )
    compute = torch.promote_types(x.dtype, torch.float32)
    mats = plan_matrices2d(plan.axes[0], plan.axes[1], compute, x.device)
    with torch.autocast(x.device.type, enabled=False):
        spec = torch.fft.rfft2(k.to(compute)[(slice(None), *plan.taps)], s=plan.fft_shape)  # (C, N, F)
        kr, ki = channels_last_spectrum(spec.real, spec.imag)
        return DFTConv2d.apply(x.to(compute), kr, ki, *(mats[m] for m in _MATRICES)).to(x.dtype)


def conv2d_channels_last(x: torch.Tensor, k: torch.Tensor, plan: ConvPlan) -> torch.Tensor:
    """The long convolution of a channels-last map with a kernel that may be learned (gradients to ``x`` and ``k``):
    :func:`dft_conv2d` where :func:`dft_preferred` says so, else :func:`~hyenapixel.ops.conv_fresh_kernel` on a
    channels-first copy (the FFT wants ``(B, C, H, W)`` contiguous: one layout change each way). ``plan`` as for
    :meth:`DFTSpectrum2d.make`.

    Shape:
        x: (B, H, W, C), k: (C, kh, kw) -> (B, H, W, C)
    """
    if dft_preferred(plan, x):
        return dft_conv2d(x, k, plan)
    return conv_fresh_kernel(x.permute(0, 3, 1, 2).contiguous(), k, plan).permute(0, 2, 3, 1)
