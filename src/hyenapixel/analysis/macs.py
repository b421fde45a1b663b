"""Parameters and multiply-accumulates (paper Table 1, "MACs are calculated using fvcore").

fvcore counts one MAC per multiply-add of convolutions, linear layers and matrix products and has no rule for
FFTs or fused attention. As in the official HyenaPixel code, every FFT counts
``output elements * log2(product of the output's sizes along the transformed dimensions)``; this applies to each
real and complex, forward and inverse transform (1D, 2D and n-D). ``scaled_dot_product_attention`` counts its two
matrix products, ``B * heads * L_q * L_k * (E_qk + E_v)``, which is what fvcore counts for attention written as
two ``matmul`` calls.

Two modes (:class:`MacsMode`):

* ``paper``: the filters' kernels are generated inside the forward, as in a training step and as Table 1 counts
  (filter MLP, kernel FFT, input FFT, product, inverse FFT).
* ``inference``: the kernel-spectrum cache is filled first, so the filter MLPs and kernel FFTs are not run.

Our FFT convolutions transform one axis at a time and pad only as far as a linear convolution needs, so their FFT
counts are smaller than the official ones (see ``docs/analysis.md`` for the figures).
"""

from __future__ import annotations

import enum
import math
import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from hyenapixel.analysis.report import check_image_size
from hyenapixel.errors import UserError
from hyenapixel.mixers import SpectrumCache
from hyenapixel.models import model_name
from hyenapixel.ops import FFTConv

__all__ = ["OFFICIAL_GMACS_224", "MacsMode", "MacsResult", "count_macs", "fft_macs", "plot_macs"]

#: Totals of the official code (its ``macs.py``, fvcore) at 224 x 224, in GMACs, as quoted in issue 8.
OFFICIAL_GMACS_224: dict[str, float] = {
    "hpx_former_s18": 4.92,
    "hb_former_s18": 4.44,
    "c_hpx_former_s18": 4.33,
    "hpx_a_former_s18": 4.70,
    "convformer_s18": 3.96,
}

_FFT_1D = ("fft_rfft", "fft_irfft", "fft_fft", "fft_ifft", "fft_hfft", "fft_ihfft")
_FFT_2D = ("fft_rfft2", "fft_irfft2", "fft_fft2", "fft_ifft2")
_FFT_ND = ("fft_rfftn", "fft_irfftn", "fft_fftn", "fft_ifftn")


class MacsMode(str, enum.Enum):
    """What a forward computes for the long-convolution filters while it is counted."""

    PAPER = "paper"
    """Kernels generated in the forward (filter MLPs and kernel FFTs counted), as in training and Table 1."""
    INFERENCE = "inference"
    """Kernel spectra taken from the filled eval cache (filter MLPs and kernel FFTs not run)."""


@dataclass
class MacsResult:
    """MAC count of one model at one input size.

    Attributes:
        model: the model's name.
        input_shape: (C, H, W) of the single counted image.
        mode: ``paper`` or ``inference`` (see :class:`MacsMode`).
        params: number of parameters.
        macs: total multiply-accumulates.
        by_operator: MACs per operator kind (fvcore names; ``fft_*`` for the transforms, ``attention`` for
            fused attention).
        by_stage: MACs of the stem, each stage (the model's ``feature_info`` modules) and ``other`` (head, norms).
        uncounted: operators fvcore saw but has no rule for (elementwise ops), with their number of calls.
    """

    model: str
    input_shape: tuple[int, int, int]
    mode: str
    params: int
    macs: float
    by_operator: dict[str, float] = field(default_factory=dict)
    by_stage: dict[str, float] = field(default_factory=dict)
    uncounted: dict[str, int] = field(default_factory=dict)

    @property
    def fft_macs(self) -> float:
        """MACs of all FFTs."""
        return float(sum(v for k, v in self.by_operator.items() if k.startswith("fft")))

    @property
    def official_gmacs(self) -> float | None:
        """The official code's figure for this model (224 px, paper mode only), if issue 8 quotes one."""
        if self.mode != MacsMode.PAPER.value or self.input_shape[1:] != (224, 224):
            return None
        return OFFICIAL_GMACS_224.get(self.model)


def fft_macs(output_shape: Sequence[int], dims: Sequence[int]) -> float:
    """The FFT rule: ``prod(output_shape) * log2(prod(output_shape[d] for d in dims))``."""
    sizes = [int(output_shape[d]) for d in dims]
    return float(math.prod(int(s) for s in output_shape) * math.log2(max(math.prod(sizes), 1)))


def _shape(value: Any) -> list[int]:
    from fvcore.nn.jit_handles import get_shape

    return list(get_shape(value))


def _fft_handle(default_dims: int | None):
    """fvcore handle for ``aten::fft_*``: the transformed dims come from the ``dim`` argument (third input)."""

    def handle(inputs: list, outputs: list) -> Counter:
        out = _shape(outputs[0])
        nd = len(out)
        dim = inputs[2].toIValue() if len(inputs) > 2 else None
        if dim is None:
            if default_dims is not None:
                dims = list(range(nd - default_dims, nd))
            else:  # n-D transform without dim: the last len(s) dims, or all of them
                s = inputs[1].toIValue() if len(inputs) > 1 else None
                dims = list(range(nd - len(s), nd)) if s is not None else list(range(nd))
        else:
            dims = [dim] if isinstance(dim, int) else list(dim)
        dims = [d % nd for d in dims]
        return Counter({"fft": fft_macs(out, dims)})

    return handle


def _sdpa_handle(inputs: list, outputs: list) -> Counter:
    """``scaled_dot_product_attention(q, k, v)``: q @ k^T and attn @ v."""
    q, k, v = (_shape(inputs[i]) for i in range(3))
    batch = math.prod(q[:-2])
    return Counter({"attention": float(batch * q[-2] * k[-2] * (q[-1] + v[-1]))})


def _fftconv_function_handle(inputs: list, outputs: list) -> Counter:
    """:class:`~hyenapixel.ops.FFTConv` (a differentiable :func:`~hyenapixel.ops.fftconv2d` / ``fftconv1d`` call,
    traced as one Python op): the forward's transforms, assuming a centered kernel (exact for the 2D and
    bidirectional ops)."""
    from hyenapixel.ops import next_fast_len

    x, k = _shape(inputs[0]), _shape(inputs[1])
    nd = len(k) - 1
    lengths, taps = x[-nd:], k[1:]
    ffts = [next_fast_len(n + t // 2, even=i == nd - 1) for i, (n, t) in enumerate(zip(lengths, taps))]
    lead = x[:-nd]
    total = 0.0
    for shape, spatial in ((lead, lengths), ([k[0]], taps)):  # forward transforms of the input and of the kernel
        cur = list(spatial)
        cur[-1] = ffts[-1] // 2 + 1
        total += fft_macs(shape + cur, [len(shape) + nd - 1])
        for i in range(nd - 2, -1, -1):
            cur[i] = ffts[i]
            total += fft_macs(shape + cur, [len(shape) + i])
    cur = ffts[:-1] + [ffts[-1] // 2 + 1]  # inverse: complex axes (cropped after each), then the real one
    for i in range(nd - 1):
        total += fft_macs(lead + cur, [len(lead) + i])
        cur[i] = lengths[i]
    total += fft_macs(lead + cur[:-1] + [ffts[-1]], [len(lead) + nd - 1])
    return Counter({"fft": total})


def _addmm_handle(inputs: list, outputs: list) -> Counter:
    """``addmm(bias, a, b)``: a linear layer with its bias as one product, ``M * N * K``, counted as ``linear``.
    Traced models meet it in the implicit filters' MLP (its hidden layers, each bias folded in; see
    :func:`~hyenapixel.ops.implicit_kernel`), which a graph trace gets in plain operations."""
    a, b = _shape(inputs[1]), _shape(inputs[2])
    return Counter({"linear": float(a[0] * a[1] * b[1])})


def _handles() -> dict[str, Any]:
    handles: dict[str, Any] = {f"aten::{n}": _fft_handle(1) for n in _FFT_1D}
    handles.update({f"aten::{n}": _fft_handle(2) for n in _FFT_2D})
    handles.update({f"aten::{n}": _fft_handle(None) for n in _FFT_ND})
    handles["aten::scaled_dot_product_attention"] = _sdpa_handle
    handles[f"prim::PythonOp.{FFTConv.__name__}"] = _fftconv_function_handle
    handles["aten::addmm"] = _addmm_handle
    return handles


def _caches(model: nn.Module) -> list[SpectrumCache]:
    return [m.spectrum_cache for m in model.modules() if isinstance(getattr(m, "spectrum_cache", None), SpectrumCache)]


def _stage_modules(model: nn.Module) -> list[str]:
    names = dict(model.named_modules())
    stages = []
    info = getattr(model, "feature_info", None)
    if isinstance(info, Sequence):
        stages = [i["module"] for i in info if isinstance(i, dict) and i.get("module") in names]
    elif info is not None and hasattr(info, "module_name"):
        stages = [n for n in info.module_name() if n in names]
    return (["stem"] if "stem" in names and "stem" not in stages else []) + stages


def count_macs(
    model: nn.Module,
    input_shape: Sequence[int] = (3, 224, 224),
    *,
    mode: MacsMode | str = MacsMode.PAPER,
    name: str | None = None,
) -> MacsResult:
    """Count the parameters and MACs of ``model`` on one image of ``input_shape`` with fvcore.

    The model is traced in eval mode under ``torch.no_grad`` (its train/eval state is restored afterwards).
    Raises :class:`~hyenapixel.errors.UserError` if fvcore is missing or the model cannot take the size.

    Shape:
        input_shape: (C, H, W)
    """
    mode = MacsMode(mode)
    if len(input_shape) != 3:
        raise UserError(f"input shape must be (channels, height, width), got {tuple(input_shape)}")
    c, h, w = (int(s) for s in input_shape)
    chans = getattr(model, "in_chans", None)
    if isinstance(chans, int) and chans != c:
        raise UserError(f"the model takes {chans} input channels, the input shape {tuple(input_shape)} has {c}")
    check_image_size(model, (h, w))
    try:
        with warnings.catch_warnings():  # fvcore scripts a helper at import, which torch >= 2.10 calls deprecated
            warnings.simplefilter("ignore", FutureWarning)
            from fvcore.nn import FlopCountAnalysis
    except ImportError as exc:
        raise UserError("counting MACs needs fvcore: pip install 'hyenapixel[analysis]'") from exc
    param = next(model.parameters(), None)
    x = torch.zeros(1, c, h, w, device=param.device if param is not None else None)
    was_training = model.training
    model.eval()
    caches = _caches(model)
    states = [cache.enabled for cache in caches]
    try:
        with torch.no_grad():
            for cache in caches:
                cache.enabled = True
                cache.clear()
            if mode is MacsMode.INFERENCE and caches:
                model(x)  # fills every mixer's spectrum cache for this size
            analysis = FlopCountAnalysis(model, x).set_op_handle(**_handles())
            analysis.unsupported_ops_warnings(False)
            analysis.uncalled_modules_warnings(False)
            analysis.tracer_warnings("none")
            with warnings.catch_warnings():  # torch.jit.trace is deprecated in torch >= 2.10 but still works
                warnings.simplefilter("ignore", FutureWarning)
                total = float(analysis.total())
            by_operator = {k: float(v) for k, v in analysis.by_operator().items() if v}
            by_module = analysis.by_module()
            uncounted = dict(analysis.unsupported_ops())
    finally:
        for cache, enabled in zip(caches, states):
            cache.clear()
            cache.enabled = enabled
        model.train(was_training)
    by_stage = {s: float(by_module.get(s, 0)) for s in _stage_modules(model)}
    by_stage["other"] = total - sum(by_stage.values())
    return MacsResult(
        model=name or model_name(model),
        input_shape=(c, h, w),
        mode=mode.value,
        params=sum(p.numel() for p in model.parameters()),
        macs=total,
        by_operator=by_operator,
        by_stage=by_stage,
        uncounted=uncounted,
    )


def _group(op: str) -> str:
    if op.startswith("fft"):
        return "FFT"
    return {"linear": "linear", "conv": "conv", "mm": "matmul", "matmul": "matmul", "bmm": "matmul"}.get(
        op, "attention" if op == "attention" else "other"
    )


def plot_macs(results: Sequence[MacsResult]) -> Any:
    """One panel per input size and mode; in each, a stacked bar per model split into operator groups (linear,
    conv, matmul, FFT, attention, other), the total on top and the official figure (224 px, paper mode) dashed.

    Returns a matplotlib ``Figure``.
    """
    from matplotlib.figure import Figure

    groups = ["linear", "conv", "matmul", "FFT", "attention", "other"]
    colors = dict(zip(groups, ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:gray"]))
    panels: dict[tuple, list[MacsResult]] = {}
    for r in results:
        panels.setdefault((r.input_shape[1], r.input_shape[2], r.mode), []).append(r)
    sizes = list(dict.fromkeys(k[:2] for k in panels))
    modes = list(dict.fromkeys(k[2] for k in panels))
    width = max(len(v) for v in panels.values()) if panels else 1
    fig = Figure(figsize=(max(4.5, 0.75 * width + 1.5) * len(modes), 3.6 * len(sizes)), dpi=110, layout="constrained")
    axes = fig.subplots(len(sizes), len(modes), squeeze=False)
    for (h, w, mode), rs in panels.items():
        ax = axes[sizes.index((h, w)), modes.index(mode)]
        bottom = [0.0] * len(rs)
        for g in groups:
            vals = [sum(v for k, v in r.by_operator.items() if _group(k) == g) / 1e9 for r in rs]
            if any(vals):
                ax.bar(range(len(rs)), vals, bottom=bottom, label=g, color=colors[g])
                bottom = [b + v for b, v in zip(bottom, vals)]
        for i, r in enumerate(rs):
            ax.text(i, bottom[i], f"{r.macs / 1e9:.2f}", ha="center", va="bottom", fontsize=7)
            if r.official_gmacs is not None:
                ax.plot([i - 0.4, i + 0.4], [r.official_gmacs] * 2, "k--", lw=1)
        ax.set_xticks(range(len(rs)), [r.model for r in rs], fontsize=7, rotation=30, ha="right")
        ax.set_ylabel("GMACs (fvcore)")
        official = " (dashed: official)" if any(r.official_gmacs for r in rs) else ""
        ax.set_title(f"{h}x{w} px, {mode} mode{official}", fontsize=9)
        ax.legend(fontsize=6)
    return fig
