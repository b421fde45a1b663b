"""What a training run reports (paper Section 4.1 runs): the banner at the start, the summary at the end. Both go
to the terminal and to ``train.log``; the summary is also ``summary.json``; the full config stays in
``config.yaml``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hyenapixel.train.build import Components
    from hyenapixel.train.state import RunState

__all__ = ["banner", "format_summary", "pct", "summarize"]


def pct(value: float | None) -> str:
    """``96.7`` -> ``96.70%``; None -> ``n/a``."""
    return "n/a" if value is None else f"{value:.2f}%"


def banner(parts: Components) -> list[str]:
    """The few lines that open a run: model, data, batching, lr, output (the full config is in config.yaml)."""
    cfg, s, b = parts.cfg, parts.settings, parts.batching
    arch = ", ".join(
        f"{k} {' '.join(map(str, v))}" for k, v in parts.spec["kwargs"].items() if k != "res_scale_init_values"
    )
    sched = cfg.sched
    lr_source = "--lr" if cfg.optim.lr else f"--base-lr {cfg.optim.base_lr:g} at {cfg.optim.base_batch}, scaled"
    return [
        f"model    {cfg.model.model} ({arch + ', ' if arch else ''}{parts.num_params / 1e6:.2f}M parameters)",
        f"data     {s.dataset}: {s.train_size} train / {s.val_size} val images, {s.num_classes} classes, "
        f"{s.input_size} px",
        f"batching {b.world_size} process(es) x batch {cfg.run.batch_size} x accum {b.accum_steps} = global batch "
        f"{b.global_batch}; {parts.updates_per_epoch} steps/epoch x {sched.epochs} epochs on {parts.info.device}",
        f"lr       peak {b.lr:.3g} ({lr_source}), {sched.warmup_epochs:g} warmup epoch(s), {sched.sched} to "
        f"{sched.min_lr:g}; {cfg.optim.opt}, weight decay {cfg.optim.weight_decay:g}",
        f"output   {parts.out_dir} (full config: config.yaml there; --print-config shows it without training)",
    ]


def summarize(
    parts: Components, state: RunState, *, wall_time_s: float, corrupt: int, curves: Path | None
) -> dict[str, Any]:
    """The content of ``summary.json``: what was trained on what, and the final and best accuracy."""
    final, s, out = state.last_metrics, parts.settings, parts.out_dir
    use_ema = parts.ema is not None and final is not None and final.ema_top1 is not None
    return {
        "model": parts.cfg.model.model,
        "model_spec": parts.spec,
        "dataset": s.dataset,
        "num_classes": s.num_classes,
        "chance_top1": 100.0 / s.num_classes,
        "train_size": s.train_size,
        "val_size": s.val_size,
        "input_size": s.input_size,
        "epochs": parts.cfg.sched.epochs,
        "steps": parts.schedule.num_updates,
        "global_batch": parts.batching.global_batch,
        "lr": parts.batching.lr,
        "world_size": parts.info.world_size,
        "device": str(parts.info.device),
        "num_params": parts.num_params,
        "evaluated": "ema" if use_ema else "model",
        "val_top1": (final.ema_top1 if use_ema else final.val_top1) if final else None,
        "val_top5": (final.ema_top5 if use_ema else final.val_top5) if final else None,
        "val_loss": final.val_loss if final else None,
        "val_count": final.val_count if final else None,
        "best_top1": state.best.top1 if state.best.epoch is not None else None,
        "best_epoch": state.best.epoch,
        "corrupt_files_skipped": corrupt,
        "wall_time_s": round(wall_time_s, 2),
        "output": str(out),
        "checkpoints": {
            "last": str(out / "last.pt"),
            "best": str(out / "best.pt"),
            "best_weights": str(out / "best.safetensors"),
        },
        "curves": str(curves) if curves else None,
    }


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
