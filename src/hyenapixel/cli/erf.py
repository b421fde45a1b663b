"""Effective receptive field of one or more models (paper Section 5, Fig. 4; Appendix B, Fig. 8).

  hyenapixel erf --model hpx_former_s18 --pretrained --model convformer_s18 --pretrained
  hyenapixel erf --model hpx_former_s18 --checkpoint runs/x/best.pt --images ~/val_subset --input-size 1024

Without --images the built-in scikit-image photos are used (cycled up to --num-images). Writes erf.png (the maps
side by side), erf.json (area ratios and the plotted maps) and erf.npz (the full-resolution accumulated gradients).
"""

from __future__ import annotations

import argparse

from hyenapixel.cli.args import add_input_size_argument, add_output_arguments, add_progress_argument
from hyenapixel.cli.model_args import add_model_arguments

HELP = "effective receptive field (gradient of the centre output) of one or more models"
DEFAULT_SIZE = 1024  # the paper's Fig. 4 and 8


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_arguments(parser, default=("hpx_former_s18",))
    parser.add_argument("--images", metavar="DIR", help="folder of images (default: the built-in photos)")
    parser.add_argument("--num-images", type=int, default=50, metavar="N", help="images summed (default: 50)")
    add_input_size_argument(
        parser, f"square image size (default: the size a checkpoint of ours was trained at, else {DEFAULT_SIZE})"
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        metavar="B",
        help="images per forward and backward (default: about 8 x 224^2 pixels per batch; 1 at 1024 px)",
    )
    add_progress_argument(parser)
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
    sizes = [args.img_size or req.run_input_size or DEFAULT_SIZE for req, _ in models]
    for (req, model), size in zip(models, sizes):
        check_image_size(model, size)
        if args.img_size is None and req.run_input_size:
            print(f"erf: {req.label} at {size} px, the size its checkpoint was trained at (--input-size sets another)")
    results, used = [], []
    cache: dict = {}
    for (req, model), size in zip(models, sizes):
        own = _run_images(req, model, args.num_images) if args.images is None and size == req.run_input_size else None
        if own is not None:
            images, names = own
        else:
            data = data_config(model)  # a checkpoint of ours: its run's normalisation
            key = (data["mean"], data["std"], size)
            if key not in cache:
                cache[key] = load_images(args.images, size=size, num=args.num_images, mean=key[0], std=key[1])
            images, names = cache[key], cache[key].names
        results.append(
            erf(
                model,
                images,
                batch_size=args.batch_size,
                progress=args.progress,
                name=req.label,
                weights=req.weights,
            )
        )
        used.append(names)
    for r in results:
        ratios = "  ".join(f"{t:.0%}: {'not reached' if v is None else f'{v:.4f}'}" for t, v in r.area_ratio.items())
        print(f"{r.model:<24} {ratios}")
    numbers = [
        r.numbers() | {"checkpoint": req.checkpoint, "pretrained": req.pretrained, "images": names}
        for r, (req, _), names in zip(results, models, used)
    ]
    paths = save_report(out, "erf", numbers, plot_erf(results))
    np.savez_compressed(out / "erf.npz", **{f"{i}_{r.model}": r.raw.numpy() for i, r in enumerate(results)})
    print(f"wrote {paths[0]}, {paths[1]} and {out / 'erf.npz'}")
    return 0


def _run_images(req, model, num: int):  # noqa: ANN001, ANN202 - a ModelRequest and its model
    """The validation images of a checkpoint's own run (its built-in task or image folder, as ``kernel-size`` uses
    them), normalised as the run's data, with their names; None (and a line saying why) where they cannot be had."""
    import torch

    from hyenapixel.analysis.kernel_size import evaluation_data
    from hyenapixel.errors import UserError

    try:
        data = evaluation_data(model, checkpoint=req.checkpoint, max_images=num)
    except UserError as exc:  # the run's image folder is not on this machine, for example
        print(f"erf: {req.label}: not its run's images ({exc}); the built-in photos instead (--images sets others)")
        return None
    if data is None:
        return None
    images = torch.stack([data.dataset[i][0] for i in range(len(data.dataset))])
    print(f"erf: {req.label} on {data.name}, its run's validation images (--images sets others)")
    return images, [f"{data.name.split(' (')[0]} #{i}" for i in range(len(images))]
