"""Learned filter size and kernel truncation (paper Section 5, "Truncate kernel in trained models", Fig. 5 and 6).

(a) :func:`learned_filter_sizes`: the decay window of HyenaPixel's implicit filter (Eq. 4,
``exp(-|alpha_c| * dist) + b_c``) is set to zero where it is below 0.05; the diameter of what remains (the larger
side of the bounding box of the non-zero taps) is divided by the feature-map side, per channel, and averaged over
the channels of each block. As in Fig. 5, attention counts as coverage 2 and a plain convolution (a
depthwise conv inside the mixer, or an explicit / separable long kernel) as kernel size / feature-map side. For
bidirectional Hyena the 1D window is measured the same way, as the number of non-zero taps divided by ``H*W``.

(b) :func:`truncation_curve`: for each stage and each relative size ``s``, every long kernel of that stage keeps only
the taps within the centred square of side ``s * F`` (``|offset| <= (s*F - 1) / 2`` per axis, F the feature-map side
at the evaluated resolution; for 1D kernels ``|lag| <= (s*H*W - 1) / 2``); the skip term D is left alone. Top-1 is
then measured on a labelled dataset. ``s = 0`` removes the kernels; any ``s`` at or above ``kernel / F`` changes
nothing.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from hyenapixel.analysis.report import check_image_size
from hyenapixel.analysis.sites import MixerSite, long_conv_sites, mixer_map_sizes, mixer_sites
from hyenapixel.errors import UserError
from hyenapixel.filters import bbox_sides
from hyenapixel.layers import Attention
from hyenapixel.models import LONG_CONV_MIXERS, data_config, default_input_size, evaluate, input_side, model_name
from hyenapixel.progress import Progress, progress_mode

__all__ = [
    "ATTENTION_COVERAGE",
    "DEFAULT_SIZES",
    "WINDOW_THRESHOLD",
    "BlockSize",
    "bbox_sides",
    "FilterSizeResult",
    "TruncationResult",
    "learned_filter_sizes",
    "plot_kernel_size",
    "truncated",
    "truncation_curve",
    "truncation_mask",
    "truncation_stages",
]

WINDOW_THRESHOLD = 0.05
ATTENTION_COVERAGE = 2.0  # Fig. 5: "For attention, we set the relative feature map coverage to 2"
DEFAULT_SIZES: tuple[float, ...] = (0.0, 0.125, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0)


@dataclass
class BlockSize:
    """Relative filter size of one block's token mixer.

    Attributes:
        stage / block: position (0-based).
        mixer: ``hyenapixel``, ``hyena``, ``attention`` or ``conv``.
        feature_size: (H, W) the mixer sees at the analysed resolution.
        coverage: mean over channels of diameter / feature-map side (attention: 2).
        diameters: per-channel diameter in taps (empty for attention).
    """

    stage: int
    block: int
    mixer: str
    feature_size: tuple[int, int]
    coverage: float
    diameters: list[int] = field(default_factory=list)


@dataclass
class FilterSizeResult:
    model: str
    img_size: tuple[int, int]
    threshold: float
    blocks: list[BlockSize]


def _conv_kernel(mixer: nn.Module) -> int | None:
    sizes = [max(m.kernel_size) for m in mixer.modules() if isinstance(m, nn.Conv2d) and m.groups > 1]
    return max(sizes) if sizes else None


@torch.inference_mode()
def learned_filter_sizes(
    model: nn.Module,
    img_size: int | Sequence[int] | None = None,
    *,
    threshold: float = WINDOW_THRESHOLD,
    name: str | None = None,
) -> FilterSizeResult:
    """Relative filter size of every block (see the module docstring), at ``img_size`` (default: the model's).

    Raises :class:`~hyenapixel.errors.UserError` if the model has no HyenaPixel / Hyena mixer.
    """
    long_conv_sites(model, "kernel-size")
    sites = mixer_sites(model)
    hw = check_image_size(model, default_input_size(model) if img_size is None else img_size)
    sizes = mixer_map_sizes(model, sites, hw)
    blocks = []
    for s in sites:
        h, w = sizes.get(s.name, (0, 0))
        mixer = s.module
        support = mixer.kernel_support(threshold, (h, w)) if isinstance(mixer, LONG_CONV_MIXERS) else None
        if support is not None and support.shape[1] == 2:  # HyenaPixel: the window's bounding box
            heights, widths = support.unbind(1)
            cov = torch.maximum(heights / max(h, 1), widths / max(w, 1))
            diam = torch.maximum(heights, widths)
            blocks.append(BlockSize(s.stage, s.block, "hyenapixel", (h, w), float(cov.mean()), diam.tolist()))
        elif support is not None:  # Hyena: the taps of the 1D window
            taps = support[:, 0]
            blocks.append(BlockSize(s.stage, s.block, "hyena", (h, w), float((taps / (h * w)).mean()), taps.tolist()))
        elif isinstance(mixer, LONG_CONV_MIXERS):  # explicit or separable long kernel: its size
            kh, kw = mixer.filter.kernel_size
            cov = max(kh / max(h, 1), kw / max(w, 1))
            blocks.append(BlockSize(s.stage, s.block, "conv", (h, w), cov, [max(kh, kw)] * mixer.dim))
        elif isinstance(mixer, Attention):
            blocks.append(BlockSize(s.stage, s.block, "attention", (h, w), ATTENTION_COVERAGE))
        else:
            k = _conv_kernel(mixer)
            if k is not None:
                blocks.append(BlockSize(s.stage, s.block, "conv", (h, w), k / max(h, w, 1), [k]))
    return FilterSizeResult(name or model_name(model), hw, threshold, blocks)


# ---- (b) truncation ---------------------------------------------------------------------------------------------


def truncation_mask(shape: Sequence[int], limits: Sequence[float]) -> torch.Tensor:
    """Keep-mask of a centred kernel: tap offsets (from index ``n // 2`` per axis) within ``limits``.

    Shape:
        shape (k,) or (kh, kw) -> bool tensor of that shape
    """
    axes = []
    for n, lim in zip(shape, limits):
        offset = (torch.arange(n) - n // 2).abs().double()
        axes.append(offset <= lim)
    if len(axes) == 1:
        return axes[0]
    return axes[0][:, None] & axes[1][None, :]


def _caches(sites: Iterable[MixerSite]) -> Iterator[Any]:
    for s in sites:
        cache = getattr(s.module, "spectrum_cache", None)
        if cache is not None:
            yield cache


@contextlib.contextmanager
def truncated(
    model: nn.Module, stage: int, size: float, sizes: dict[str, tuple[int, int]] | None = None
) -> Iterator[list[MixerSite]]:
    """Within the block, the long kernels of ``stage`` keep only the taps inside relative size ``size`` (see the
    module docstring and the mixers' ``truncate``); ``sizes`` are the feature sizes per site (default: measured at
    the model's input size). Kernel caches are cleared on entry and exit."""
    sites = [s for s in long_conv_sites(model, "kernel-size") if s.stage == stage]
    if not sites:
        raise UserError(f"stage {stage + 1} of {model_name(model)} has no HyenaPixel or Hyena mixer to truncate")
    sizes = sizes or mixer_map_sizes(model, sites)
    truncated_sites = []
    try:
        for s in sites:
            s.module.truncate(size, sizes[s.name])
            truncated_sites.append(s)
        for cache in _caches(sites):
            cache.clear()
        yield sites
    finally:
        for s in truncated_sites:
            s.module.truncate(None)
        for cache in _caches(sites):
            cache.clear()


@dataclass
class TruncationResult:
    """Top-1 accuracy against relative filter size, per truncated stage.

    Attributes:
        model: model name; dataset: what was evaluated; img_size: (H, W).
        baseline: top-1 without truncation.
        sizes: the relative sizes.
        top1: stage (1-based, as a string key in JSON) -> top-1 per size.
        kernel_coverage: stage -> kernel size / feature side (sizes at or above it change nothing).
    """

    model: str
    dataset: str
    img_size: tuple[int, int]
    baseline: float
    sizes: list[float]
    top1: dict[int, list[float]]
    kernel_coverage: dict[int, float]


def truncation_stages(model: nn.Module, stages: Sequence[int] | None = None, name: str | None = None) -> list[int]:
    """The 0-based stages :func:`truncation_curve` truncates: ``stages`` if the model has a long-convolution mixer
    in each, by default every stage that has one.

    Raises:
        UserError: a stage without a HyenaPixel or Hyena mixer; the message counts stages from 1, as ``--stages``.
    """
    all_stages = sorted({s.stage for s in long_conv_sites(model, "kernel-size")})
    if stages is None:
        return all_stages
    missing = [s + 1 for s in stages if s not in all_stages]
    if missing:
        raise UserError(
            f"{name or model_name(model)} has no long-convolution mixer in stage {' '.join(map(str, missing))} "
            f"(counted from 1); its long-convolution stages are {' '.join(str(s + 1) for s in all_stages)}"
        )
    return list(stages)


def truncation_curve(
    model: nn.Module,
    loader: Iterable,
    img_size: int | Sequence[int],
    *,
    sizes: Sequence[float] = DEFAULT_SIZES,
    stages: Sequence[int] | None = None,
    dataset: str = "",
    name: str | None = None,
    progress: bool | str = False,
) -> TruncationResult:
    """Evaluate top-1 on ``loader`` (:func:`hyenapixel.models.evaluate`) with the long kernels of each stage
    truncated to each relative size.

    ``stages`` are 0-based (default: every stage with a long-convolution mixer); ``img_size`` is the size of the
    loader's images (it sets the feature-map sides). ``progress``: a mode of :func:`hyenapixel.progress.progress_mode`
    (``True`` is ``"auto"``).
    """
    sites = long_conv_sites(model, "kernel-size")
    stages = truncation_stages(model, stages, name)
    fsizes = mixer_map_sizes(model, sites, img_size)
    coverage = {}
    for st in stages:
        first = next(s for s in sites if s.stage == st)
        coverage[st] = first.module.relative_kernel_size(fsizes[first.name])
    total = (1 + len(stages) * len(sizes)) * len(loader) if hasattr(loader, "__len__") else 0
    mode = progress_mode(progress)
    bar = Progress(total, f"truncation {name or model_name(model)}", mode, max(total // 20, 1), unit="img")
    try:
        baseline = evaluate(model, loader, progress=bar).top1
        top1: dict[int, list[float]] = {}
        for st in stages:
            top1[st + 1] = []
            for size in sizes:
                with truncated(model, st, size, fsizes):
                    top1[st + 1].append(evaluate(model, loader, progress=bar).top1)
    finally:
        bar.close()
    hw = (img_size, img_size) if isinstance(img_size, int) else tuple(img_size)
    return TruncationResult(
        name or model_name(model),
        dataset,
        (int(hw[0]), int(hw[1])),
        baseline,
        [float(s) for s in sizes],
        top1,
        {st + 1: float(c) for st, c in coverage.items()},
    )


def plot_kernel_size(sizes: Sequence[FilterSizeResult], truncations: Sequence[TruncationResult] = ()) -> Any:
    """(a) relative filter size per block along the depth (one line per model, markers by mixer) and, if given,
    (b) top-1 against relative filter size per truncated stage (one panel per model).

    Returns a matplotlib ``Figure``.
    """
    from matplotlib.figure import Figure

    n = 1 + len(truncations)
    fig = Figure(figsize=(5.0 * n, 3.8), dpi=110, layout="constrained")
    axes = fig.subplots(1, n, squeeze=False)[0]
    ax = axes[0]
    markers = {"hyenapixel": "o", "hyena": "s", "attention": "^", "conv": "x"}
    for r in sizes:
        xs = list(range(1, len(r.blocks) + 1))
        line = ax.plot(xs, [b.coverage for b in r.blocks], "-", lw=1, label=r.model)[0]
        for kind, marker in markers.items():
            pts = [(x, b.coverage) for x, b in zip(xs, r.blocks) if b.mixer == kind]
            if pts:
                ax.plot(*zip(*pts), marker, color=line.get_color(), ms=4)
        bounds = [i + 0.5 for i, (a, b) in enumerate(zip(r.blocks, r.blocks[1:]), 1) if a.stage != b.stage]
        for x in bounds:
            ax.axvline(x, color="0.8", lw=0.8)
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("block (depth; grey lines: stage boundaries)")
    ax.set_ylabel("relative feature-map coverage")
    ax.set_title(
        f"(a) learned filter size (window >= {sizes[0].threshold if sizes else WINDOW_THRESHOLD})\n"
        "o HyenaPixel  s Hyena  ^ attention (=2)  x conv",
        fontsize=9,
    )
    ax.legend(fontsize=7)
    for ax, t in zip(axes[1:], truncations):
        for st, accs in t.top1.items():
            ax.plot(t.sizes, accs, "o-", ms=3, label=f"S{st} (kernel {t.kernel_coverage[st]:.2f})")
        ax.axhline(t.baseline, color="k", ls="--", lw=0.8, label=f"no truncation {t.baseline:.1f}")
        ax.set_xlabel("relative filter size")
        ax.set_ylabel("top-1 (%)")
        ax.set_title(f"(b) truncation: {t.model} on {t.dataset}, {t.img_size[0]} px", fontsize=9)
        ax.legend(fontsize=7)
        if math.isfinite(t.baseline):
            ax.grid(alpha=0.3)
    return fig


@dataclass
class EvalData:
    """A labelled evaluation set for :func:`truncation_curve`: the dataset, its name and its image size."""

    dataset: Any
    name: str
    img_size: int


def evaluation_data(
    model: nn.Module,
    *,
    data: str | None = None,
    checkpoint: str | None = None,
    img_size: int | None = None,
    max_images: int | None = None,
) -> EvalData | None:
    """The labelled images to evaluate truncation on, or None if there are none.

    ``data``: an image folder with ``val/<class>/...`` (or the class folders themselves), transformed with the
    model's evaluation settings (:func:`hyenapixel.models.data_config`; a model loaded from a run's checkpoint has
    that run's normalisation and crop). Without it, a training checkpoint of ours supplies its run's data
    (:class:`~hyenapixel.data.settings.RunData`): its image folder, or the built-in generated validation set it was
    trained on (same task, difficulty, size and seed). ``max_images`` keeps the first images only.
    """
    from pathlib import Path

    import hyenapixel.data as hdata
    from hyenapixel.data.settings import RunData

    meta: dict[str, Any] = {}
    if checkpoint is not None:
        from hyenapixel.models import read_checkpoint

        meta = read_checkpoint(checkpoint).meta
    run = RunData.from_meta(meta)
    folder = data or (run.folder if run else None)
    settings = data_config(model)
    if folder is not None:
        root = Path(folder)
        if not root.is_dir():
            raise hdata.DataError(f"data folder not found: {root}")
        split_dir = root / "val" if (root / "val").is_dir() else root
        classes = hdata.check_split(split_dir.parent, split_dir.name)
        names = meta.get("class_names")
        if names and list(names) != classes:
            raise UserError(
                f"{split_dir}: its class folders ({len(classes)}) are not the checkpoint's classes ({len(names)}); "
                "pass the folder the model was trained for"
            )
        outputs = getattr(model, "num_classes", None)
        if not names and outputs and outputs != len(classes):
            logging.getLogger("hyenapixel").warning(
                "%s has %d class folders, %s predicts %d classes: its top-1 there means nothing; pass a checkpoint "
                "trained on these classes",
                split_dir,
                len(classes),
                model_name(model),
                outputs,
            )
        size = img_size or input_side(meta.get("input_size")) or settings["input_size"]
        transform = hdata.build_transforms(
            False,
            size,
            crop_pct=settings["crop_pct"],
            interpolation=settings["interpolation"],
            mean=settings["mean"],
            std=settings["std"],
        )
        dataset: Any = hdata.ImageFolderDataset(split_dir, classes, transform)
        label = str(split_dir)
    elif run is not None:
        size = run.input_size or hdata.BUILTIN_IMAGE_SIZE
        if img_size is not None and img_size != size:
            raise UserError(
                f"the built-in {run.builtin} data of this checkpoint is generated at {size} px; drop --input-size"
            )
        _, dataset, _ = hdata.build_datasets(
            None,
            input_size=size,
            builtin=run.builtin,
            builtin_difficulty=run.difficulty,
            builtin_train_samples=1,  # the validation split does not depend on the training split's size
            builtin_val_samples=run.val_samples,
            seed=run.seed,
            in_chans=run.in_chans,
        )
        label = f"{run.describe()} val"
    else:
        return None
    if len(dataset) == 0:
        raise UserError(f"{label}: no images to evaluate")
    if max_images is not None and max_images < len(dataset):
        dataset = torch.utils.data.Subset(dataset, range(max_images))
    return EvalData(dataset, f"{label} ({len(dataset)} images)", size)
