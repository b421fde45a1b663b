"""Evaluate checkpoints (paper Section 4.1): top-1/top-5, the crop search and ensembles.

  hyenapixel validate --checkpoint runs/<run>/best.pt                  # built-in data of that run
  hyenapixel validate --checkpoint runs/<run>/best.safetensors         # the exported weights name their model too
  hyenapixel validate --model hpx_former_s18 --checkpoint hpx_s18.pth --data /imagenet --crop-search
  hyenapixel validate --model hpx_former_s18 --checkpoint a.pth --model convformer_s18 --pretrained ...
  hyenapixel validate --model hpx_former_s18 --checkpoint a.pth --model hb_former_s18 --checkpoint b.pth \\
      --data /imagenet                                                  # ensemble: softmax average

The crop search evaluates center crops from --crop-min to --crop-max in steps of --crop-step and reports the
best, as the paper did for its ImageNet numbers.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from hyenapixel.cli.args import add_dataclass_arguments, explicit_options
from hyenapixel.train.config import ValidateConfig

USAGE = "%(prog)s --checkpoint PATH [--model NAME] [--OPTION VALUE ...]   (--help lists every option)"
HELP = "evaluate a checkpoint or an ensemble (top-1/top-5, crop search)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per ValidateConfig field."""
    add_dataclass_arguments(parser, ValidateConfig)


def run(args: argparse.Namespace) -> int:
    """Build the config, evaluate, print a table (and write --output-json)."""
    from hyenapixel.configio import build_config
    from hyenapixel.paths import atomic_write_text

    # every check that needs no torch first: a missing --checkpoint or a bad option answers at once
    cfg = build_config(ValidateConfig, explicit_options(args, ValidateConfig))
    if cfg.output_json:
        _check_writable(Path(cfg.output_json))  # before the evaluation, not after it
    _check_files(cfg)
    from hyenapixel.train.validate import validate

    result = validate(cfg)
    print(format_result(result))
    sys.stdout.flush()
    if cfg.output_json:
        atomic_write_text(cfg.output_json, json.dumps(result.to_dict(), indent=2) + "\n")
    return 0


def _check_files(cfg: Any) -> None:
    """Model names are known, checkpoints and the data folder exist (checked before torch is imported)."""
    from hyenapixel.cli.model_args import check_model_names
    from hyenapixel.train.errors import ConfigError

    check_model_names(cfg.model)
    for checkpoint in cfg.checkpoint:
        if not Path(checkpoint).is_file():
            what = "a folder; give a checkpoint file in it" if Path(checkpoint).is_dir() else "not found"
            raise ConfigError(
                "checkpoint", f"checkpoint {what}: {checkpoint}" if what == "not found" else f"{checkpoint}: {what}"
            )
    if cfg.data is not None and not Path(cfg.data).is_dir():
        raise ConfigError("data", f"{cfg.data}: data folder not found")


def _check_writable(path: Path) -> None:
    from hyenapixel.paths import file_target_problem
    from hyenapixel.train.errors import ConfigError

    problem = file_target_problem(path, "results.json")
    if problem is not None:
        raise ConfigError("output_json", problem)


def format_result(result: Any) -> str:
    """The table of a :class:`hyenapixel.train.validate.ValidationResult`: one row per crop, the best marked."""
    from hyenapixel.models.evaluation import format_accuracy
    from hyenapixel.train.validate import format_crop

    members = ", ".join(f"{m.model} ({m.checkpoint or 'pretrained'})" for m in result.members)
    best = result.best
    lines = [f"dataset {result.dataset}  models: {members}", f"{'crop':>6} {'top-1':>8} {'top-5':>8}"]
    for r in result.results:
        mark = "  <- best" if r is best and len(result.results) > 1 else ""
        lines.append(f"{format_crop(r.crop_pct):>6} {r.top1:>8.2f} {format_accuracy(r.top5):>8}{mark}")
        if len(r.members) > 1:
            for m in r.members:
                lines.append(f"{'':>6} {m.top1:>8.2f} {format_accuracy(m.top5):>8}   {m.model}")
    lines.append(
        f"top-1 {best.top1:.2f}  top-5 {format_accuracy(best.top5)}  (crop {format_crop(best.crop_pct)}, "
        f"{best.count} images)"
    )
    return "\n".join(lines)
