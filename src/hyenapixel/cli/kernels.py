"""Learned long-convolution kernels per stage and block (paper Fig. 7; Appendix D, Fig. 11 and 12).

  hyenapixel kernels --model hpx_former_s18 --pretrained --model hb_former_s18 --pretrained
  hyenapixel kernels --checkpoint runs/x/best.pt --statistic mean_abs

Writes kernels.png (one stage x block grid per model) and kernels.json (every map).
"""

from __future__ import annotations

import argparse

from hyenapixel.cli.args import add_output_arguments
from hyenapixel.cli.model_args import add_model_arguments, weights_by_label

HELP = "normalised mean kernel of every HyenaPixel / Hyena block (stage x block grid)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_arguments(parser, default=("hpx_former_s18",))
    parser.add_argument(
        "--statistic",
        choices=("mean", "mean_abs"),
        default="mean",
        help="channel average of the kernel (the paper's) or of its magnitude (default: mean)",
    )
    add_output_arguments(parser, "kernels")


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from hyenapixel.analysis import output_dir, save_report
    from hyenapixel.analysis.kernels import learned_kernels, plot_kernels
    from hyenapixel.analysis.sites import long_conv_sites
    from hyenapixel.cli.model_args import build_models

    out = output_dir("kernels", args.output, overwrite=args.overwrite)  # before the work, not after it
    models = build_models(args.models)
    for _, model in models:
        long_conv_sites(model, "kernels")  # refuse before any work
    results = [
        learned_kernels(model, statistic=args.statistic, name=req.label)
        for req, model in tqdm(models, desc="kernels", unit="model", disable=len(models) < 2)
    ]
    for r in results:
        kinds = sorted({m.kind for m in r.maps})
        print(f"{r.model:<24} {len(r.maps)} blocks with {'/'.join(kinds)} filters")
    paths = save_report(out, "kernels", [r.numbers() for r in results], plot_kernels(results), weights_by_label(models))
    print(f"wrote {paths[0]} and {paths[1]}")
    return 0
