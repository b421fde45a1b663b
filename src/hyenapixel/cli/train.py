"""Train a model: the built-in CPU job by default, or a paper recipe (Section 4.1) on an image folder.

  hyenapixel train                                   # small HyenaPixel on the built-in Balance data (CPU)
  hyenapixel train --data DIR --model hpx_former_s12 --recipe in1k
  torchrun --nproc_per_node 8 -m hyenapixel train --data DIR --recipe in1k --batch-size 128
  hyenapixel train --output runs/x --resume auto     # continue where a run stopped

Precedence: the defaults shown < --recipe (a preset name or a YAML file, e.g. a run's config.yaml) < flags.
Without --lr the learning rate is --base-lr scaled linearly from --base-batch to the global batch.
"""

from __future__ import annotations

import argparse
import os
import sys

from hyenapixel.cli.args import add_dataclass_arguments, explicit_options
from hyenapixel.train.config import TrainConfig
from hyenapixel.train.recipes import RECIPES

HELP = "train a model (built-in CPU demo by default, or a paper recipe)"

_TITLES = {
    "model": "model",
    "data": "data",
    "aug": "augmentation and regularisation",
    "optim": "optimizer",
    "sched": "schedule",
    "run": "run, checkpoints and devices",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``hyenapixel train``: --recipe, --print-config and one flag per TrainConfig field."""
    parser.add_argument(
        "--recipe",
        default=None,
        metavar="NAME|FILE",
        help=f"Preset ({', '.join(RECIPES)}) or YAML file; flags override it (default: none, the defaults shown).",
    )
    parser.add_argument(
        "--print-config", action="store_true", help="Print the resolved config as YAML and exit (default: off)."
    )
    add_dataclass_arguments(parser, TrainConfig, titles=_TITLES)


def run(args: argparse.Namespace) -> int:
    """Resolve the config, train, print the summary."""
    import yaml

    from hyenapixel.train.recipes import resolve_train_config

    cfg = resolve_train_config(args.recipe, explicit_options(args, TrainConfig))
    if args.print_config:
        sys.stdout.write(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
        return 0
    from hyenapixel.train.fit import fit

    summary = fit(cfg)
    if int(os.environ.get("RANK", "0")) == 0:
        _print_summary(summary)
    return 0


def _print_summary(summary: dict) -> None:
    lines = [
        "",
        "summary",
        f"  model        {summary['model']}  ({summary['num_params'] / 1e6:.2f}M parameters)",
        f"  dataset      {summary['dataset']}  ({summary['train_size']} train / {summary['val_size']} val, "
        f"{summary['num_classes']} classes, chance {summary['chance_top1']:.1f}%)",
        f"  epochs       {summary['epochs']}  ({summary['steps']} steps, global batch {summary['global_batch']}, "
        f"lr {summary['lr']:.3g}, {summary['world_size']} process(es) on {summary['device']})",
        f"  val top-1    {_pct(summary['val_top1'])}   top-5 {_pct(summary['val_top5'])}   "
        f"(best top-1 {_pct(summary['best_top1'])} at epoch {summary['best_epoch']}, {summary['evaluated']} weights)",
        f"  wall time    {summary['wall_time_s']:.1f} s",
        f"  output       {summary['output']}",
    ]
    if summary.get("corrupt_files_skipped"):
        lines.append(f"  skipped      {summary['corrupt_files_skipped']} corrupt image file(s)")
    print("\n".join(lines))
    sys.stdout.flush()


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}%"
