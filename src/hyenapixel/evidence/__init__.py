"""The kernel-size ablation at laptop scale (paper Sections 4-5, Table 3): global HyenaPixel kernels against
parameter-matched local twins on the built-in Echo task (docs/evidence.md).

This layer composes the two below it: :mod:`~hyenapixel.evidence.ablate` plans and runs the training runs
(each an ordinary ``hyenapixel train`` run) and writes the results table, :mod:`~hyenapixel.evidence.plots` draws
them, and :mod:`~hyenapixel.evidence.analysis` runs the analysis tools on the trained models. The light parts
(the config and the run plan) import without torch.
"""

from __future__ import annotations

from hyenapixel.evidence.ablate import ABLATION_LRS, GLOBAL_MODEL, TWINS, AblationConfig, plan_runs, run_ablation
from hyenapixel.lazy import lazy_attributes

__all__ = [
    "ABLATION_LRS",
    "GLOBAL_MODEL",
    "TWINS",
    "AblationConfig",
    "analyse_ablation",
    "plan_runs",
    "plot_ablation",
    "run_ablation",
]

__getattr__, __dir__ = lazy_attributes(
    __name__,
    {"analyse_ablation": "hyenapixel.evidence.analysis", "plot_ablation": "hyenapixel.evidence.plots"},
)
