"""The ablation as a picture (``ablation.png`` of ``hyenapixel ablate``; paper Table 3 at laptop scale): every seed
of every model, and the global model's accuracy against its kernel size.

matplotlib is optional (``pip install hyenapixel[analysis]``); without it no picture is written.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hyenapixel.figures import have_matplotlib, new_figure, save_png

__all__ = ["draw_ablation", "plot_ablation"]


def draw_ablation(results: Sequence[Any], global_model: str, *, chance: float = 50.0) -> Any:
    """A matplotlib figure of an ablation (:func:`hyenapixel.evidence.ablate.run_ablation` results): left, test top-1
    per model with every seed as a dot and the mean as a bar; right, test top-1 of the global model against its
    kernel size (every seed a dot, the mean a line), with each twin's mean as a dashed level."""
    fig = new_figure(figsize=(10, 4))
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
    if not have_matplotlib("ablation.png") or not results or any(r.test_top1 is None for r in results):
        return None
    return save_png(draw_ablation(results, global_model), png)
