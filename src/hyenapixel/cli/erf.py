"""Effective receptive field of one or more models (paper Section 5, Fig. 4; Appendix B, Fig. 8).

  hyenapixel erf --model hpx_former_s18 --pretrained --model convformer_s18 --pretrained
  hyenapixel erf --model hpx_former_s18 --checkpoint runs/x/best.pt --images ~/val_subset --img-size 1024

Without --images the built-in scikit-image photos are used (cycled up to --num-images). Writes erf.png (the maps
side by side), erf.json (area ratios and the plotted maps) and erf.npz (the full-resolution accumulated gradients).
"""

from __future__ import annotations

import argparse

from hyenapixel.cli.args import add_output_arguments
from hyenapixel.cli.model_args import add_model_arguments

HELP = "effective receptive field (gradient of the centre output) of one or more models"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_arguments(parser, default=("hpx_former_s18",))
    parser.add_argument("--images", metavar="DIR", help="folder of images (default: the built-in photos)")
    parser.add_argument("--num-images", type=int, default=50, metavar="N", help="images summed (default: 50)")
    parser.add_argument("--img-size", type=int, default=1024, metavar="PX", help="square image size (default: 1024)")
    parser.add_argument(
        "--batch-size",
        type=int,
        metavar="B",
        help="images per forward and backward (default: about 8 x 224^2 pixels per batch; 1 at 1024 px)",
    )
    add_output_arguments(parser, "erf")


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from hyenapixel.analysis import check_image_size, load_images, output_dir, save_report
    from hyenapixel.analysis.erf import erf, plot_erf
    from hyenapixel.cli.model_args import build_models
    from hyenapixel.errors import UserError
    from hyenapixel.models import data_config

    if args.num_images < 1 or (args.batch_size is not None and args.batch_size < 1):
        raise UserError("--num-images and --batch-size must be positive")
    out = output_dir("erf", args.output, overwrite=args.overwrite)  # before the work, not after it
    models = build_models(args.models)
    for _, model in models:
        check_image_size(model, args.img_size)
    results, used = [], []
    cache: dict = {}
    for req, model in models:
        data = data_config(model)
        norm = (data["mean"], data["std"])
        if norm not in cache:
            cache[norm] = load_images(args.images, size=args.img_size, num=args.num_images, mean=norm[0], std=norm[1])
        results.append(erf(model, cache[norm], batch_size=args.batch_size, progress=True, name=req.label))
        used.append(cache[norm])
    for r in results:
        ratios = "  ".join(f"{t:.0%}: {'not reached' if v is None else f'{v:.4f}'}" for t, v in r.area_ratio.items())
        print(f"{r.model:<24} {ratios}")
    numbers = [
        r.numbers() | {"checkpoint": req.checkpoint, "pretrained": req.pretrained, "images": images.names}
        for r, (req, _), images in zip(results, models, used)
    ]
    paths = save_report(out, "erf", numbers, plot_erf(results))
    np.savez_compressed(out / "erf.npz", **{f"{i}_{r.model}": r.raw.numpy() for i, r in enumerate(results)})
    print(f"wrote {paths[0]}, {paths[1]} and {out / 'erf.npz'}")
    return 0
