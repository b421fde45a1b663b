"""Learned long-convolution kernels (paper Fig. 7; Appendix D, Fig. 11 and 12).

For every block with a HyenaPixel or bidirectional Hyena mixer, the filter's kernel (without the skip term D) is
averaged over channels and normalised by its largest magnitude, giving a map in [-1, 1]; the maps are drawn in a
stage x block grid. A 2D kernel is shown as it is. A 1D H_b kernel of length ``2 F^2 - 1`` (F: side of the square
training feature map) is reshaped into rows of width F, aligned so that its centre tap sits in the centre column,
which shows the 2D pattern it applies around the centremost pixel (the paper's reconstruction); it wraps
differently at other positions. Kernels are shown in storage order (the convolution flips them).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from hyenapixel.analysis.sites import long_conv_sites, mixer_map_sizes
from hyenapixel.errors import UserError
from hyenapixel.models import model_name

__all__ = ["STATISTICS", "KernelMap", "KernelsResult", "learned_kernels", "plot_kernels", "reshape_1d_kernel"]

#: How the channels of a kernel are combined: the paper's mean, or the mean magnitude.
STATISTICS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "mean": lambda k: k.mean(0),
    "mean_abs": lambda k: k.abs().mean(0),
}


@dataclass
class KernelMap:
    """The normalised channel statistic of one block's kernel.

    Attributes:
        stage / block: position (0-based).
        kind: ``"2d"`` (HyenaPixel) or ``"1d"`` (Hyena, reshaped to width F).
        feature_size: (H, W) of the feature map the mixer sees at the model's input size.
        kernel_shape: shape of one channel's kernel.
        image: the map, largest magnitude 1 (2D: (kh, kw); 1D: (rows, F), padding taps NaN).
    """

    stage: int
    block: int
    kind: str
    feature_size: tuple[int, int]
    kernel_shape: tuple[int, ...]
    image: torch.Tensor = field(repr=False)


@dataclass
class KernelsResult:
    """All kernel maps of one model."""

    model: str
    statistic: str
    maps: list[KernelMap]

    def numbers(self) -> dict[str, Any]:
        """Every number of the figure (maps rounded to 3 decimals; NaN padding as null)."""
        return {
            "model": self.model,
            "statistic": self.statistic,
            "maps": [
                {
                    "stage": m.stage,
                    "block": m.block,
                    "kind": m.kind,
                    "feature_size": list(m.feature_size),
                    "kernel_shape": list(m.kernel_shape),
                    "image": [[None if v != v else round(v, 3) for v in row] for row in m.image.tolist()],
                }
                for m in self.maps
            ],
        }


def reshape_1d_kernel(kernel: torch.Tensor, width: int) -> torch.Tensor:
    """Lay a centred 1D kernel out in rows of ``width`` taps so that the centre tap lands in column
    ``width // 2`` (the column of the centremost pixel); taps before the first and after the last are NaN.

    Shape:
        (K,) -> (ceil((pad + K) / width), width)
    """
    if kernel.dim() != 1 or width < 1:
        raise ValueError(f"expected a 1D kernel and a positive width, got {tuple(kernel.shape)} and {width}")
    centre = kernel.shape[0] // 2
    pad = (width // 2 - centre) % width
    rows = -(-(pad + kernel.shape[0]) // width)
    out = torch.full((rows * width,), float("nan"), dtype=kernel.dtype)
    out[pad : pad + kernel.shape[0]] = kernel
    return out.view(rows, width)


def _normalise(m: torch.Tensor) -> torch.Tensor:
    top = m.abs().max()
    return m / top if top > 0 else m


@torch.inference_mode()
def learned_kernels(model: nn.Module, *, statistic: str = "mean", name: str | None = None) -> KernelsResult:
    """The normalised mean kernel of every HyenaPixel / Hyena mixer of ``model`` at its training input size.

    Raises :class:`~hyenapixel.errors.UserError` if the model has no such mixer.

    Shape:
        -> maps of (kh, kw) for 2D filters, (rows, F) for 1D filters
    """
    if statistic not in STATISTICS:
        raise UserError(f"unknown statistic {statistic!r}; choose from {', '.join(STATISTICS)}")
    reduce = STATISTICS[statistic]
    sites = long_conv_sites(model, "kernels")
    sizes = mixer_map_sizes(model, sites)
    maps = []
    for s in sites:
        h, w = sizes.get(s.name, (0, 0))
        k = s.module.filter_kernel((h, w)).float().cpu()  # (C, kh, kw), or (C, 2L - 1) / (C, L) in 1D
        if k.dim() == 2:
            image = reshape_1d_kernel(_normalise(reduce(k)), w)
            maps.append(KernelMap(s.stage, s.block, "1d", (h, w), tuple(k.shape[1:]), image))
        else:
            maps.append(KernelMap(s.stage, s.block, "2d", (h, w), tuple(k.shape[1:]), _normalise(reduce(k))))
    return KernelsResult(name or model_name(model), statistic, maps)


def plot_kernels(results: Sequence[KernelsResult]) -> Any:
    """One stage x block grid of kernel maps per model (stacked), each cell titled ``S<stage> B<block> F<size>``.

    Returns a matplotlib ``Figure``.
    """
    from matplotlib.figure import Figure

    grids = []
    for r in results:
        stages = sorted({m.stage for m in r.maps})
        cols = max(m.block for m in r.maps) + 1
        grids.append((r, stages, cols))
    rows_total = sum(len(s) for _, s, _ in grids)
    cols_max = max(c for _, _, c in grids)
    fig = Figure(figsize=(1.6 * cols_max + 1.2, 1.9 * rows_total + 0.6 * len(grids)), dpi=110, layout="constrained")
    subfigs = fig.subfigures(len(grids), 1, squeeze=False, height_ratios=[len(s) for _, s, _ in grids])[:, 0]
    cmap = "RdBu_r"
    for sub, (r, stages, _) in zip(subfigs, grids):
        axes = sub.subplots(len(stages), cols_max, squeeze=False)
        for ax in axes.flat:
            ax.axis("off")
        im = None
        for m in r.maps:
            ax = axes[stages.index(m.stage), m.block]
            vmin = 0 if r.statistic == "mean_abs" else -1
            img = m.image.numpy()
            im = ax.imshow(img, cmap=cmap, vmin=vmin, vmax=1, interpolation="nearest")
            side = m.feature_size[0] if m.feature_size[0] == m.feature_size[1] else "x".join(map(str, m.feature_size))
            ax.set_title(f"S{m.stage + 1} B{m.block + 1} F{side}", fontsize=7)
        sub.suptitle(f"{r.model}: normalised {r.statistic.replace('_', ' ')} kernel per block", fontsize=9)
        if im is not None:
            sub.colorbar(im, ax=axes.ravel().tolist(), shrink=0.6)
    return fig
