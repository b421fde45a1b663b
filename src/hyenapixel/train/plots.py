"""Training curves of a run as a picture (``curves.png`` next to ``metrics.csv``; paper Section 4.1 training runs).

matplotlib is optional (``pip install hyenapixel[analysis]``); without it no picture is written and the run is
otherwise unchanged.
"""

from __future__ import annotations

import csv
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hyenapixel.paths import atomic_write

__all__ = ["draw_ablation", "draw_training_curves", "plot_ablation", "plot_training_curves"]

log = logging.getLogger(__name__)


def _column(rows: list[dict[str, str]], name: str) -> list[float | None]:
    out: list[float | None] = []
    for r in rows:
        v = r.get(name, "")
        out.append(float(v) if v not in ("", None) else None)
    return out


def draw_training_curves(rows: list[dict[str, str]], *, title: str | None = None, chance: float | None = None) -> Any:
    """A matplotlib figure (on an Agg canvas, unknown to pyplot) of loss (train, val) and validation top-1 (and EMA
    top-1) per epoch of ``metrics.csv`` rows.

    The epoch axis reaches half an epoch beyond the first and last points and has integer ticks only (a one-epoch
    run is a dot in the middle of an axis ticked 1); the accuracy panel shows chance level as a dashed line and
    its axis includes it.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    epochs = [int(r["epoch"]) for r in rows]
    fig = Figure(figsize=(9, 3.6), layout="constrained")
    FigureCanvasAgg(fig)  # drawn off-screen: matplotlib's global backend and figure list stay untouched
    axes = fig.subplots(1, 2)
    if title:
        fig.suptitle(title)
    panels = (
        ("loss", "loss", (("train_loss", "train"), ("val_loss", "validation"))),
        ("validation accuracy", "top-1 (%)", (("val_top1", "top-1"), ("ema_top1", "EMA top-1"))),
    )
    for ax, (name, unit, curves) in zip(axes, panels):
        for column, label in curves:
            pts = [(e, y) for e, y in zip(epochs, _column(rows, column)) if y is not None]
            if pts:
                ax.plot(*zip(*pts), marker="o", label=label)
        if unit.startswith("top-1") and chance is not None:
            ax.axhline(chance, color="grey", linestyle="--", linewidth=1, label=f"chance ({chance:.3g}%)")
            low, high = ax.get_ylim()
            ax.set_ylim(max(min(low, chance - 5), 0.0), min(max(high, chance + 5), 100.5))
        ax.set(xlabel="epoch", ylabel=unit, title=name)
        ax.set_xlim(min(epochs) - 0.5, max(epochs) + 0.5)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
        ax.legend()
        ax.grid(alpha=0.3)
    return fig


def plot_training_curves(
    metrics_csv: str | os.PathLike[str],
    png: str | os.PathLike[str],
    *,
    title: str | None = None,
    chance: float | None = None,
) -> Path | None:
    """Draw ``metrics.csv`` (see :func:`draw_training_curves`) into ``png``.

    Returns the written path, or None when matplotlib is not installed or the CSV has no rows. The picture is
    written atomically (:func:`hyenapixel.paths.atomic_write`).
    """
    if not _have_matplotlib("curves.png"):
        return None
    with open(metrics_csv, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return None
    return _save(draw_training_curves(rows, title=title, chance=chance), png)


def _have_matplotlib(what: str) -> bool:
    """Whether matplotlib (an optional dependency) is installed; logs that ``what`` is not drawn if not."""
    try:
        import matplotlib  # noqa: F401  (only its absence is checked here)
    except ImportError:
        log.info("matplotlib is not installed: no %s (pip install 'hyenapixel[analysis]')", what)
        return False
    return True


def _save(fig: Any, png: str | os.PathLike[str]) -> Path:
    """Write ``fig`` to ``png`` atomically (:func:`hyenapixel.paths.atomic_write`)."""
    return atomic_write(png, lambda f: fig.savefig(f, format="png", dpi=110))


def draw_ablation(results: Sequence[Any], global_model: str, *, chance: float = 50.0) -> Any:
    """A matplotlib figure of an ablation (:func:`hyenapixel.train.ablate.run_ablation` results): left, test top-1
    per model with every seed as a dot and the mean as a bar; right, test top-1 of the global model against its
    kernel size (every seed a dot, the mean a line), with each twin's mean as a dashed level."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 4))
    FigureCanvasAgg(fig)
    left, right = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1, 1.3]})
    models = list(dict.fromkeys(r.spec.model for r in results if r.spec.kernel_size is None))
    means: dict[str, float] = {}
    for i, model in enumerate(models):
        values = [r.test_top1 for r in results if r.spec.model == model and r.spec.kernel_size is None]
        means[model] = sum(values) / len(values)
        color = "C0" if model == global_model else "C7"
        left.bar(i, means[model], color=color, alpha=0.35, width=0.6)
        left.scatter([i] * len(values), values, color=color, zorder=3, s=18)
    left.axhline(chance, color="k", ls=":", lw=1, label="chance")
    left.set_xticks(range(len(models)), models, rotation=20, ha="right", fontsize=8)
    left.set_ylabel("test top-1 (%)")
    left.set_ylim(min(chance - 5, *(r.test_top1 for r in results)) - 2, 101)
    left.set_title("one block, 64 px Echo: every seed")
    left.legend(loc="lower right", fontsize=8)

    by_kernel: dict[int, list[float]] = {}
    for r in results:
        if r.spec.model == global_model and r.kernel_size is not None:
            by_kernel.setdefault(r.kernel_size, []).append(r.test_top1)
    ks = sorted(by_kernel)
    for k in ks:
        right.scatter([k] * len(by_kernel[k]), by_kernel[k], color="C0", s=18, zorder=3)
    right.plot(ks, [sum(by_kernel[k]) / len(by_kernel[k]) for k in ks], color="C0", label=f"{global_model} (mean)")
    for j, model in enumerate(m for m in models if m != global_model):
        right.axhline(means[model], color=f"C{j + 1}", ls="--", lw=1, label=f"{model} (mean)")
    right.axhline(chance, color="k", ls=":", lw=1)
    right.set_xlabel("HyenaPixel kernel size (the map is 16 x 16; 31 covers it)")
    right.set_ylabel("test top-1 (%)")
    right.set_xticks(ks)
    right.set_ylim(left.get_ylim())
    right.set_title("accuracy against kernel size")
    right.legend(loc="lower right", fontsize=7)
    fig.tight_layout()
    return fig


def plot_ablation(results: Sequence[Any], global_model: str, png: str | os.PathLike[str]) -> Path | None:
    """Draw :func:`draw_ablation` into ``png``; None without matplotlib or results."""
    if not _have_matplotlib("ablation.png") or not results or any(r.test_top1 is None for r in results):
        return None
    return _save(draw_ablation(results, global_model), png)
