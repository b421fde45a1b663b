"""Runtime scaling of token mixers against resolution (paper Fig. 2) and whole-model throughput.

Mixer mode (Fig. 2): every mixer runs at the stage-1 shape of the S18 models: a ``size`` x ``size`` image patched
with patch size 4 gives a (size/4) x (size/4) token map with 64 channels. Compared are attention
(``scaled_dot_product_attention`` with qkv and output projections, head dim 32), H_b (bidirectional Hyena, filter
length 2L - 1), H_px (HyenaPixel, kernel 2 * (size/4) - 1 so every token sees the whole map), H_px SC (the same with
the separable ablation kernel, still applied as one 2D FFT convolution) and a 7x7 depthwise convolution (the local
reference). Each series (mixer x forward / forward+backward) grows the resolution until one call exceeds the time or
the memory budget, then stops on its own.

Forward is inference (eval, ``torch.inference_mode``: the Hyena mixers use their cached kernel spectra);
forward+backward is a training step on the mixer (filters regenerated, gradients for the input and every parameter).
Times are medians over interleaved repeats (every series of one resolution takes its turn in each round, so load
changes on a shared machine hit all of them alike); times and peak memory come from
:mod:`hyenapixel.analysis.measure`, the helper the scripts in ``benchmarks/`` use too.
"""

from __future__ import annotations

import gc
import statistics
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import nn

from hyenapixel.analysis.measure import device_clock, interleaved_times, peak_memory
from hyenapixel.errors import UserError
from hyenapixel.filters import SeparableFilter2d
from hyenapixel.layers import Attention
from hyenapixel.models.families import hb_mixer, hpx_mixer

__all__ = [
    "BENCH_MIXERS",
    "DEFAULT_SIZES",
    "MixerBench",
    "MixerPoint",
    "ModelBench",
    "ModelPoint",
    "bench_mixers",
    "bench_models",
    "device_name",
    "plot_bench",
    "plot_bench_models",
]

PATCH = 4  # stage-1 downsampling of the MetaFormers
STAGE1_DIM = 64  # stage-1 width of the S18 models
#: Image sizes of the mixer mode (about sqrt(2) apart: each step doubles the tokens).
DEFAULT_SIZES = (224, 320, 448, 640, 896, 1280, 1792, 2560, 3584)
MODES = ("forward", "forward_backward")


class DepthwiseConv7(nn.Module):
    """The local reference: a 7x7 depthwise convolution on a channels-last map.

    Shape:
        (B, H, W, C) -> (B, H, W, C)
    """

    def __init__(self, dim: int, kernel_size: int = 7) -> None:
        super().__init__()
        self.conv = nn.Conv2d(dim, dim, kernel_size, padding=kernel_size // 2, groups=dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)


MixerBuilder = Callable[[int, int], nn.Module]


def _attention(dim: int, side: int) -> nn.Module:
    return Attention(dim)


def _hb(dim: int, side: int) -> nn.Module:
    return hb_mixer(0, norm=True)(dim, seq_len=side * side)


def _hpx(dim: int, side: int, **kwargs: Any) -> nn.Module:
    return hpx_mixer(0, norm=True)(dim, kernel_size=2 * side - 1, **kwargs)


#: name -> builder(dim, token side): the mixers of Fig. 2 at a token map of side x side.
BENCH_MIXERS: dict[str, MixerBuilder] = {
    "attention": _attention,
    "H_b": _hb,
    "H_px": _hpx,
    "H_px SC": partial(_hpx, filter_layer=SeparableFilter2d),
    "dwconv7x7": lambda dim, side: DepthwiseConv7(dim),
}


def device_name(device: torch.device | str) -> str:
    """``"CUDA: <GPU name>"`` or ``"CPU: <processor> (<n> threads)"``."""
    device = torch.device(device)
    if device.type == "cuda":
        return f"CUDA: {torch.cuda.get_device_name(device)}"
    cpu = "CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    n = torch.get_num_threads()
    return f"CPU: {cpu} ({n} thread{'' if n == 1 else 's'})"


@dataclass
class MixerPoint:
    """One measurement of the mixer mode: median seconds and peak extra memory of one call."""

    mixer: str
    mode: str
    size: int
    tokens: int
    seconds: float
    min_seconds: float
    memory_bytes: float
    over_budget: str = ""


@dataclass
class MixerBench:
    """The mixer-mode series; ``stopped[mixer][mode]`` says why a series ended."""

    device: str
    dim: int
    batch_size: int
    time_budget_s: float
    memory_budget_bytes: float
    memory_method: str
    points: list[MixerPoint] = field(default_factory=list)
    stopped: dict[str, dict[str, str]] = field(default_factory=dict)

    def series(self, mixer: str, mode: str) -> list[MixerPoint]:
        """The points of one series, by increasing size."""
        return sorted((p for p in self.points if p.mixer == mixer and p.mode == mode), key=lambda p: p.size)

    def to_csv(self) -> str:
        """All points as CSV (one header line)."""
        lines = ["mixer,mode,size,tokens,seconds,min_seconds,memory_bytes,over_budget"]
        lines += [
            f"{p.mixer},{p.mode},{p.size},{p.tokens},{p.seconds:.6g},{p.min_seconds:.6g},{p.memory_bytes:.6g},"
            f"{p.over_budget}"
            for p in sorted(self.points, key=lambda p: (p.mixer, p.mode, p.size))
        ]
        return "\n".join(lines) + "\n"


class _Runner:
    """Builds one mixer at one size and provides its forward and forward+backward calls."""

    def __init__(self, builder: MixerBuilder, dim: int, side: int, batch: int, device: torch.device) -> None:
        gen = torch.Generator().manual_seed(0)
        self.module = builder(dim, side).to(device)
        self.x = torch.randn(batch, side, side, dim, generator=gen).to(device)
        self.grad = torch.randn(batch, side, side, dim, generator=gen).to(device)

    def forward(self) -> None:
        self.module.eval()
        with torch.inference_mode():
            self.module(self.x)

    def forward_backward(self) -> None:
        self.module.train()
        self.module.zero_grad(set_to_none=True)
        x = self.x.detach().requires_grad_(True)
        self.module(x).backward(self.grad)


def _check_repeats(repeats: int) -> None:
    if repeats < 1:
        raise UserError(f"repeats must be at least 1, got {repeats}")


def _check_sizes(sizes: Sequence[int], multiple: int) -> list[int]:
    sizes = sorted(set(int(s) for s in sizes))
    bad = [s for s in sizes if s < multiple or s % multiple]
    if not sizes or bad:
        raise UserError(f"sizes must be positive multiples of {multiple} px, got {bad or 'none'}")
    return sizes


def bench_mixers(
    mixers: Iterable[str] | None = None,
    sizes: Sequence[int] = DEFAULT_SIZES,
    *,
    device: torch.device | str = "cpu",
    dim: int = STAGE1_DIM,
    batch_size: int = 1,
    repeats: int = 5,
    time_budget_s: float = 1.0,
    memory_budget_gib: float = 2.0,
    modes: Sequence[str] = MODES,
    builders: Mapping[str, MixerBuilder] = BENCH_MIXERS,
    progress: Callable[[str], None] | None = None,
) -> MixerBench:
    """Fig. 2: time and peak memory of each mixer against image size at the stage-1 shape.

    Each (mixer, mode) series runs the sizes in increasing order; a size whose call takes longer than
    ``time_budget_s`` (median) or more than ``memory_budget_gib`` extra memory is recorded with ``over_budget`` set
    and ends that series (time: the fastest of the ``repeats`` calls, so load from other processes does not end a
    series early; the median is reported). ``progress`` is called with a short text before every size.
    """
    names = list(builders) if mixers is None else list(mixers)
    unknown = [n for n in names if n not in builders]
    if unknown or not names:
        raise UserError(f"unknown mixer(s) {unknown or names}; choose from {', '.join(builders)}")
    bad_modes = [m for m in modes if m not in MODES]
    if bad_modes or not modes:
        raise UserError(f"unknown mode(s) {bad_modes or list(modes)}; choose from {', '.join(MODES)}")
    if time_budget_s <= 0 or memory_budget_gib <= 0 or batch_size < 1:
        raise UserError("time and memory budgets must be positive and the batch size at least 1")
    _check_repeats(repeats)
    device = torch.device(device)
    sizes = _check_sizes(sizes, PATCH)
    memory_budget = memory_budget_gib * 2**30
    method = (
        "torch.cuda.max_memory_allocated above the allocation before the call"
        if device.type == "cuda"
        else "peak resident set (VmHWM after clear_refs) above the resident set before the call, in-process"
    )
    result = MixerBench(device_name(device), dim, batch_size, time_budget_s, memory_budget, method)
    active = {(n, m) for n in names for m in modes}
    for size in sizes:
        if not active:
            break
        side = size // PATCH
        if progress is not None:
            progress(f"{size} px: {len(active)} series")
        runners, calls, memory = {}, {}, {}
        for name in names:
            series = [(name, m) for m in modes if (name, m) in active]
            if not series:
                continue
            torch.manual_seed(0)
            runners[name] = _Runner(builders[name], dim, side, batch_size, device)
            for key in series:
                fn = getattr(runners[name], key[1])
                fn()  # warm-up: kernels built, spectra cached, one-time library set-up
                memory[key] = peak_memory(fn, device)
                calls[key] = fn
        times = interleaved_times(calls, 0, repeats, device_clock(device))
        for key, samples in times.items():
            seconds, fastest = statistics.median(samples), min(samples)
            reasons = []
            if fastest > time_budget_s:  # the fastest call: a busy machine must not end a series early
                reasons.append(f"time {fastest:.3g} s > {time_budget_s:g} s")
            if memory[key] > memory_budget:
                reasons.append(f"memory {memory[key] / 2**30:.3g} GiB > {memory_budget_gib:g} GiB")
            reason = "; ".join(reasons)
            result.points.append(MixerPoint(key[0], key[1], size, side * side, seconds, fastest, memory[key], reason))
            if reason:
                active.discard(key)
                result.stopped.setdefault(key[0], {})[key[1]] = f"at {size} px: {reason}"
        del runners, calls
        gc.collect()
    for name, mode in active:
        result.stopped.setdefault(name, {})[mode] = "all sizes within budget"
    return result


@dataclass
class ModelPoint:
    """Whole-model inference throughput at one size."""

    model: str
    size: int
    batch_size: int
    seconds: float
    images_per_s: float


@dataclass
class ModelBench:
    """The model-mode results."""

    device: str
    points: list[ModelPoint] = field(default_factory=list)

    def to_csv(self) -> str:
        lines = ["model,size,batch_size,seconds,images_per_s"]
        lines += [f"{p.model},{p.size},{p.batch_size},{p.seconds:.6g},{p.images_per_s:.6g}" for p in self.points]
        return "\n".join(lines) + "\n"


def bench_models(
    models: Sequence[tuple[str, nn.Module]],
    sizes: Sequence[int] = (224,),
    *,
    device: torch.device | str = "cpu",
    batch_size: int = 8,
    repeats: int = 5,
    progress: Callable[[str], None] | None = None,
) -> ModelBench:
    """Inference images/s of each ``(label, model)`` at each size (eval, ``torch.inference_mode``, random inputs;
    the models of one size are timed in interleaved rounds). The models are put in eval mode on ``device``."""
    from hyenapixel.analysis.report import check_image_size

    if not models:
        raise UserError("bench_models needs at least one model")
    if batch_size < 1:
        raise UserError(f"batch size must be at least 1, got {batch_size}")
    _check_repeats(repeats)
    device = torch.device(device)
    sizes = _check_sizes(sizes, 1)
    for _, model in models:
        for size in sizes:
            check_image_size(model, size)
        model.eval().to(device)
    result = ModelBench(device_name(device))
    for size in sizes:
        if progress is not None:
            progress(f"{size} px")
        x = torch.randn(batch_size, 3, size, size, generator=torch.Generator().manual_seed(0)).to(device)

        calls = {label: partial(_infer, model, x) for label, model in models}
        for fn in calls.values():
            fn()  # warm-up: kernels and spectra built
        samples = interleaved_times(calls, 0, repeats, device_clock(device))
        times = {label: statistics.median(v) for label, v in samples.items()}
        result.points += [ModelPoint(label, size, batch_size, t, batch_size / t) for label, t in times.items()]
    return result


def _infer(model: nn.Module, x: torch.Tensor) -> None:
    with torch.inference_mode():
        model(x)


def _size_axis(ax: Any, sizes: Sequence[int]) -> None:
    """Log x axis labelled with the measured sizes only."""
    from matplotlib.ticker import FixedLocator, NullLocator

    ax.set_xscale("log")
    ax.xaxis.set_major_locator(FixedLocator(sizes))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xticklabels([str(s) for s in sizes], fontsize=7)


def plot_bench(result: MixerBench) -> Any:
    """Fig. 2: log-log time and peak memory against image size, one colour per mixer; forward solid,
    forward+backward dashed; an over-budget point (where a series stopped) is drawn hollow. The legend, below the
    panels, names the mixers by colour and says what the line styles and hollow markers mean."""
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    fig = Figure(figsize=(11, 4.8), dpi=100)
    ax_t, ax_m = fig.subplots(1, 2)
    colors: dict[str, Any] = {}
    styles = dict(zip(MODES, ("-", "--")))
    for name in dict.fromkeys(p.mixer for p in result.points):
        for mode in MODES:
            pts = result.series(name, mode)
            if not pts:
                continue
            xs = [p.size for p in pts]
            kw: dict[str, Any] = dict(linestyle=styles[mode], marker="o", markersize=4)
            if name in colors:
                kw["color"] = colors[name]
            (line,) = ax_t.plot(xs, [p.seconds for p in pts], **kw)
            colors[name] = line.get_color()
            kw["color"] = colors[name]
            mem = [p.memory_bytes / 2**20 for p in pts]
            ax_m.plot(xs, mem, **kw)
            for ax, ys in ((ax_t, [p.seconds for p in pts]), (ax_m, mem)):
                over = [(x, y) for x, y, p in zip(xs, ys, pts) if p.over_budget]
                if over:
                    ax.plot(*zip(*over), linestyle="none", marker="o", markersize=8, mfc="white", color=colors[name])
    sizes = sorted({p.size for p in result.points})
    for ax, ylabel in ((ax_t, "seconds per call (median)"), (ax_m, "peak extra memory (MiB)")):
        _size_axis(ax, sizes)
        ax.set_yscale("log")
        ax.set_xlabel("image size (px), stage-1 tokens = (size/4)^2")
        ax.set_ylabel(ylabel)
        ax.grid(True, which="both", alpha=0.3)
    handles = [Line2D([], [], color=c, linewidth=2.5, label=name) for name, c in colors.items()]
    handles += [
        Line2D([], [], color="0.3", linestyle="-", label="solid: forward"),
        Line2D([], [], color="0.3", linestyle="--", label="dashed: forward + backward"),
        Line2D([], [], color="0.3", linestyle="none", marker="o", mfc="white", markersize=8,
               label="hollow: over the time or memory budget (series stopped)"),
    ]  # fmt: skip
    fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 5), fontsize=8, frameon=False)
    fig.suptitle(f"Token mixers at the stage-1 shape (C={result.dim}, batch {result.batch_size}), {result.device}")
    fig.tight_layout(rect=(0, 0.07 if len(handles) <= 5 else 0.11, 1, 1))
    return fig


def plot_bench_models(result: ModelBench) -> Any:
    """Images/s against image size, one line per model (log-log)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 4.2), dpi=100)
    ax = fig.subplots()
    for label in dict.fromkeys(p.model for p in result.points):
        pts = sorted((p for p in result.points if p.model == label), key=lambda p: p.size)
        ax.plot([p.size for p in pts], [p.images_per_s for p in pts], marker="o", label=label)
    _size_axis(ax, sorted({p.size for p in result.points}))
    ax.set_yscale("log")
    ax.set_xlabel("image size (px)")
    ax.set_ylabel("images / s (inference)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(f"Throughput, {result.device}", fontsize=9)
    fig.tight_layout()
    return fig
