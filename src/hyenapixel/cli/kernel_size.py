"""Learned filter size per block and kernel truncation (paper Section 5, Fig. 5 and 6).

  hyenapixel kernel-size --model hpx_former_s18 --pretrained --data /imagenet --max-images 5000
  hyenapixel kernel-size --checkpoint runs/balance/best.pt         # truncation on the run's built-in data
  hyenapixel kernel-size --model hpx_former_s18 --model hpx_a_former_s18 --input-size 224   # sizes only

(a) is measured for every model. (b), the truncation curve, needs labelled data: --data DIR (``val/<class>/...``
or the class folders) or a training checkpoint of ours (its run's folder or built-in data); without either it is
skipped. Writes kernel-size.png and kernel-size.json.
"""

from __future__ import annotations

import argparse

from hyenapixel.cli.args import add_input_size_argument, add_output_arguments, add_progress_argument
from hyenapixel.cli.model_args import add_model_arguments, weights_by_label

HELP = "learned filter size per block (Fig. 5) and top-1 under kernel truncation (Fig. 6)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_arguments(parser, default=("hpx_former_s18",))
    add_input_size_argument(parser, "input size (default: the model's / the data's)")
    parser.add_argument("--data", metavar="DIR", help="labelled images for the truncation curve")
    parser.add_argument(
        "--sizes",
        type=float,
        nargs="+",
        metavar="S",
        help="relative filter sizes to truncate to (default: 0 0.125 0.25 0.5 0.75 1 1.25 1.5 2)",
    )
    parser.add_argument("--stages", type=int, nargs="+", metavar="I", help="stages to truncate, 1-based (default: all)")
    parser.add_argument("--max-images", type=int, metavar="N", help="evaluate on the first N images only")
    parser.add_argument("--batch-size", type=int, default=64, metavar="B", help="evaluation batch size (default: 64)")
    parser.add_argument("--workers", type=int, default=0, metavar="N", help="DataLoader workers (default: 0)")
    add_progress_argument(parser)
    add_output_arguments(parser, "kernel-size")


def run(args: argparse.Namespace) -> int:
    from torch.utils.data import DataLoader

    from hyenapixel.analysis import output_dir, save_report
    from hyenapixel.analysis.kernel_size import (
        DEFAULT_SIZES,
        evaluation_data,
        learned_filter_sizes,
        plot_kernel_size,
        truncation_curve,
        truncation_stages,
    )
    from hyenapixel.cli.model_args import build_models
    from hyenapixel.errors import UserError

    if args.max_images is not None and args.max_images < 1:
        raise UserError("--max-images must be positive")
    if args.batch_size < 1:
        raise UserError("--batch-size must be positive")
    sizes = args.sizes or list(DEFAULT_SIZES)
    if any(s < 0 for s in sizes):
        raise UserError(f"--sizes must be >= 0, got {sizes}")
    stages = None if args.stages is None else [s - 1 for s in args.stages]
    if args.workers < 0:
        raise UserError(f"--workers must be >= 0, got {args.workers}")
    if args.img_size is not None and args.img_size < 1:
        raise UserError(f"--input-size must be positive, got {args.img_size}")
    if stages is not None and min(stages) < 0:
        raise UserError(f"--stages are 1-based, got {args.stages}")
    out = output_dir("kernel-size", args.output, overwrite=args.overwrite)  # before the work, not after it
    models = build_models(args.models)
    for req, model in models:  # every model is checked before the first is measured
        truncation_stages(model, stages, req.label)
    filter_sizes, truncations = [], []
    for req, model in models:
        evaluation = evaluation_data(
            model, data=args.data, checkpoint=req.checkpoint, img_size=args.img_size, max_images=args.max_images
        )
        size = args.img_size or (evaluation.img_size if evaluation else None)
        filter_sizes.append(learned_filter_sizes(model, size, name=req.label))
        r = filter_sizes[-1]
        per_stage: dict[int, list[float]] = {}
        for b in r.blocks:
            per_stage.setdefault(b.stage + 1, []).append(b.coverage)
        text = "  ".join(f"S{s}: {sum(v) / len(v):.2f}" for s, v in per_stage.items())
        print(f"{req.label:<24} mean coverage per stage at {r.img_size[0]} px: {text}")
        if evaluation is None:
            print(f"{req.label:<24} truncation skipped: no labelled data (give --data DIR or a training checkpoint)")
            continue
        loader = DataLoader(evaluation.dataset, batch_size=args.batch_size, num_workers=args.workers)
        t = truncation_curve(
            model, loader, evaluation.img_size, sizes=sizes, stages=stages, dataset=evaluation.name,
            name=req.label, progress=args.progress,
        )  # fmt: skip
        truncations.append(t)
        print(f"{req.label:<24} top-1 {t.baseline:.2f} without truncation on {t.dataset}")
        print(f"{'size':>24} " + " ".join(f"{s:>6.3g}" for s in t.sizes))
        for st, accs in t.top1.items():
            print(f"{'stage ' + str(st):>24} " + " ".join(f"{a:>6.2f}" for a in accs))
    numbers = {"filter_sizes": filter_sizes, "truncation": truncations}
    paths = save_report(
        out, "kernel-size", numbers, plot_kernel_size(filter_sizes, truncations), weights_by_label(models)
    )
    print(f"wrote {paths[0]} and {paths[1]}")
    return 0
