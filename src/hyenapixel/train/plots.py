"""Training curves of a run as a picture (``curves.png`` next to ``metrics.csv``; paper Section 4.1 training runs).

matplotlib is optional (``pip install hyenapixel[analysis]``); without it no picture is written and the run is
otherwise unchanged.
"""

from __future__ import annotations

import csv
import logging
import os
from pathlib import Path

__all__ = ["plot_training_curves"]

log = logging.getLogger(__name__)


def _column(rows: list[dict[str, str]], name: str) -> list[float | None]:
    out: list[float | None] = []
    for r in rows:
        v = r.get(name, "")
        out.append(float(v) if v not in ("", None) else None)
    return out


def plot_training_curves(metrics_csv: str | os.PathLike[str], png: str | os.PathLike[str]) -> Path | None:
    """Plot loss (train, val) and validation top-1 (and EMA top-1 if present) per epoch from ``metrics.csv``.

    Returns the written path, or None when matplotlib is not installed or the CSV has no rows. The picture is
    written to a temporary file first and then moved into place.
    """
    try:
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt
    except ImportError:
        log.info("matplotlib is not installed: no curves.png (pip install 'hyenapixel[analysis]')")
        return None
    with open(metrics_csv, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return None
    epochs = [int(r["epoch"]) for r in rows]
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4), constrained_layout=True)
    panels = (
        ("loss", "loss", (("train_loss", "train"), ("val_loss", "validation"))),
        ("validation accuracy", "%", (("val_top1", "top-1"), ("ema_top1", "EMA top-1"))),
    )
    for ax, (title, unit, curves) in zip(axes, panels):
        for name, label in curves:
            pts = [(e, y) for e, y in zip(epochs, _column(rows, name)) if y is not None]
            if pts:
                ax.plot(*zip(*pts), marker="o", label=label)
        ax.set(xlabel="epoch", ylabel=unit, title=title)
        ax.legend()
        ax.grid(alpha=0.3)
        ax.xaxis.get_major_locator().set_params(integer=True)
    png = Path(png)
    tmp = png.with_name(png.name + ".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, png)
    return png
