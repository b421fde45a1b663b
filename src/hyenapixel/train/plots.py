"""Training curves of a run as a picture (``curves.png`` next to ``metrics.csv``; paper Section 4.1 training runs).

matplotlib is optional (``pip install hyenapixel[analysis]``); without it no picture is written and the run is
otherwise unchanged.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Any

from hyenapixel.figures import have_matplotlib, new_figure, save_png

__all__ = ["draw_training_curves", "plot_training_curves"]


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
    from matplotlib.ticker import MaxNLocator

    epochs = [int(r["epoch"]) for r in rows]
    fig = new_figure(figsize=(9, 3.6), layout="constrained")
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
    if not have_matplotlib("curves.png"):
        return None
    with open(metrics_csv, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return None
    return save_png(draw_training_curves(rows, title=title, chance=chance), png)
