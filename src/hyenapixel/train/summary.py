"""What a finished training run reports (paper Section 4.1 runs): the banner at the start, the summary block at
the end. Both go to the terminal and to ``train.log``; the full config stays in ``config.yaml``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["format_summary", "pct"]


def pct(value: float | None) -> str:
    """``96.7`` -> ``96.70%``; None -> ``n/a``."""
    return "n/a" if value is None else f"{value:.2f}%"


def format_summary(summary: Mapping[str, Any]) -> str:
    """The summary block of a run (the content of ``summary.json`` for a reader)."""
    lines = [
        "summary",
        f"  model        {summary['model']}  ({summary['num_params'] / 1e6:.2f}M parameters)",
        f"  dataset      {summary['dataset']}  ({summary['train_size']} train / {summary['val_size']} val, "
        f"{summary['num_classes']} classes, chance {summary['chance_top1']:.1f}%)",
        f"  epochs       {summary['epochs']}  ({summary['steps']} steps, global batch {summary['global_batch']}, "
        f"lr {summary['lr']:.3g}, {summary['world_size']} process(es) on {summary['device']})",
        f"  val top-1    {pct(summary['val_top1'])}   top-5 {pct(summary['val_top5'])}   "
        f"(best top-1 {pct(summary['best_top1'])} at epoch {summary['best_epoch']}, {summary['evaluated']} weights)",
        f"  wall time    {summary['wall_time_s']:.1f} s",
        f"  output       {summary['output']}",
    ]
    if summary.get("corrupt_files_skipped"):
        lines.append(f"  skipped      {summary['corrupt_files_skipped']} corrupt image file(s)")
    return "\n".join(lines)
