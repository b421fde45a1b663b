"""Train a model: the built-in CPU job by default, or a paper recipe (Section 4.1) on an image folder.

  hyenapixel train                                   # small HyenaPixel on the built-in Balance data (CPU)
  hyenapixel train --data DIR --model hpx_former_s12 --recipe in1k
  torchrun --nproc_per_node 8 -m hyenapixel train --data DIR --recipe in1k --batch-size 128
  hyenapixel train --output runs/x --resume auto     # continue where a run stopped

Precedence: the defaults shown < --recipe (a preset name or a YAML file, e.g. a run's config.yaml) < flags.
Without --lr the learning rate is --base-lr scaled linearly from --base-batch to the global batch.
A folder that holds a run is never overwritten: continue it (--resume auto), or pass --overwrite.
Ctrl-C prints the command that continues the run; SIGTERM (e.g. Slurm preemption) first saves a checkpoint at
the current step (exit status 143).
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path

from hyenapixel.cli.args import add_dataclass_arguments, explicit_options
from hyenapixel.cli.busy import wait_passively_if_busy
from hyenapixel.train.config import TrainConfig
from hyenapixel.train.errors import ConfigError, flag_name
from hyenapixel.train.launch import torchrun_env
from hyenapixel.train.recipes import RECIPES

USAGE = "%(prog)s [--recipe NAME|FILE] [--OPTION VALUE ...]   (--help lists every option)"
HELP = "train a model (built-in CPU demo by default, or a paper recipe)"

_TITLES = {
    "model": "model",
    "data": "data",
    "aug": "augmentation and regularisation",
    "optim": "optimizer",
    "sched": "schedule",
    "run": "run, checkpoints and devices",
}

#: Options that place a run: the resume command gives its own ``--output DIR --resume auto`` instead.
_PLACEMENT = ("output", "resume", "overwrite")


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


def resume_command(args: argparse.Namespace, out_dir: str | os.PathLike[str], *, distributed: bool = False) -> str:
    """The command line that continues a run: the options given (as argparse parsed them, in their order) with
    ``--output OUT --resume auto`` instead of the run's own placement options."""
    words = ["train"] + (["--recipe", args.recipe] if args.recipe else [])
    for name, value in explicit_options(args, TrainConfig).items():
        if name in _PLACEMENT:
            continue
        if isinstance(value, bool):
            words.append(flag_name(name) if value else "--no-" + name.replace("_", "-"))
        else:
            words += [flag_name(name), *(map(str, value) if isinstance(value, (list, tuple)) else [str(value)])]
    prog = "hyenapixel" if Path(sys.argv[0]).name == "hyenapixel" else "python -m hyenapixel"
    if distributed:
        prog = "torchrun <same options> -m hyenapixel"
    return f"{prog} {shlex.join([*words, '--output', str(out_dir), '--resume', 'auto'])}"


def _check_paths(cfg: TrainConfig) -> None:
    """The data folder and the checkpoint files named by the config exist."""
    if cfg.data.data is not None and not Path(cfg.data.data).is_dir():
        what = "is a file, not a folder" if Path(cfg.data.data).exists() else "data folder not found"
        raise ConfigError("data", f"{cfg.data.data}: {what} (expected DIR/train/<class>/ and DIR/val/<class>/)")
    path = cfg.model.initial_checkpoint
    if path is not None and not Path(path).is_file():
        raise ConfigError("initial_checkpoint", f"checkpoint not found: {path}")


def run(args: argparse.Namespace) -> int:
    """Resolve the config, train, print the summary (or how to continue a stopped run)."""
    import yaml

    from hyenapixel.train.recipes import resolve_train_config

    options = explicit_options(args, TrainConfig)
    if "model" in options:  # an unknown name is reported before anything else is said about it (and before timm)
        from hyenapixel.cli.model_args import check_model_names

        check_model_names([str(options["model"])])
    cfg = resolve_train_config(args.recipe, options)
    _check_paths(cfg)  # before torch is imported: a missing folder or file answers at once
    if args.print_config:
        sys.stdout.write(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
        return 0
    launch = torchrun_env()
    if launch.world_size == 1 and cfg.run.device != "cuda" and "torch" not in sys.modules:
        note = wait_passively_if_busy()  # before torch starts its OpenMP runtime
        if note:
            print(f"{args._parser.prog}: {note}", file=sys.stderr)
    from hyenapixel.train.errors import RunInterrupted, RunTerminatedError
    from hyenapixel.train.fit import fit
    from hyenapixel.train.summary import format_summary

    try:
        summary = fit(cfg)
    except RunTerminatedError as exc:
        if launch.is_main:
            print(
                f"{args._parser.prog}: {exc.signal_name}: saved {exc.checkpoint} at step {exc.step}; continue with:\n"
                f"  {resume_command(args, exc.out_dir, distributed=launch.world_size > 1)}",
                file=sys.stderr,
            )
        return 143
    except RunInterrupted as exc:
        if launch.is_main:
            where = f"newest checkpoint {exc.checkpoint}" if exc.checkpoint else "no checkpoint yet: starts again"
            print(
                f"{args._parser.prog}: interrupted ({where}); continue with:\n"
                f"  {resume_command(args, exc.out_dir, distributed=launch.world_size > 1)}",
                file=sys.stderr,
            )
        return 130
    if launch.is_main:
        print("\n" + format_summary(summary))
        sys.stdout.flush()
    return 0
