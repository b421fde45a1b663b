"""Inference copies of HyenaPixel models with the long convolutions frozen for one input size (deployment of the
paper's Section 3 operators).

In eval the kernels of HyenaPixel and (bidirectional / causal) Hyena depend only on the weights and on the size of
the feature map. :func:`freeze_long_convs` therefore precomputes, for one input size, every kernel's spectrum
and the DFT matrices of its stage, and puts a module with the matrix products of :mod:`hyenapixel.ops.dft` (real
``MatMul``/``Mul``/``Add`` only) into each mixer's ``frozen_conv`` seam, which replaces the mixer's FFT
convolution. The result computes the same function as the original in eval (to float32 rounding), exports to ONNX
without FFT or complex operators, and is specialised to that spatial size; the batch size stays free.

Only the mixers' own seams are used: ``frozen_conv``, ``split_projections`` (the three gated inputs as branches
of a 1x1 and a depthwise convolution, the form that deploys best) and ``kernel``; the channel MLPs fold their
StarReLU (:meth:`~hyenapixel.layers.Mlp.fold_star_relu`), and :func:`mlps_as_convolutions` swaps each folded MLP for
its 1x1-convolution form (:class:`~hyenapixel.layers.PointwiseConvMlp`). The measurements behind the defaults are
in docs/deploy.md.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from hyenapixel.constants import MIN_INPUT_SIZE
from hyenapixel.errors import UserError
from hyenapixel.layers import Mlp, PointwiseConvMlp, SquaredReLU
from hyenapixel.mixers import BidirectionalHyenaMixer, CausalHyenaMixer, HyenaPixelMixer
from hyenapixel.models import LONG_CONV_MIXERS, input_channels, module_inputs
from hyenapixel.ops.dft import (
    DFTAxis,
    SequenceDFT,
    channels_last_spectrum,
    dft_axes2d,
    dft_conv1d,
    dft_conv2d_channels_last,
    dft_matrices2d,
    dft_spectrum2d,
    sequence_dft,
)

__all__ = [
    "DIRECT_MAX_PIXELS",
    "PER_IMAGE_MIN_PIXELS",
    "ExportError",
    "FrozenConv1d",
    "FrozenConv2d",
    "FrozenDirectConv2d",
    "PerImage",
    "check_input_size",
    "image_shape",
    "freeze_long_convs",
    "mlps_as_convolutions",
]

#: HyenaPixel maps of at most this many pixels are frozen as a direct convolution, larger ones as DFT products
#: (onnxruntime timings of both forms: docs/deploy.md, ``benchmarks/bench_onnx_longconv.py``).
DIRECT_MAX_PIXELS = 7 * 7
#: :func:`~hyenapixel.export.to_onnx` runs the long convolutions of maps (2D) and sequences (1D) of at least this
#: many pixels image by image (:class:`PerImage`): stages 1-2 at 224 px (whole-model timings with and without it:
#: docs/deploy.md, ``benchmarks/bench_export.py``).
PER_IMAGE_MIN_PIXELS = 28 * 28
#: The mixers whose forward the exporter knows to stay the same function with a frozen long convolution.
FREEZABLE = (HyenaPixelMixer, BidirectionalHyenaMixer, CausalHyenaMixer)

try:  # torch's scan higher-order operator: the only traceable loop that torch.export turns into an ONNX Scan
    from torch._higher_order_ops.scan import scan as _scan
except ImportError:  # pragma: no cover - older torch: PerImage is not used
    _scan = None


class ExportError(UserError):
    """A model or an input size that cannot be exported; the message says what to change."""


class FrozenConv2d(nn.Module):
    """The long convolution of one HyenaPixel mixer for one map size, on a channels-last map: the kernel spectrum
    and the DFT matrices of :func:`~hyenapixel.ops.dft.dft_conv2d_channels_last` as non-persistent float32
    buffers (the matrices shared by the mixers of a stage, see :func:`stage_matrices`).

    Shape:
        (B, H, W, C) -> (B, H, W, C) with (H, W) the frozen size
    """

    def __init__(self, kernel: torch.Tensor, rows: DFTAxis, cols: DFTAxis, mats: dict[str, torch.Tensor]) -> None:
        super().__init__()
        self.size, self.channels = (rows.plan.length, cols.plan.length), kernel.shape[0]
        self.dft = (rows.n, cols.n)
        kr, ki = channels_last_spectrum(*dft_spectrum2d(kernel, rows, cols))
        for name, value in {"kr": kr, "ki": ki, **mats}.items():
            self.register_buffer(name, value.to(torch.float32), persistent=False)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        _check_frozen(tuple(u.shape[1:3]), self.size, "feature map")
        return dft_conv2d_channels_last(u, self.kr, self.ki, self.fw, self.fh, self.gh, self.aw)

    def extra_repr(self) -> str:
        return f"channels={self.channels}, size={self.size}, dft={self.dft}"


def stage_matrices(rows: DFTAxis, cols: DFTAxis) -> dict[str, torch.Tensor]:
    """The float32 DFT matrices of :func:`~hyenapixel.ops.dft.dft_conv2d_channels_last` for one map and kernel
    size (computed once per stage and shared by its mixers)."""
    return {k: v.to(torch.float32).contiguous() for k, v in dft_matrices2d(rows, cols).items()}


class FrozenDirectConv2d(nn.Module):
    """The long convolution of one HyenaPixel mixer for a small map as a direct depthwise convolution on a
    channels-last map: only the kernel taps that can reach an output (at most ``(2H - 1) x (2W - 1)``), flipped, as
    a non-persistent float32 buffer. On the stage-4 map of a 224 px model (7 x 7) onnxruntime runs this faster than
    the DFT products at batch 16 (see :data:`DIRECT_MAX_PIXELS`).

    Shape:
        (B, H, W, C) -> (B, H, W, C) with (H, W) the frozen size
    """

    def __init__(self, kernel: torch.Tensor, rows: DFTAxis, cols: DFTAxis) -> None:
        super().__init__()
        self.size = (rows.plan.length, cols.plan.length)
        taps = kernel.detach()[:, slice(*rows.taps), slice(*cols.taps)]
        self.register_buffer("weight", taps.flip(-2, -1)[:, None].to(torch.float32).contiguous(), persistent=False)
        # y[i] = sum_a k[a] x[i + c - a]: a correlation with the flipped taps after padding taps - 1 - c before
        # and c after (c: the center within the kept taps)
        (th, tw), (ch, cw) = taps.shape[-2:], (rows.plan.center, cols.plan.center)
        self.pad = (tw - 1 - cw, cw, th - 1 - ch, ch)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        _check_frozen(tuple(u.shape[1:3]), self.size, "feature map")
        x = F.pad(u.to(self.weight.dtype).permute(0, 3, 1, 2), self.pad)
        return F.conv2d(x, self.weight, groups=self.weight.shape[0]).permute(0, 2, 3, 1).to(u.dtype)

    def extra_repr(self) -> str:
        return f"channels={self.weight.shape[0]}, size={self.size}, taps={tuple(self.weight.shape[-2:])}"


class FrozenConv1d(nn.Module):
    """The long convolution of one Hyena mixer for one sequence length: kernel spectrum and four-step DFT
    matrices (:class:`~hyenapixel.ops.dft.SequenceDFT`) as non-persistent float32 buffers.

    Shape:
        (B, C, L) -> (B, C, L) with L the frozen length
    """

    def __init__(self, kernel: torch.Tensor, dft: SequenceDFT) -> None:
        super().__init__()
        self.size = (dft.plan.length,)
        self.offset = dft.offset
        kr, ki = dft.spectrum(kernel)
        for name, value in {"kr": kr, "ki": ki, "fa": dft.fa, "tw": dft.tw, "f1": dft.f1, "g1": dft.g1}.items():
            self.register_buffer(name, value.to(torch.float32), persistent=False)
        self.register_buffer("ga", dft.ga.to(torch.float32), persistent=False)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        _check_frozen(tuple(u.shape[-1:]), self.size, "sequence length")
        return dft_conv1d(u, self.kr, self.ki, self.fa, self.tw, self.f1, self.g1, self.ga, self.offset)

    def extra_repr(self) -> str:
        return f"channels={self.kr.shape[0]}, length={self.size[0]}, dft={tuple(self.kr.shape[-2:])}"


class PerImage(nn.Module):
    """Applies ``module`` to one image of the batch after the other in exported graphs (``torch.export`` and the
    ONNX exporter built on it): torch's ``scan`` operator, an ONNX ``Scan`` over the batch. The same function as
    ``module``; in eager and compiled calls it runs ``module`` on the whole batch.

    Why: onnxruntime runs a graph operator by operator over the whole batch, so at batch 16 the spectra of a large
    map (25 MiB each for the real and the imaginary part at 56 x 56 x 64) pass through main memory at every step;
    one image's stay in the cache. See :data:`PER_IMAGE_MIN_PIXELS`.

    Shape:
        (B, ...) -> (B, ...) as ``module``
    """

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if _scan is None or not torch.compiler.is_exporting():
            return self.module(x)

        def step(carry: torch.Tensor, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return carry.clone(), self.module(image.unsqueeze(0)).squeeze(0)

        return _scan(step, x.new_zeros(1), x)[1]  # scan needs a carry; this one is unused


def _check_frozen(got: tuple[int, ...], want: tuple[int, ...], what: str) -> None:
    if got != want:
        raise ExportError(
            f"this model was frozen for a different input size: a long convolution got a {what} of {got}, its "
            f"kernel spectrum was computed for {want}; freeze (export) the model again for the new image size"
        )


def image_shape(
    input_size: tuple[int, ...] | list[int] | int, in_chans: int | None = None
) -> tuple[tuple[int, int], int | None]:
    """``((H, W), channels)`` from ``H``, ``(H, W)`` or timm's ``(C, H, W)`` (``model.pretrained_cfg["input_size"]``);
    the channels are ``in_chans`` unless the size names them.

    Raises:
        ExportError: a size :func:`check_input_size` refuses, or a ``C`` that contradicts ``in_chans``.
    """
    if isinstance(input_size, (tuple, list)) and len(input_size) == 3:
        chans, *hw = input_size
        if in_chans is not None and in_chans != chans:
            raise ExportError(f"input size {tuple(input_size)} has {chans} channels, but in_chans={in_chans}")
        return check_input_size(tuple(hw)), int(chans)
    return check_input_size(input_size), in_chans


def check_input_size(input_size: tuple[int, int] | list[int] | int) -> tuple[int, int]:
    """``(H, W)`` from an int or a pair, checked against what the MetaFormer can take.

    Raises:
        ExportError: a size that is not one or two positive integers, or smaller than 32 pixels.
    """
    size = (input_size, input_size) if isinstance(input_size, int) else tuple(input_size)
    if len(size) != 2 or not all(isinstance(s, int) and not isinstance(s, bool) for s in size):
        raise ExportError(f"input size must be H or (H, W) in pixels, got {input_size!r}")
    if min(size) < MIN_INPUT_SIZE:
        raise ExportError(
            f"input size {size[0]}x{size[1]} is too small: the network downsamples by 32, so height and width must "
            f"be at least {MIN_INPUT_SIZE} pixels; export at {MIN_INPUT_SIZE} x {MIN_INPUT_SIZE} or more"
        )
    return size[0], size[1]


def _check_unknown_mixers(model: nn.Module) -> None:
    for name, module in model.named_modules():
        if isinstance(module, LONG_CONV_MIXERS) and type(module) not in FREEZABLE:
            raise ExportError(
                f"{name} is a {type(module).__name__}, a long-convolution mixer the exporter does not know; only "
                f"{', '.join(c.__name__ for c in FREEZABLE)} can be frozen for export"
            )


def _mixer_inputs(model: nn.Module, size: tuple[int, int], in_chans: int) -> list[tuple[nn.Module, torch.Size]]:
    """Every long-convolution mixer of ``model`` with the (B, H, W, C) input it sees for ``size`` images."""
    mixers = {n: m for n, m in model.named_modules() if isinstance(m, LONG_CONV_MIXERS)}
    try:
        shapes = module_inputs(model, mixers, size, in_chans)
    except (RuntimeError, ValueError, AssertionError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        raise ExportError(
            f"{type(model).__name__} cannot take {size[0]}x{size[1]} images ({first}); export at an image "
            "size the model accepts (for fixed-size models such as ViTs, their training size)"
        ) from None
    return [(m, shapes[n]) for n, m in mixers.items() if n in shapes]


def freeze_long_convs(
    model: nn.Module,
    input_size: tuple[int, ...] | int,
    in_chans: int | None = None,
    direct_max_pixels: int = DIRECT_MAX_PIXELS,
    per_image_min_pixels: int = 0,
    fold_mlps: bool = True,
) -> nn.Module:
    """An eval copy of ``model`` whose long convolutions are frozen for ``input_size``: DFT matrix products, and
    direct depthwise convolutions on HyenaPixel maps of at most ``direct_max_pixels`` pixels (0: never), in each
    mixer's ``frozen_conv``; each mixer's projections are split into q/k/v branches (``split_projections``). The
    long DFT-product convolutions of maps (or Hyena sequences) of at least ``per_image_min_pixels`` pixels are
    wrapped in :class:`PerImage` (0, the default: none), which runs them image by image in exported graphs
    (:func:`~hyenapixel.export.to_onnx` uses :data:`PER_IMAGE_MIN_PIXELS`). With ``fold_mlps`` (the default) the
    channel MLPs' StarReLUs are folded into their second layers (:meth:`~hyenapixel.layers.Mlp.fold_star_relu`).

    ``model`` itself is not changed. Models without long-convolution mixers (any other timm model) come back as a
    plain eval copy. The copy lives on ``model``'s device and is float32 whatever ``model``'s dtype (a float64 or
    bfloat16 model is frozen from its float32 copy), like its constants.

    Raises:
        ExportError: an input size the model cannot take, or a mixer the exporter does not know.

    Shape:
        the copy: (B, in_chans, H, W) with (H, W) = input_size -> as ``model``
    """
    (h, w), in_chans = image_shape(input_size, in_chans)
    _check_unknown_mixers(model)
    frozen = copy.deepcopy(model).eval().float()
    param = next(frozen.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    axes: dict[tuple, SequenceDFT | tuple[DFTAxis, DFTAxis]] = {}  # one set of DFT axes per stage geometry
    matrices: dict[tuple, dict[str, torch.Tensor]] = {}  # and of 2D DFT matrices, built where a DFT form uses them
    for mixer, shape in _mixer_inputs(frozen, (h, w), in_chans or input_channels(frozen)):
        pixels = shape[1] * shape[2]
        with torch.no_grad():
            if isinstance(mixer, HyenaPixelMixer):
                kernel = mixer.kernel()
                key = (shape[1], shape[2], *kernel.shape[1:])
                if key not in axes:
                    axes[key] = dft_axes2d(*key)
                rows, cols = axes[key]
                if pixels <= direct_max_pixels:
                    conv: nn.Module = FrozenDirectConv2d(kernel, rows, cols)
                else:
                    if key not in matrices:
                        matrices[key] = stage_matrices(rows, cols)
                    conv = FrozenConv2d(kernel, rows, cols, matrices[key])
            else:
                kernel = mixer.kernel(pixels)
                key = (pixels, kernel.shape[-1], mixer.causal)
                if key not in axes:
                    axes[key] = sequence_dft(*key, dtype=torch.float32)
                conv = FrozenConv1d(kernel, axes[key])
        if _scan is not None and 0 < per_image_min_pixels <= pixels and isinstance(conv, (FrozenConv2d, FrozenConv1d)):
            conv = PerImage(conv)
        mixer.frozen_conv = conv.to(device)
        mixer.split_projections()
    if fold_mlps:
        for module in frozen.modules():
            if isinstance(module, Mlp):
                module.fold_star_relu()
    return frozen


def mlps_as_convolutions(model: nn.Module) -> int:
    """Swap every channel MLP of ``model`` with a squared ReLU (those :meth:`~hyenapixel.layers.Mlp.fold_star_relu`
    folded) for its :class:`~hyenapixel.layers.PointwiseConvMlp` form, in place (the same parameters); returns how
    many."""
    count = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is Mlp and type(child.act) is SquaredReLU:
                setattr(parent, name, PointwiseConvMlp(child))
                count += 1
    return count
