"""Train a HyenaPixel segmenter or detector on the built-in shapes task (a CPU-sized version of paper Section 4.3).

  hyenapixel dense-train                                  # UPerNet + small hpx_former_s4, reports val mIoU
  hyenapixel dense-train --task detection                 # Mask R-CNN + hpx_former_s4, reports COCO AP
  hyenapixel dense-train --model c_hpx_former_s18 --dims none --checkpoint pytorch_model.bin --kernel-policy paper

The run folder (--output, default runs/<timestamp>-dense-<task>-<model>) gets config.yaml, metrics.csv,
summary.json and predictions.png. The summary states the trivial baseline scored by the same metric.
"""

from __future__ import annotations

import argparse

from hyenapixel.cli.args import add_dataclass_arguments, explicit_options
from hyenapixel.dense.config import DenseRunConfig

HELP = "train UPerNet or Mask R-CNN with a HyenaPixel backbone on the built-in shapes task"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """One option per field of :class:`hyenapixel.dense.config.DenseRunConfig`, with its help and default."""
    add_dataclass_arguments(parser, DenseRunConfig)


def run(args: argparse.Namespace) -> int:
    """Build the config, train, print the result against the baseline."""
    from hyenapixel.cli.model_args import check_model_names
    from hyenapixel.configio import build_config

    cfg = build_config(DenseRunConfig, explicit_options(args, DenseRunConfig))
    check_model_names([cfg.model])  # before torch and timm are imported
    from hyenapixel.dense.builtin import run_builtin

    summary = run_builtin(cfg)
    print(
        f"{summary['task']}: val {summary['metric']} {summary['value']:.4f} "
        f"(baseline, {summary['baseline_is']}: {summary['baseline']:.4f}) in {summary['seconds']:.0f}s; "
        f"run folder {summary['output']}"
    )
    return 0
