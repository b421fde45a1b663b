"""Parameters and MACs with fvcore, counting FFTs as the official code does (paper Table 1).

  hyenapixel macs --model hpx_former_s18 --model convformer_s18 --input-size 224 512
  hyenapixel macs --model hb_former_s18 --mode inference          # with the kernel cache: no filter MLPs

Prints a table (total, FFT share, the official figure where the paper or the model card gives one) and writes
macs.json (with the per-operator and per-stage breakdown) and macs.png to --output.
"""

from __future__ import annotations

import argparse

from hyenapixel.cli.args import add_input_size_argument, add_output_arguments, add_progress_argument
from hyenapixel.cli.model_args import add_model_arguments, weights_by_label

HELP = "parameters and MACs (fvcore, FFTs counted as in the paper) per model and input size"
DEFAULT_SIZE = 224  # the paper's Table 1


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_arguments(parser, default=("hpx_former_s18",))
    add_input_size_argument(
        parser, "square input sizes (default: the size a checkpoint of ours was trained at, else 224)", nargs="+"
    )
    parser.add_argument(
        "--mode",
        choices=("paper", "inference", "both"),
        default="paper",
        help="paper: filters generated in the forward, as Table 1 counts; inference: kernel spectra cached (default: "
        "paper)",
    )
    add_progress_argument(parser)
    add_output_arguments(parser, "macs")


def run(args: argparse.Namespace) -> int:
    from hyenapixel.analysis import output_dir, save_report
    from hyenapixel.analysis.macs import count_macs, plot_macs
    from hyenapixel.models import input_channels
    from hyenapixel.progress import Progress, progress_mode

    modes = ["paper", "inference"] if args.mode == "both" else [args.mode]
    out = output_dir("macs", args.output, overwrite=args.overwrite)  # before the work, not after it
    models = _models(args)
    jobs = []
    for req, model in models:
        sizes = args.img_size or [req.run_input_size or DEFAULT_SIZE]
        if args.img_size is None and req.run_input_size:
            print(f"macs: {req.label} at {sizes[0]} px, the size its checkpoint was trained at (--input-size: another)")
        jobs += [(req, model, size, mode) for size in sizes for mode in modes]
    results = []
    bar = Progress(len(jobs), "macs", progress_mode(args.progress) if len(jobs) > 1 else "none", 1, unit="count")
    try:
        for req, model, size, mode in jobs:
            results.append(count_macs(model, (input_channels(model), size, size), mode=mode, name=req.label))
            bar.update(1)
    finally:
        bar.close()
    _print(results)
    numbers = [_numbers(r) | {"weights": req.weights} for r, (req, *_) in zip(results, jobs)]
    paths = save_report(out, "macs", numbers, plot_macs(results), weights_by_label(models))
    print(f"wrote {paths[0]} and {paths[1]}")
    return 0


def _models(args: argparse.Namespace):  # noqa: ANN202
    from hyenapixel.cli.model_args import build_models

    return build_models(args.models)


def _numbers(r) -> dict:  # noqa: ANN001
    from hyenapixel.analysis import to_jsonable

    d = to_jsonable(r)
    d.update(fft_macs=r.fft_macs, official_gmacs=r.official_gmacs)
    return d


def _print(results: list) -> None:
    head = f"{'model':<22} {'size':>9} {'mode':<9} {'params':>8} {'GMACs':>8} {'FFT':>7} {'official':>9} {'diff':>7}"
    lines = [head]
    for r in results:
        off = r.official_gmacs
        diff = f"{100 * (r.macs / 1e9 - off) / off:+.1f}%" if off else ""
        lines.append(
            f"{r.model:<22} {r.input_shape[1]:>4}x{r.input_shape[2]:<4} {r.mode:<9} {r.params / 1e6:>7.2f}M "
            f"{r.macs / 1e9:>8.3f} {r.fft_macs / 1e9:>7.3f} {off if off else '':>9} {diff:>7}"
        )
    print("\n".join(lines))
