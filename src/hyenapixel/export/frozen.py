"""Inference copies of HyenaPixel models with the long convolutions frozen for one input size (deployment of the
paper's Section 3 operators).

In eval the kernels of HyenaPixel and (bidirectional / causal) Hyena depend only on the weights and on the size of
the feature map. :func:`freeze_long_convs` therefore precomputes, for one input size, every kernel's spectrum
and the DFT matrices of its stage, and replaces each mixer's FFT convolution by the matrix products of
:mod:`hyenapixel.ops.dft` (real ``MatMul``/``Mul``/``Add`` only). The result computes the same function as the
original in eval (to float32 rounding), exports to ONNX without FFT or complex operators, and is specialised to
that spatial size; the batch size stays free.

Each frozen mixer becomes an instance of a subclass (:class:`FrozenHyenaPixelMixer`,
:class:`FrozenBidirectionalHyenaMixer`, :class:`FrozenCausalHyenaMixer`) whose ``long_conv`` calls the frozen
convolution. Every frozen mixer computes its three gated inputs in branches of a 1x1 and a depthwise convolution
(:func:`projection_branches`) instead of one 3C projection and a split; the HyenaPixel mixer's forward then stays
channels-last (the same function with fewer layout changes, see :class:`FrozenHyenaPixelMixer`). The StarReLU
of each channel MLP is folded into the MLP's second linear layer (:func:`fold_star_relu`); the ONNX export then
writes the folded MLPs as 1x1 convolutions (:class:`PointwiseConvMlp`, :func:`mlps_as_convolutions`).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from hyenapixel.errors import UserError
from hyenapixel.layers import Mlp, SquaredReLU, StarReLU
from hyenapixel.mixers import BidirectionalHyenaMixer, CausalHyenaMixer, HyenaPixelMixer
from hyenapixel.mixers.hyena import HyenaMixer1d
from hyenapixel.models.metaformer import MIN_INPUT_SIZE
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
    "ExportError",
    "FrozenBidirectionalHyenaMixer",
    "FrozenCausalHyenaMixer",
    "FrozenConv1d",
    "FrozenConv2d",
    "FrozenDirectConv2d",
    "FrozenHyenaPixelMixer",
    "PerImage",
    "PointwiseConvMlp",
    "check_input_size",
    "fold_star_relu",
    "freeze_long_convs",
    "mlps_as_convolutions",
    "projection_branches",
]

#: HyenaPixel maps of at most this many pixels are frozen as a direct convolution, larger ones as DFT products.
#: One long convolution in onnxruntime (``benchmarks/bench_onnx_longconv.py``, 2-core EPYC), DFT products vs direct,
#: batch 1 / 16: 7 x 7 (512 ch, kernel 13) 0.52 / 2.1 vs 0.44 / 1.3 ms; 14 x 14 (320 ch, kernel 27) 0.67 / 5.8 vs
#: 0.97 / 7.6 ms; 28 x 28 (128 ch, kernel 55) 0.95 / 13 vs 3.4 / 44 ms.
DIRECT_MAX_PIXELS = 7 * 7
#: :func:`~hyenapixel.export.to_onnx` runs the long convolutions of maps (2D) and sequences (1D) of at least this
#: many pixels image by image (:class:`PerImage`): stages 1-2 at 224 px. Whole S18 models in onnxruntime at batch 16,
#: 2-core EPYC (``benchmarks/bench_export.py``, docs/deploy.md): hpx 32.6-37.0 ms per image with it against
#: 36.7-38.5 without (four runs), hb 49.5 against 55.5; with the 14 x 14 maps of stage 3 as well, hpx 37.0 and hb
#: 50.0 against 35.9 and 49.3 (one run each). Batch 1 is unchanged.
PER_IMAGE_MIN_PIXELS = 28 * 28

try:  # torch's scan higher-order operator (exports to ONNX Scan)
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


def projection_branches(
    linear: nn.Linear, conv: nn.Conv1d | nn.Conv2d, dim: int
) -> tuple[nn.ModuleList, nn.ModuleList]:
    """A ``C -> 3C`` input projection and the depthwise convolution over its ``3C`` channels as one branch per q, k
    and v (x0, x1, v for Hyena): ``pointwise[i]`` a 1x1 convolution ``C -> C`` (the rows of the projection that make
    that part, with their bias), ``depthwise[i]`` a depthwise convolution over its ``C`` channels (same kernel size
    and padding). Applied to the channels-first map, branch ``i`` computes channels ``[i C, (i + 1) C)`` of
    ``conv(linear(x))``. 1D or 2D after ``conv``.

    onnxruntime runs a branch's two convolutions with the bias fused (in its blocked layout for 2D) and needs no
    split of a 3C tensor; see docs/deploy.md.
    """
    conv_cls = nn.Conv2d if conv.weight.dim() == 4 else nn.Conv1d
    ones = (1,) * (conv.weight.dim() - 2)
    pointwise, depthwise = nn.ModuleList(), nn.ModuleList()
    for i in range(3):
        part = slice(i * dim, (i + 1) * dim)
        pw = conv_cls(dim, dim, 1, bias=linear.bias is not None).to(linear.weight)
        dw = conv_cls(dim, dim, conv.kernel_size, padding=conv.padding, groups=dim, bias=conv.bias is not None)
        dw = dw.to(conv.weight)
        with torch.no_grad():
            pw.weight.copy_(linear.weight[part].reshape(dim, dim, *ones))
            dw.weight.copy_(conv.weight[part])
            for module, bias in ((pw, linear.bias), (dw, conv.bias)):
                if bias is not None:
                    module.bias.copy_(bias[part])
        pointwise.append(pw.eval())
        depthwise.append(dw.eval())
    return pointwise, depthwise


class _FrozenProjections:
    """Mixin: :meth:`split_projections` turns ``in_proj``/``short_conv`` into the q/k/v branches of
    :func:`projection_branches` (called by :func:`freeze_long_convs`)."""

    dim: int
    in_proj: nn.Module
    short_conv: nn.Module

    def split_projections(self) -> None:
        """Replace ``in_proj`` and ``short_conv`` by three branches (``nn.ModuleList`` each); same function."""
        self.in_proj, self.short_conv = projection_branches(self.in_proj, self.short_conv, self.dim)


class _FrozenLongConv(_FrozenProjections):
    """Mixin for the 1D mixers: ``long_conv`` applies the precomputed ``frozen_conv`` instead of the FFT
    convolution, and ``projections`` runs the q/k/v branches."""

    frozen_conv: nn.Module

    def long_conv(self, u: torch.Tensor) -> torch.Tensor:
        return self.frozen_conv(u)

    def projections(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """As :meth:`~hyenapixel.mixers.hyena.HyenaMixer1d.projections`, from the branches.

        Shape:
            (B, H, W, C) -> three (B, C, H * W)
        """
        B, H, W, C = x.shape
        L = H * W
        x = x.reshape(B, L, C).transpose(1, 2)
        return tuple(dw(pw(x))[..., :L] for pw, dw in zip(self.in_proj, self.short_conv))


class FrozenHyenaPixelMixer(_FrozenProjections, HyenaPixelMixer):
    """A :class:`~hyenapixel.mixers.HyenaPixelMixer` whose long convolution is frozen for one map size.

    The forward computes the mixer's function in the layout that deploys best:

    * the input projection and the 5 x 5 depthwise convolution run as three branches, one for each of q, k and v
      (:func:`projection_branches`): a 1x1 convolution with its bias and the branch's depthwise convolution,
      channels-first. onnxruntime runs both convolutions of a branch in its blocked layout with the bias fused, and
      q * k without a layout change; the single 3C projection needed a separate bias addition, a layout change of
      3C channels and a split (7 % of the exported S18 model's time, docs/deploy.md);
    * every step after the branches runs on the channels-last map: the frozen convolution works channels-last,
      which gives large matrix products.

    Shape:
        (B, H, W, C) -> (B, H, W, C)
    """

    frozen_conv: nn.Module
    in_proj: nn.ModuleList  # type: ignore[assignment] - the q, k, v 1x1 convolutions after split_projections
    short_conv: nn.ModuleList  # type: ignore[assignment] - their depthwise convolutions

    def long_conv(self, u: torch.Tensor) -> torch.Tensor:
        """The frozen long convolution on a channels-first map, as :meth:`HyenaPixelMixer.long_conv`.

        Shape:
            (B, C, H, W) -> (B, C, H, W)
        """
        return self.frozen_conv(u.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 3, 1, 2)
        q, k, v = (dw(pw(x)).permute(0, 2, 3, 1) for pw, dw in zip(self.in_proj, self.short_conv))  # (B, H, W, C)
        y = v * self.frozen_conv(self.qk_norm(q * k))
        return self.drop(self.out_proj(self.out_norm(y)))


class FrozenBidirectionalHyenaMixer(_FrozenLongConv, BidirectionalHyenaMixer):
    """A :class:`~hyenapixel.mixers.BidirectionalHyenaMixer` frozen for one sequence length."""


class FrozenCausalHyenaMixer(_FrozenLongConv, CausalHyenaMixer):
    """A :class:`~hyenapixel.mixers.CausalHyenaMixer` frozen for one sequence length."""


_FROZEN_CLASSES: dict[type, type] = {
    HyenaPixelMixer: FrozenHyenaPixelMixer,
    BidirectionalHyenaMixer: FrozenBidirectionalHyenaMixer,
    CausalHyenaMixer: FrozenCausalHyenaMixer,
}
LONG_CONV_MIXERS = (HyenaPixelMixer, HyenaMixer1d)


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


@dataclass(frozen=True)
class _MixerSite:
    name: str
    mixer: nn.Module
    shape: tuple[int, ...]  # (B, H, W, C) input of the mixer


def _mixer_sites(model: nn.Module, x: torch.Tensor) -> list[_MixerSite]:
    """Every long-convolution mixer of ``model`` with the input shape it sees for ``x`` (one eval forward)."""
    mixers = [(n, m) for n, m in model.named_modules() if isinstance(m, LONG_CONV_MIXERS)]
    shapes: dict[str, tuple[int, ...]] = {}

    def hook(name: str) -> Callable:
        def record(module: nn.Module, args: tuple) -> None:
            shapes.setdefault(name, tuple(args[0].shape))

        return record

    handles = [m.register_forward_pre_hook(hook(n)) for n, m in mixers]
    try:
        with torch.no_grad():
            model(x)
    except (RuntimeError, ValueError, AssertionError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        raise ExportError(
            f"{type(model).__name__} cannot take {x.shape[-2]}x{x.shape[-1]} images ({first}); export at an image "
            "size the model accepts (for fixed-size models such as ViTs, their training size)"
        ) from None
    finally:
        for h in handles:
            h.remove()
    return [_MixerSite(n, m, shapes[n]) for n, m in mixers if n in shapes]


def _check_unknown_mixers(model: nn.Module) -> None:
    for name, module in model.named_modules():
        if isinstance(module, LONG_CONV_MIXERS) and type(module) not in _FROZEN_CLASSES:
            raise ExportError(
                f"{name} is a {type(module).__name__}, a long-convolution mixer the exporter does not know; only "
                f"{', '.join(c.__name__ for c in _FROZEN_CLASSES)} can be frozen for export"
            )


def freeze_long_convs(
    model: nn.Module,
    input_size: tuple[int, int] | int,
    in_chans: int | None = None,
    direct_max_pixels: int = DIRECT_MAX_PIXELS,
    per_image_min_pixels: int = 0,
    fold_mlps: bool = True,
) -> nn.Module:
    """An eval copy of ``model`` whose long convolutions are frozen for ``input_size``: DFT matrix products, and
    direct depthwise convolutions on HyenaPixel maps of at most ``direct_max_pixels`` pixels (0: never). The long
    DFT-product convolutions of maps (or Hyena sequences) of at least ``per_image_min_pixels`` pixels are
    wrapped in :class:`PerImage` (0, the default: none), which runs them image by image in exported graphs
    (:func:`~hyenapixel.export.to_onnx` uses :data:`PER_IMAGE_MIN_PIXELS`). With ``fold_mlps`` (the default) the
    channel MLPs' StarReLUs are folded into their second layers (:func:`fold_star_relu`).

    ``model`` itself is not changed. Models without long-convolution mixers (any other timm model) come back as a
    plain eval copy. The copy lives on ``model``'s device and is float32 whatever ``model``'s dtype (a float64 or
    bfloat16 model is frozen from its float32 copy), like its constants.

    Raises:
        ExportError: an input size the model cannot take, or a mixer the exporter does not know.

    Shape:
        the copy: (B, in_chans, H, W) with (H, W) = input_size -> as ``model``
    """
    h, w = check_input_size(input_size)
    _check_unknown_mixers(model)
    frozen = copy.deepcopy(model).eval().float()
    param = next(frozen.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    chans = in_chans or _in_chans(frozen)
    sites = _mixer_sites(frozen, torch.zeros(1, chans, h, w, device=device))
    axes: dict[tuple, SequenceDFT | tuple[DFTAxis, DFTAxis]] = {}  # one set of DFT axes per stage geometry
    matrices: dict[tuple, dict[str, torch.Tensor]] = {}  # and of 2D DFT matrices, built where a DFT form uses them
    for site in sites:
        mixer = site.mixer
        with torch.no_grad():
            if isinstance(mixer, HyenaPixelMixer):
                kernel = mixer.kernel()
                key = (site.shape[1], site.shape[2], *kernel.shape[1:])
                if key not in axes:
                    axes[key] = dft_axes2d(*key)
                rows, cols = axes[key]
                if site.shape[1] * site.shape[2] <= direct_max_pixels:
                    conv: nn.Module = FrozenDirectConv2d(kernel, rows, cols)
                else:
                    if key not in matrices:
                        matrices[key] = stage_matrices(rows, cols)
                    conv = FrozenConv2d(kernel, rows, cols, matrices[key])
            else:
                length = site.shape[1] * site.shape[2]
                kernel = mixer.kernel(length)
                key = (length, kernel.shape[-1], mixer.causal)
                if key not in axes:
                    axes[key] = sequence_dft(*key, dtype=torch.float32)
                conv = FrozenConv1d(kernel, axes[key])
        large = 0 < per_image_min_pixels <= site.shape[1] * site.shape[2]
        if _scan is not None and large and isinstance(conv, (FrozenConv2d, FrozenConv1d)):
            conv = PerImage(conv)
        mixer.__class__ = _FROZEN_CLASSES[type(mixer)]
        mixer.frozen_conv = conv.to(device)
        mixer.split_projections()
    if fold_mlps:
        for module in frozen.modules():
            if isinstance(module, Mlp):
                fold_star_relu(module)
    return frozen


def fold_star_relu(mlp: Mlp) -> None:
    """Fold the StarReLU ``s * relu(h) ** 2 + b`` of a MetaFormer channel MLP into its second layer, in place:
    ``W2 (s r + b 1) = (s W2) r + b W2 1`` with ``r = relu(h) ** 2``, so ``fc2`` gets the weight ``s W2`` and the
    bias ``b W2 1`` and the activation becomes a plain squared ReLU. The same function to float32 rounding, without
    the scale and shift passes over the hidden map (four times the channels), which onnxruntime keeps for trained
    weights (it drops them only for the initial ``s = 1, b = 0``). An MLP with another activation is left as it is.

    Shape:
        the MLP: (..., C) -> (..., C), unchanged
    """
    if type(mlp.act) is not StarReLU:
        return
    with torch.no_grad():
        scale, shift, weight = mlp.act.scale, mlp.act.bias, mlp.fc2.weight
        bias = shift * weight.sum(1)
        if mlp.fc2.bias is not None:
            bias = bias + mlp.fc2.bias
        mlp.fc2.weight = nn.Parameter(weight * scale, requires_grad=weight.requires_grad)
        mlp.fc2.bias = nn.Parameter(bias, requires_grad=weight.requires_grad)
    mlp.act = SquaredReLU()


class PointwiseConvMlp(Mlp):
    """A channel MLP with a squared ReLU (a folded one, :func:`fold_star_relu`) whose two layers run as 1x1
    convolutions on the channels-first view of its (B, H, W, C) map, the square written as a product; other inputs
    and activations go through :meth:`Mlp.forward`. The same function to float32 rounding. In onnxruntime the two
    convolutions run in its blocked (NCHWc) layout with the ReLU fused into the first: about 2 % of the exported
    S18 model's time at batch 1 and 16 against the two ``MatMul`` of the channels-last map (docs/deploy.md).

    Shape:
        (B, H, W, C) -> (B, H, W, C); other shapes (..., C) as :class:`Mlp`
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or type(self.act) is not SquaredReLU:
            return super().forward(x)
        h = F.relu(F.conv2d(x.permute(0, 3, 1, 2), self.fc1.weight[:, :, None, None], self.fc1.bias))
        y = F.conv2d(self.drop1(h * h), self.fc2.weight[:, :, None, None], self.fc2.bias)
        return self.drop2(y.permute(0, 2, 3, 1))


def mlps_as_convolutions(model: nn.Module) -> int:
    """Turn every channel MLP of ``model`` with a squared ReLU (those :func:`fold_star_relu` folded) into a
    :class:`PointwiseConvMlp`, in place (the parameters stay the same); returns how many."""
    count = 0
    for module in model.modules():
        if type(module) is Mlp and type(module.act) is SquaredReLU:
            module.__class__ = PointwiseConvMlp
            count += 1
    return count


def _in_chans(model: nn.Module) -> int:
    """Input channels: those of the first 2D convolution (the stem), else the pretrained config's."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            return m.in_channels
    cfg = getattr(model, "pretrained_cfg", None) or {}
    return int(cfg.get("input_size", (3,))[0])
