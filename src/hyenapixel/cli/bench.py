"""Runtime scaling of token mixers against resolution (paper Fig. 2), or whole-model throughput.

  hyenapixel bench                                   # mixers at the stage-1 shape, 224 px up, until a budget ends
  hyenapixel bench --mixer attention --mixer H_px --time-budget 0.5 --memory-budget 4 --device cuda
  hyenapixel bench --mode models --model hpx_former_s18 --model convformer_s18 --input-size 224 384 512

Mixer mode: attention, H_b, H_px, H_px SC and a 7x7 depthwise convolution on the (size/4) x (size/4) x 64 token map
of a size x size image; forward (inference) and forward+backward time (median of --repeats interleaved calls) and
peak extra memory for each size of --sizes until a call exceeds --time-budget seconds (its fastest repeat) or
--memory-budget GiB; each series stops on its own. Model mode: inference images/s of each --model at each
--input-size. Writes DIR/bench.png, DIR/bench.json and DIR/bench.csv; the device is named in all three.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from hyenapixel.cli.args import INPUT_SIZE_FLAGS, add_input_size_argument, add_output_arguments, add_progress_argument
from hyenapixel.cli.model_args import add_model_arguments

HELP = "runtime scaling of token mixers (Fig. 2) or model throughput"
MIXER_NAMES = ("attention", "H_b", "H_px", "H_px SC", "dwconv7x7")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--mode", choices=("mixers", "models"), default="mixers", help="mixers (Fig. 2, default) or models"
    )
    parser.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    parser.add_argument("--threads", type=int, help="CPU threads for torch (default: torch's choice)")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per point (default: 5)")
    parser.add_argument("--batch-size", type=int, help="images per call (default: 1 for mixers, 8 for models)")
    add_progress_argument(parser)
    add_output_arguments(parser, "bench")
    mixers = parser.add_argument_group("mixer mode")
    mixers.add_argument(
        "--mixer",
        dest="mixers",
        action="append",
        choices=MIXER_NAMES,
        help="a mixer to run (repeatable; default: all)",
    )
    mixers.add_argument(
        "--sizes", type=int, nargs="+", help="image sizes in px, multiples of 4 (default: 224 320 448 ... 3584)"
    )
    mixers.add_argument("--time-budget", type=float, default=1.0, help="seconds per call that end a series (1.0)")
    mixers.add_argument("--memory-budget", type=float, default=2.0, help="GiB per call that end a series (2.0)")
    mixers.add_argument(
        "--modes",
        nargs="+",
        choices=("forward", "forward_backward"),
        default=["forward", "forward_backward"],
        help="what to time (default: both)",
    )
    add_model_arguments(parser, default=("hpx_former_s18", "hb_former_s18", "convformer_s18"))
    add_input_size_argument(parser, "model mode: image sizes (224)", nargs="+", default=[224])


def run(args: argparse.Namespace) -> int:
    import torch

    from hyenapixel.analysis import output_dir
    from hyenapixel.errors import UserError
    from hyenapixel.ops.parallel import intra_op_threads

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    try:
        torch.device(device)
    except RuntimeError:
        raise UserError(f"--device {device}: not a device name; use cpu, cuda or cuda:N") from None
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA device is available here; use --device cpu")
    if args.threads is not None and args.threads < 1:
        raise UserError(f"--threads must be at least 1, got {args.threads}")
    if args.repeats < 1:
        raise UserError(f"--repeats must be at least 1, got {args.repeats}")
    if args.batch_size is not None and args.batch_size < 1:
        raise UserError(f"--batch-size must be at least 1, got {args.batch_size}")
    _check_mode_options(args)
    out = output_dir("bench", args.output, overwrite=args.overwrite)
    with intra_op_threads(args.threads):  # the process's thread count is restored after
        return _bench(args, device, out)


def _bench(args: argparse.Namespace, device: str, out: Path) -> int:
    from hyenapixel.analysis import save_report
    from hyenapixel.analysis.bench import (
        DEFAULT_SIZES,
        bench_mixers,
        bench_models,
        plot_bench,
        plot_bench_models,
    )
    from hyenapixel.progress import Progress, progress_mode

    if args.mode == "mixers":
        sizes = args.sizes or DEFAULT_SIZES
        bar = Progress(len(sizes), "bench", progress_mode(args.progress), log_interval=1, unit="size")
        try:
            result = bench_mixers(
                args.mixers,
                sizes,
                device=device,
                batch_size=args.batch_size or 1,
                repeats=args.repeats,
                time_budget_s=args.time_budget,
                memory_budget_gib=args.memory_budget,
                modes=args.modes,
                progress=lambda text: bar.update(1, at=text),  # called when a size starts
            )
        finally:
            bar.close()
        fig = plot_bench(result)
        for p in result.points:
            flag = f"  [{p.over_budget}]" if p.over_budget else ""
            print(
                f"{p.mixer:<10} {p.mode:<16} {p.size:>5} px {p.tokens:>8} tokens {1e3 * p.seconds:>10.2f} ms "
                f"{p.memory_bytes / 2**20:>9.1f} MiB{flag}"
            )
    else:
        from hyenapixel.cli.model_args import build_models

        models = [(req.label, model) for req, model in build_models(args.models)]
        result = bench_models(
            models,
            args.img_size,
            device=device,
            batch_size=args.batch_size or 8,
            repeats=args.repeats,
            progress=lambda text: print(f"bench: {text}", file=sys.stderr),
        )
        fig = plot_bench_models(result)
        for p in result.points:
            print(f"{p.model:<24} {p.size:>5} px  {p.images_per_s:>9.2f} images/s  (batch {p.batch_size})")
    json_path, png_path = save_report(out, "bench", result, fig)
    csv_path = out / "bench.csv"
    csv_path.write_text(f"# {result.device}\n" + result.to_csv())
    print(f"device: {result.device}")
    print(f"wrote {png_path}, {json_path} and {csv_path}")
    return 0


def _check_mode_options(args: argparse.Namespace) -> None:
    """Options of the other mode are an error, not silently ignored."""
    from hyenapixel.errors import UserError

    given = set(getattr(args, "_argv", None) or ())
    other = {
        "mixers": ["--model", "--checkpoint", "--pretrained", *INPUT_SIZE_FLAGS],
        "models": ["--mixer", "--sizes", "--time-budget", "--memory-budget", "--modes"],
    }[args.mode]
    wrong = [flag for flag in other if flag in given or any(a.startswith(flag + "=") for a in given)]
    if wrong:
        other_mode = "models" if args.mode == "mixers" else "mixers"
        verb = "is an option" if len(wrong) == 1 else "are options"
        raise UserError(f"{', '.join(wrong)} {verb} of --mode {other_mode}; this is --mode {args.mode}")
