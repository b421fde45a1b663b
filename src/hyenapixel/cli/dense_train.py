"""Train a HyenaPixel segmenter or detector on the built-in shapes task (a CPU-sized version of paper Section 4.3).

  hyenapixel dense-train                                  # UPerNet + small hpx_former_s4, reports val mIoU
  hyenapixel dense-train --task detection                 # Mask R-CNN + hpx_former_s4, reports COCO AP
  hyenapixel dense-train --model c_hpx_former_s18 --dims none --checkpoint pytorch_model.bin --kernel-policy paper

The run folder (--output, default runs/<timestamp>-dense-<task>-<model>) gets config.yaml, metrics.csv,
summary.json and predictions.png. The summary states the trivial baseline scored by the same metric.
"""

from __future__ import annotations

import argparse
import dataclasses

HELP = "train UPerNet or Mask R-CNN with a HyenaPixel backbone on the built-in shapes task"

_CHOICES = {"task": ("segmentation", "detection"), "kernel_policy": ("cover", "paper")}
_HELP = {
    "task": "segmentation: UPerNet (smp) scored by mIoU; detection: Mask R-CNN (torchvision) scored by COCO AP",
    "model": "backbone, a registered model name",
    "dims": "backbone channels of the four stages (none: the model's own; ignored with --checkpoint)",
    "checkpoint": "ImageNet weights for the backbone (official file or a run of ours)",
    "kernel_policy": "cover: kernels resampled to 2F-1 of the feature maps; paper: the 224-px kernels",
    "image_size": "image side of the generated data, a multiple of 32",
    "train_samples": "generated training images",
    "val_samples": "generated validation images",
    "epochs": "training epochs",
    "batch_size": "images per step",
    "lr": "AdamW peak learning rate (warm-up, cosine decay)",
    "weight_decay": "AdamW weight decay",
    "decoder_channels": "UPerNet decoder / FPN width",
    "seed": "data and initialisation seed",
    "threads": "torch intra-op threads",
    "output": "run folder (default: runs/<timestamp>-dense-<task>-<model>)",
    "overwrite": "replace the files of an earlier run in --output (default: refuse)",
}
_DEFAULTS = {
    "task": "segmentation",
    "model": "hpx_former_s4",
    "dims": (32, 64, 128, 256),
    "checkpoint": None,
    "kernel_policy": "cover",
    "image_size": 64,
    "train_samples": 768,
    "val_samples": 128,
    "epochs": 12,
    "batch_size": 16,
    "lr": 2e-3,
    "weight_decay": 0.05,
    "decoder_channels": 64,
    "seed": 0,
    "threads": 2,
    "output": None,
    "overwrite": False,
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """One option per field of :class:`hyenapixel.dense.builtin.DenseRunConfig` (defaults kept in sync by a test)."""
    for name, default in _DEFAULTS.items():
        flag = "--" + name.replace("_", "-")
        if isinstance(default, bool):
            parser.add_argument(flag, dest=name, action="store_true", help=_HELP[name])
            continue
        if name == "output":
            parser.add_argument(flag, dest=name, metavar="DIR", help=_HELP[name])
            continue
        if isinstance(default, tuple):
            shown = ",".join(map(str, default))
            parser.add_argument(flag, dest=name, type=_dims, default=default, metavar="C1,C2,C3,C4|none",
                                help=f"{_HELP[name]} (default: {shown})")  # fmt: skip
            continue
        kind = type(default) if default is not None else str
        parser.add_argument(
            flag,
            dest=name,
            type=kind,
            default=default,
            choices=_CHOICES.get(name),
            help=f"{_HELP[name]} (default: {default})",
        )


def _dims(text: str) -> tuple[int, ...] | None:
    if text.lower() == "none":
        return None
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected four comma-separated integers or 'none', got {text!r}") from None


def run(args: argparse.Namespace) -> int:
    """Build the config, train, print the result against the baseline."""
    from hyenapixel.dense.builtin import DenseRunConfig, run_builtin

    names = {f.name for f in dataclasses.fields(DenseRunConfig)}
    cfg = DenseRunConfig(**{k: v for k, v in vars(args).items() if k in names})
    summary = run_builtin(cfg)
    print(
        f"{summary['task']}: val {summary['metric']} {summary['value']:.4f} "
        f"(baseline, {summary['baseline_is']}: {summary['baseline']:.4f}) in {summary['seconds']:.0f}s; "
        f"run folder {summary['output']}"
    )
    return 0
