"""FGVis visual explanations (paper Appendix C, Fig. 9/10): which pixels the predicted class needs.

  hyenapixel explain --model hpx_former_s18 --checkpoint hpx.pth --model convformer_s18 --pretrained
  hyenapixel explain --model resnet18 --images photos/ --num-images 4 --input-size 224

For each image and model, a mask (initialised to 1) is optimised with SGD (lr 0.1) to delete the pixels the
predicted class needs, with the loss y_e - lambda * ||m||_1, until the top class changes (at most --max-iter
iterations); lambda starts at --lam and is divided by --lam-factor until a run stops early. Activations are held
within the bounds measured on the unmasked image (--defense clamp; 'filter' only masks their gradients, 'none'
switches the defense off). Writes DIR/explain.png (input, explanation, mean mask per model), DIR/explain.json (the
numbers) and DIR/explain_masks.npz (the masks).
"""

from __future__ import annotations

import argparse

from hyenapixel.cli.args import add_input_size_argument, add_output_arguments, add_progress_argument
from hyenapixel.cli.model_args import add_model_arguments, weights_by_label

HELP = "FGVis explanations: the pixels a prediction needs (Appendix C, Fig. 9/10)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_arguments(parser, default=("hpx_former_s18",))
    parser.add_argument("--images", metavar="DIR", help="folder of images (default: the built-in photos)")
    parser.add_argument("--num-images", type=int, default=1, help="images to explain (default: 1)")
    add_input_size_argument(parser, "image side in px (default: 224)", default=224)
    parser.add_argument("--target", type=int, help="class to explain (default: each image's top class)")
    parser.add_argument("--lam", type=float, default=1e-4, help="first sparsity weight lambda (default: 1e-4)")
    parser.add_argument(
        "--lam-factor",
        type=float,
        default=10.0,
        help="lambda is divided by this after a run without early stop (default: 10)",
    )
    parser.add_argument("--max-tries", type=int, default=6, help="lambda values tried at most (default: 6)")
    parser.add_argument("--max-iter", type=int, default=500, help="iterations per lambda (default: 500)")
    parser.add_argument("--lr", type=float, default=0.1, help="SGD learning rate (default: 0.1)")
    parser.add_argument("--noise", type=float, default=0.1, help="std of the input noise (default: 0.1)")
    parser.add_argument(
        "--defense",
        choices=("clamp", "filter", "none"),
        default="clamp",
        help="clamp: hold activations in their bounds (default); filter: only mask their gradients; none",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the input noise (default: 0)")
    parser.add_argument(
        "--mean", type=float, nargs=3, help="normalisation mean the model was trained with (default: its cfg's)"
    )
    parser.add_argument("--std", type=float, nargs=3, help="normalisation std (default: the model cfg's)")
    add_progress_argument(parser)
    add_output_arguments(parser, "explain")


def run(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from hyenapixel.analysis import check_image_size, load_images, output_dir, save_report
    from hyenapixel.analysis.explain import ClampToBounds, FilterGradients, explain, plot_explain
    from hyenapixel.cli.model_args import build_models
    from hyenapixel.errors import UserError
    from hyenapixel.progress import Progress, progress_mode

    if args.num_images < 1:
        raise UserError(f"--num-images must be at least 1, got {args.num_images}")
    rules = {
        "--lam": (args.lam > 0, "> 0"),
        "--lam-factor": (args.lam_factor > 1, "> 1"),
        "--max-tries": (args.max_tries >= 1, ">= 1"),
        "--max-iter": (args.max_iter >= 1, ">= 1"),
        "--lr": (args.lr > 0, "> 0"),
        "--noise": (args.noise >= 0, ">= 0"),
    }
    for flag, (ok, rule) in rules.items():
        if not ok:
            raise UserError(f"{flag} must be {rule}, got {getattr(args, flag[2:].replace('-', '_')):g}")
    if args.std is not None and min(args.std) <= 0:
        raise UserError(f"--std must be positive, got {args.std}")
    defense = {"clamp": ClampToBounds(), "filter": FilterGradients(), "none": None}[args.defense]
    images = load_images(args.images, size=args.img_size, num=args.num_images, cycle=False)
    if len(images.names) < args.num_images:
        print(f"explain: only {len(images.names)} images to explain, fewer than --num-images {args.num_images}")
    models = build_models(args.models)
    for _, model in models:
        check_image_size(model, args.img_size)
    out = output_dir("explain", args.output, overwrite=args.overwrite)
    results = []
    worst = len(images) * len(models) * args.max_tries * args.max_iter
    bar = Progress(worst, "explain", progress_mode(args.progress), log_interval=max(worst // 20, 1), unit="it")
    try:
        for req, model in models:
            for name, raw in zip(images.names, images.raw):
                gen = torch.Generator().manual_seed(args.seed)
                result = explain(
                    model,
                    raw,
                    target=args.target,
                    lam=args.lam,
                    lam_factor=args.lam_factor,
                    max_tries=args.max_tries,
                    max_iter=args.max_iter,
                    lr=args.lr,
                    noise=args.noise,
                    defense=defense,
                    mean=args.mean,
                    std=args.std,
                    generator=gen,
                    progress=bar.update,
                )
                result.label, result.name = req.label, name
                results.append(result)
                bar.set_total(bar.total - (args.max_tries * args.max_iter - sum(t.iterations for t in result.tries)))
    finally:
        bar.close()
    numbers = {
        "settings": {k: getattr(args, k) for k in ("img_size", "lam", "lam_factor", "max_tries", "max_iter", "lr")}
        | {"noise": args.noise, "defense": args.defense, "seed": args.seed},
        # what each model's inputs were normalised with (--mean/--std, else the model's or its run's data config)
        "normalisation": {r.label: {"mean": list(r.mean), "std": list(r.std)} for r in results},
        "results": [r.numbers() for r in results],
    }
    json_path, png_path = save_report(out, "explain", numbers, plot_explain(results), weights_by_label(models))
    masks_path = out / "explain_masks.npz"
    np.savez_compressed(masks_path, **{f"{r.label}/{r.name}": r.mask.numpy() for r in results})
    for r in results:
        stop = f"stopped at iteration {r.iterations}" if r.stopped_early else "never stopped early"
        print(
            f"{r.label:<24} {r.name:<16} class {r.target} (p={r.score:.3f}) -> {r.final_class}: lambda {r.lam:.0e}, "
            f"{stop}, {100 * r.deleted_fraction:.1f} % deleted, {r.seconds:.1f} s"
        )
        if r.undecided:
            print(
                f"  undecided: the input noise alone switched class {r.target} (lead {r.margin:.3f} over the next "
                "class), so the mask deletes nothing; this image has no explanation at these settings (try "
                "--noise 0)"
            )
    print(f"wrote {png_path}, {json_path} and {masks_path}")
    return 0
