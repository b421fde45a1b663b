"""Effective receptive field (paper Section 5, Fig. 4; Appendix B, Fig. 8), as in Luo et al. (2016) and the
RepLKNet / SLaK analyses.

For each image, the centre of the last-stage feature map (after ReLU, summed over channels) is differentiated with
respect to the input; the positive part of that gradient is summed over the colour channels and over all images.
The map shown is ``log10(map + 1)`` normalised to a maximum of 1. The high-contribution area ratio at a threshold
``t`` is the area of the smallest centred square whose share of the normalised map's sum reaches ``t``, relative to
the image area; a threshold that no centred square inside the image reaches is reported as ``None`` (the RepLKNet
script crashes there).

Speed: no gradient reaches the parameters (they are frozen while the ERF runs), so the HyenaPixel and Hyena mixers
reuse their cached kernel spectra, and images go through the network in batches. Batching is exact: the gradient
of a sum over independent samples is each sample's own gradient.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from hyenapixel.analysis.images import ImageSet
from hyenapixel.analysis.report import check_image_size
from hyenapixel.errors import UserError
from hyenapixel.models import model_name
from hyenapixel.progress import Progress, progress_mode

__all__ = [
    "ERF_THRESHOLDS",
    "ErfResult",
    "area_ratios",
    "auto_batch_size",
    "erf",
    "log_normalise",
    "plot_erf",
    "preview",
]

#: The thresholds of the RepLKNet analysis.
ERF_THRESHOLDS: tuple[float, ...] = (0.2, 0.3, 0.5, 0.99)
PREVIEW_SIZE = 128
#: Default batching: as many images as keep the pixels per batch near 8 images of 224 x 224 (at least one).
AUTO_BATCH_PIXELS = 8 * 224 * 224


def auto_batch_size(height: int, width: int) -> int:
    """Images per batch when none is given: ``AUTO_BATCH_PIXELS // (height * width)``, at least 1 (1024 px: 1)."""
    return max(1, AUTO_BATCH_PIXELS // (height * width))


@dataclass
class ErfResult:
    """The ERF of one model.

    Attributes:
        model: model name.
        img_size: (H, W) of the images.
        num_images: images summed.
        raw: the accumulated positive gradients (not serialised to JSON; see ``erf.npz``), shape (H, W).
        preview: ``log_normalise(raw)`` area-averaged down to at most 128 px per side, as plotted.
        area_ratio: threshold -> area ratio of the smallest centred square holding that share of the normalised
            map (``None``: not reached).
        side: threshold -> side length in pixels of that square (``None``: not reached).
        weights: which weights the model had (``"checkpoint best.pt (epoch 6)"``, ``"random initialisation"``,
            ...), shown in the figure; empty if not known.
    """

    model: str
    img_size: tuple[int, int]
    num_images: int
    raw: torch.Tensor = field(repr=False)
    area_ratio: dict[float, float | None]
    side: dict[float, int | None]
    weights: str = ""

    @property
    def preview(self) -> torch.Tensor:
        return preview(log_normalise(self.raw))

    def numbers(self) -> dict[str, Any]:
        """Every number of the figure (the plotted preview map, rounded to 3 decimals, and the area ratios)."""
        shown = self.preview
        return {
            "model": self.model,
            "weights": self.weights,
            "img_size": list(self.img_size),
            "num_images": self.num_images,
            "area_ratio": {str(t): r for t, r in self.area_ratio.items()},
            "side": {str(t): s for t, s in self.side.items()},
            "preview_shape": list(shown.shape),
            "preview": (shown * 1e3).round().div(1e3).tolist(),
        }


def log_normalise(raw: torch.Tensor) -> torch.Tensor:
    """``log10(raw + 1)`` divided by its maximum (all zeros stay zeros).

    Shape:
        (H, W) -> (H, W)
    """
    m = torch.log10(raw.double().clamp_min(0) + 1)
    top = m.max()
    return (m / top if top > 0 else m).float()


def preview(m: torch.Tensor, size: int = PREVIEW_SIZE) -> torch.Tensor:
    """Area-average ``m`` down by the smallest integer factor that brings both sides to at most ``size``.

    Shape:
        (H, W) -> (ceil(H / f), ceil(W / f))
    """
    f = max(1, math.ceil(max(m.shape) / size))
    if f == 1:
        return m
    return F.avg_pool2d(m[None, None], f, ceil_mode=True)[0, 0]


def area_ratios(m: torch.Tensor, thresholds: Iterable[float] = ERF_THRESHOLDS) -> tuple[dict, dict]:
    """For each threshold ``t``, the smallest centred square (odd side ``2i + 1`` around ``(H//2, W//2)``) whose sum
    is more than ``t`` times the sum of ``m``: returns ``({t: side**2 / (H*W) or None}, {t: side or None})``.

    Shape:
        m: (H, W)
    """
    h, w = m.shape
    cy, cx = h // 2, w // 2
    radius = min(cy, cx, h - 1 - cy, w - 1 - cx)
    integral = F.pad(m.double().cumsum(0).cumsum(1), (1, 0, 1, 0))  # (H+1, W+1), integral[i, j] = sum m[:i, :j]
    r = torch.arange(radius + 1)
    top, bottom, left, right = cy - r, cy + r + 1, cx - r, cx + r + 1
    sums = integral[bottom, right] - integral[top, right] - integral[bottom, left] + integral[top, left]
    total = integral[-1, -1]
    ratios, sides = {}, {}
    for t in thresholds:
        hit = torch.nonzero(sums > t * total) if total > 0 else torch.zeros(0, 1, dtype=torch.long)
        if len(hit):
            side = 2 * int(hit[0, 0]) + 1
            ratios[t], sides[t] = side * side / (h * w), side
        else:
            ratios[t], sides[t] = None, None
    return ratios, sides


def _feature_map(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    feats = model.forward_features(x)
    if isinstance(feats, (list, tuple)):
        feats = feats[-1]
    if not isinstance(feats, torch.Tensor) or feats.dim() != 4:
        raise UserError(
            "the ERF needs a model whose forward_features returns a (B, C, H, W) feature map "
            f"(got {tuple(feats.shape) if isinstance(feats, torch.Tensor) else type(feats).__name__})"
        )
    return feats


def erf(
    model: nn.Module,
    images: ImageSet | torch.Tensor,
    *,
    batch_size: int | None = None,
    thresholds: Sequence[float] = ERF_THRESHOLDS,
    progress: bool | str = False,
    name: str | None = None,
    weights: str = "",
) -> ErfResult:
    """Effective receptive field of ``model`` over ``images`` (normalised model inputs).

    The model runs in eval mode with every parameter frozen (both restored afterwards); ``batch_size`` defaults to
    :func:`auto_batch_size`. Raises
    :class:`~hyenapixel.errors.UserError` for a size the model cannot take or a model without a spatial
    last-stage feature map. ``name`` (default: the architecture) and ``weights`` (which weights the model has) label
    the result and its figure. ``progress``: a mode of :func:`hyenapixel.progress.progress_mode` (``"auto"``,
    ``"bar"``, ``"log"``, ``"none"``); ``True`` is ``"auto"``.

    Shape:
        images: (N, C, H, W) -> ErfResult.raw (H, W)
    """
    x_all = images.tensor if isinstance(images, ImageSet) else images
    if x_all.dim() != 4 or len(x_all) == 0:
        raise UserError(f"expected a non-empty (N, C, H, W) image batch, got shape {tuple(x_all.shape)}")
    h, w = check_image_size(model, tuple(x_all.shape[-2:]))
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    was_training = model.training
    frozen = [(p, p.requires_grad) for p in model.parameters()]
    acc = torch.zeros(h, w, dtype=torch.float64, device=device)
    batches = x_all.split(max(1, int(batch_size or auto_batch_size(h, w))))
    mode = progress_mode(progress)
    bar = Progress(len(batches), f"ERF {name or model_name(model)}", mode, max(len(batches) // 10, 1), unit="batch")
    try:
        model.eval()
        for p, _ in frozen:
            p.requires_grad_(False)
        for batch in batches:
            x = batch.to(device=device, dtype=param.dtype if param is not None else torch.float32)
            x.requires_grad_(True)
            feats = _feature_map(model, x)
            centre = F.relu(feats[:, :, feats.shape[2] // 2, feats.shape[3] // 2]).sum()
            (grad,) = torch.autograd.grad(centre, x)
            acc += F.relu(grad).sum((0, 1)).double()
            bar.update(len(batch))
    finally:
        bar.close()
        for p, req in frozen:
            p.requires_grad_(req)
        model.train(was_training)
    raw = acc.float().cpu()
    ratios, sides = area_ratios(log_normalise(raw), thresholds)
    return ErfResult(name or model_name(model), (h, w), len(x_all), raw, ratios, sides, weights)


def plot_erf(results: Sequence[ErfResult]) -> Any:
    """The ERF maps side by side (as Fig. 4 / 8), each titled with its high-contribution area ratios.

    Returns a matplotlib ``Figure``.
    """
    from matplotlib.figure import Figure

    n = len(results)
    fig = Figure(figsize=(3.2 * n, 3.6), dpi=110, layout="constrained")
    axes = fig.subplots(1, n, squeeze=False)[0]
    im = None
    same_size = len({r.img_size for r in results}) <= 1
    for ax, r in zip(axes, results):
        im = ax.imshow(r.preview.numpy(), cmap="RdYlGn", vmin=0, vmax=1, interpolation="nearest")
        ratios = "  ".join(
            f"{int(round(t * 100))}%:{'n/r' if v is None else f'{v:.3f}'}" for t, v in r.area_ratio.items()
        )
        sizes = "" if same_size else f" at {r.img_size[0]}x{r.img_size[1]} px"
        ax.set_title(f"{r.model}{sizes}\n{r.weights or 'weights not stated'}\n{ratios}", fontsize=7)
        ax.set_xticks([])
        ax.set_yticks([])
    if im is not None:
        fig.colorbar(im, ax=list(axes), shrink=0.8, label="log-scaled, normalised")
    size = results[0].img_size if results else (0, 0)
    at = f" at {size[0]}x{size[1]} px" if same_size else ""
    fig.suptitle(
        f"ERF over {results[0].num_images if results else 0} images{at} "
        "(area ratio of the smallest centred square holding 20/30/50/99 %; n/r: not reached)",
        fontsize=8,
    )
    return fig
