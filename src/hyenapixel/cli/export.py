"""Export a model to ONNX for onnxruntime and other runtimes (deployment of the paper's Section 3 models).

  hyenapixel export --model hpx_former_s18 --checkpoint hpx_s18.pth --input-size 224 --output hpx.onnx --verify
  hyenapixel export --checkpoint runs/<run>/best.pt --input-size 32 --output run.onnx --verify --images photos/
  hyenapixel export --model hb_former_s18 --pretrained --input-size 192 256 --output hb.onnx
  hyenapixel export --format timm --checkpoint runs/<run>/best.safetensors --output hub/my_model

--format timm writes a timm hub folder instead (config.json and model.safetensors): after `import hyenapixel`,
timm.create_model("local-dir:hub/my_model", pretrained=True) rebuilds the model, and timm.models.push_to_hf_hub
publishes it.

The image size is fixed at export (each long convolution's kernel spectrum is a constant for it); the batch size
stays dynamic. --verify runs the file in onnxruntime (CPU) and prints the largest difference from PyTorch eval on
random inputs and on real images (--images files or folders; without it, rendered images of the built-in
Balance task); it exits with status 1 when a difference exceeds --tolerance.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from hyenapixel.cli.args import add_input_size_argument
from hyenapixel.cli.model_args import add_model_arguments

HELP = "export a model to ONNX (fixed image size, dynamic batch, checked in onnxruntime) or as a timm hub folder"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """--model/--checkpoint/--pretrained, the export size and output, and the verification options."""
    add_model_arguments(parser, several=False)
    g = parser.add_argument_group("export")
    g.add_argument(
        "--format",
        choices=("onnx", "timm"),
        default="onnx",
        help="onnx: an ONNX file; timm: a timm hub folder (config.json + model.safetensors) of a --checkpoint, "
        "loadable with timm.create_model('local-dir:FOLDER', pretrained=True) (default: onnx)",
    )
    add_input_size_argument(
        g,
        "input height [and width] in pixels, fixed in the exported graph (default: the model's input size)",
        nargs="+",
        metavar=("H", "W"),
    )
    g.add_argument("--output", "-o", required=True, metavar="PATH", help="ONNX file (--format timm: folder) to write")
    g.add_argument(
        "--overwrite", action="store_true", help="replace an existing --output file or hub folder (default: refuse)"
    )
    g.add_argument("--opset", type=int, default=18, help="ONNX opset version, 18 or newer (default: 18)")
    g.add_argument("--static-batch", action="store_true", help="fix the batch size at 1 (default: dynamic)")
    g.add_argument(
        "--no-scan",
        action="store_true",
        help="no ONNX Scan: run every long convolution on the whole batch (for runtimes without Scan; onnxruntime "
        "is faster with the default, which runs those of maps of 28x28 pixels or more image by image)",
    )
    v = parser.add_argument_group("verification")
    v.add_argument("--verify", action="store_true", help="compare onnxruntime (CPU) with PyTorch after exporting")
    v.add_argument("--images", nargs="+", metavar="PATH", help="image files or folders for --verify (up to 16)")
    v.add_argument("--verify-batch", type=int, default=4, help="random inputs per --verify batch (default: 4)")
    v.add_argument(
        "--tolerance", type=float, default=1e-4, help="largest accepted absolute output difference (default: 1e-4)"
    )


def run(args: argparse.Namespace) -> int:
    """Build the model, export it, optionally verify; 0 on success, 1 when verification fails."""
    import torch

    import hyenapixel  # noqa: F401 - registers the models in timm
    from hyenapixel.cli.model_args import build_models
    from hyenapixel.errors import UserError
    from hyenapixel.export import check_input_size, to_onnx, verify_onnx
    from hyenapixel.export.frozen import PER_IMAGE_MIN_PIXELS
    from hyenapixel.export.inputs import balance_images, image_files, preprocessed_images, random_images
    from hyenapixel.export.onnx import check_opset, check_output_path
    from hyenapixel.models import default_input_size, input_channels

    if len(args.models) != 1:
        raise UserError(
            f"export takes exactly one --model (with its --checkpoint or --pretrained), got {len(args.models)}"
        )
    if args.format == "timm":
        return _hub_folder(args)
    if args.verify_batch < 1:
        raise UserError(f"--verify-batch must be at least 1, got {args.verify_batch}")
    if args.images and not args.verify:
        raise UserError("--images is used by --verify; add --verify")
    if args.img_size is not None and len(args.img_size) > 2:
        raise UserError(f"--input-size takes H or H W, got {len(args.img_size)} values")
    if not args.tolerance >= 0:
        raise UserError(f"--tolerance must be >= 0, got {args.tolerance:g}")
    # everything that can be checked before the model is built and exported
    if args.img_size:
        check_input_size(args.img_size[0] if len(args.img_size) == 1 else tuple(args.img_size))
    check_opset(args.opset)
    checkpoint, output = args.models[0].checkpoint, Path(args.output)
    if checkpoint and Path(checkpoint).exists() and output.exists() and output.samefile(checkpoint):
        raise UserError(f"--output {output} is the --checkpoint file; write the ONNX file to another path")
    output = check_output_path(output)
    if output.exists() and not args.overwrite:
        raise UserError(f"{output} exists; choose another --output or pass --overwrite to replace it")
    if args.images:
        image_files(args.images)  # a missing path or a folder without images fails now, not after the export
    try:
        ((request, model),) = build_models(args.models)
    except (RuntimeError, OSError) as exc:  # timm: no hub weights for this model, or the hub cannot be reached
        if isinstance(exc, UserError):
            raise
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise UserError(f"cannot load the weights of {args.models[0].label}: {first}") from None
    in_chans, default_size = input_channels(model), list(default_input_size(model))
    given = args.img_size or default_size
    size = check_input_size(given[0] if len(given) == 1 else tuple(given))
    path = to_onnx(
        model,
        args.output,
        size,
        in_chans=in_chans,
        opset=args.opset,
        dynamic_batch=not args.static_batch,
        per_image_min_pixels=0 if args.no_scan else PER_IMAGE_MIN_PIXELS,
    )
    print(
        f"wrote {path} ({path.stat().st_size / 2**20:.1f} MiB): {request.label}, input (batch, {in_chans}, "
        f"{size[0]}, {size[1]}), batch {'fixed at 1' if args.static_batch else 'dynamic'}"
    )
    if not args.verify:
        return 0
    batch = args.verify_batch
    inputs = [("random", random_images(batch, in_chans, size))]
    if args.images:
        real = preprocessed_images(args.images, model, size, in_chans)
        inputs.append((f"images ({len(real)} files)", real))
    else:
        inputs.append(("built-in rendered images", balance_images(batch, in_chans, size)))
    with torch.no_grad():
        checks = verify_onnx(path, model, inputs)
    ok = all(c.max_abs_diff <= args.tolerance for c in checks)
    for c in checks:
        print(
            f"verify {c.label}: batch {c.batch}, max |onnxruntime - pytorch| = {c.max_abs_diff:.3g}, "
            f"top-1 agreement {c.top1_agreement:.0%}"
        )
    print(f"verification {'passed' if ok else 'FAILED'} (tolerance {args.tolerance:g})")
    sys.stdout.flush()
    return 0 if ok else 1


#: Options that only the ONNX export uses, with the value that means "not given".
_ONNX_ONLY = {
    "img_size": ("--input-size", None),
    "opset": ("--opset", 18),
    "static_batch": ("--static-batch", False),
    "no_scan": ("--no-scan", False),
    "verify": ("--verify", False),
    "images": ("--images", None),
}


def _hub_folder(args: argparse.Namespace) -> int:
    """``--format timm``: the checkpoint as a timm hub folder (:func:`hyenapixel.models.save_hub_folder`)."""
    from hyenapixel.errors import UserError
    from hyenapixel.models import save_hub_folder

    given = [flag for name, (flag, unset) in _ONNX_ONLY.items() if getattr(args, name) != unset]
    if given:
        raise UserError(f"{', '.join(given)}: ONNX options; --format timm writes the weights as they are")
    request = args.models[0]
    if not request.checkpoint:
        raise UserError("--format timm needs a --checkpoint (a run's best.pt/best.safetensors or an official file)")
    folder = save_hub_folder(request.checkpoint, args.output, name=request.name, overwrite=args.overwrite)
    print(
        f"wrote {folder / 'config.json'} and {folder / 'model.safetensors'}; load it with "
        f"timm.create_model('local-dir:{folder}', pretrained=True) after import hyenapixel"
    )
    return 0
