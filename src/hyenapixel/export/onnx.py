"""ONNX export of HyenaPixel models and its check in onnxruntime (deployment of the paper's Section 3 models).

:func:`to_onnx` freezes the long convolutions for the export size (:func:`~hyenapixel.export.freeze_long_convs`:
kernel spectra as constants, transforms as DFT matrix products or, on small maps, direct convolutions), exports
with the ``torch.export``-based ONNX exporter (onnxscript) with a dynamic batch dimension, and :func:`verify_onnx`
runs the file in onnxruntime on the CPU provider against the PyTorch model. ``onnx``, ``onnxscript`` and
``onnxruntime`` (the ``export`` extra) are imported only here, inside the functions that need them.
"""

from __future__ import annotations

import contextlib
import io
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from hyenapixel.errors import error_lines
from hyenapixel.export.frozen import (
    DIRECT_MAX_PIXELS,
    PER_IMAGE_MIN_PIXELS,
    ExportError,
    freeze_long_convs,
    image_shape,
    mlps_as_convolutions,
)
from hyenapixel.models import input_channels
from hyenapixel.paths import file_target_problem

__all__ = ["MIN_OPSET", "OnnxCheck", "check_opset", "check_output_path", "onnx_session", "run_onnx", "to_onnx",
           "verify_onnx"]  # fmt: skip

INPUT_NAME, OUTPUT_NAME = "image", "output"
#: The oldest ONNX opset torch's exporter writes (older ones fail in onnx's version converter).
MIN_OPSET = 18


def _require(module: str) -> None:
    try:
        __import__(module)
    except ImportError:
        raise ExportError(
            f"ONNX export needs the '{module}' package: pip install 'hyenapixel[export]' "
            "(onnx, onnxscript, onnxruntime)"
        ) from None


def to_onnx(
    model: nn.Module,
    path: str | os.PathLike,
    input_size: tuple[int, ...] | int,
    *,
    in_chans: int | None = None,
    opset: int = 18,
    dynamic_batch: bool = True,
    direct_max_pixels: int = DIRECT_MAX_PIXELS,
    per_image_min_pixels: int = PER_IMAGE_MIN_PIXELS,
    fold_mlps: bool = True,
) -> Path:
    """Export ``model`` (eval) to an ONNX file for ``input_size`` images (``H``, ``(H, W)`` or timm's ``(C, H, W)``,
    e.g. ``model.pretrained_cfg["input_size"]``); returns the path written.

    The spatial size is fixed (the kernel spectra are constants for it), the batch size is dynamic unless
    ``dynamic_batch=False`` (then 1). HyenaPixel maps of at most ``direct_max_pixels`` pixels are exported as
    direct convolutions, larger ones as DFT products (see :func:`~hyenapixel.export.freeze_long_convs`); those of
    maps (Hyena: sequences) of at least ``per_image_min_pixels`` pixels run image by image in an ONNX ``Scan``
    (0, and always with a static batch of 1: none, every operator runs on the whole batch); ``fold_mlps`` folds the
    channel MLPs' StarReLUs into their second layers (:meth:`~hyenapixel.layers.Mlp.fold_star_relu`), which are then
    written as 1x1 convolutions (:class:`~hyenapixel.layers.PointwiseConvMlp`). ``model`` itself
    is not changed. Models without long convolutions (any timm model the exporter handles) are exported as they
    are. An existing file at ``path`` is replaced only if it is an ``.onnx`` file.

    Raises:
        ExportError: an input size the model cannot take, a model the exporter cannot translate, a missing
            ``export`` extra, or an output path that cannot be written.

    Shape:
        the graph: ``image`` (B, in_chans, H, W) float32 -> ``output`` (B, ...) as ``model``
    """
    _require("onnxscript")
    _require("onnx")
    (h, w), in_chans = image_shape(input_size, in_chans)
    check_opset(opset)
    path = check_output_path(path)
    per_image = per_image_min_pixels if dynamic_batch else 0  # a Scan over one image only adds its overhead
    frozen = freeze_long_convs(model, (h, w), in_chans, direct_max_pixels, per_image, fold_mlps).cpu()  # float32
    mlps_as_convolutions(frozen)  # the folded MLPs as 1x1 convolutions: onnxruntime's blocked layout, ReLU fused
    chans = in_chans or input_channels(frozen)
    # a dynamic batch is traced at 2 (torch.export specialises a size of 1); a static batch is 1
    x = torch.randn(2 if dynamic_batch else 1, chans, h, w)
    dynamic = {"x": {0: torch.export.Dim("batch", min=1, max=4096)}} if dynamic_batch else None
    arg_name = _forward_arg_name(frozen)
    if dynamic is not None:
        dynamic = {arg_name: dynamic["x"]}
    log = io.StringIO()
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(log):
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                frozen,
                (x,),
                dynamo=True,
                dynamic_shapes=dynamic,
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                opset_version=opset,
                optimize=True,
                verbose=False,
            )
    except Exception as exc:  # noqa: BLE001 - the exporter raises many types; report the first line
        name = type(model).__name__
        raise ExportError(
            f"{name} cannot be exported to ONNX ({type(exc).__name__}: {error_lines(exc, limit=300)}); supported are "
            "the HyenaPixel families (hpx, hb, c_hpx, hpx_a, hb_a) and timm models the torch.onnx exporter translates"
        ) from None
    written = program.model.opset_imports.get("")
    if written != opset:
        raise ExportError(f"the exporter could not write opset {opset} (it produced {written}); choose another opset")
    path.parent.mkdir(parents=True, exist_ok=True)
    program.save(str(path), external_data=_needs_external_data(frozen))
    return path


def check_opset(opset: int) -> None:
    """Raise :class:`ExportError` for an ONNX opset the exporter cannot write (torch's exporter writes 18 and
    newer; older ones fail in the version converter)."""
    if opset < MIN_OPSET:
        raise ExportError(f"opset {opset} is not supported: the exporter writes opset {MIN_OPSET} or newer")


def check_output_path(path: str | os.PathLike) -> Path:
    """``path`` as a :class:`~pathlib.Path` if an ONNX file can be written there, else :class:`ExportError`. An
    existing file is replaced only if its name ends in ``.onnx`` (a checkpoint or any other file is never
    overwritten by an export); missing parent folders are created by the export."""
    path = Path(path)
    problem = file_target_problem(path, "model.onnx")
    if problem is not None:
        raise ExportError(problem)
    if path.exists() and path.suffix.lower() != ".onnx":
        raise ExportError(
            f"{path} exists and is not an .onnx file; an export replaces only .onnx files: remove it or choose "
            "another path"
        )
    return path


def _forward_arg_name(model: nn.Module) -> str:
    import inspect

    params = [p for p in inspect.signature(model.forward).parameters.values() if p.kind != p.VAR_KEYWORD]
    return params[0].name if params else "x"


def _needs_external_data(model: nn.Module) -> bool:
    """Weights and constants over ~1.8 GB cannot live inside one protobuf file (2 GB limit)."""
    size = sum(t.numel() * t.element_size() for t in (*model.parameters(), *model.buffers()))
    return size > 1800 * 2**20


def onnx_session(  # noqa: ANN201 - onnxruntime type
    path: str | os.PathLike, threads: int | None = None, profile_prefix: str | os.PathLike | None = None
):
    """An onnxruntime inference session on the CPU provider (``threads``: intra-op threads, default: all).

    ``profile_prefix``: record onnxruntime's per-node profile (``SessionOptions.enable_profiling``) into a JSON
    file whose path starts with it; ``session.end_profiling()`` writes the file and returns its path.
    """
    _require("onnxruntime")
    import onnxruntime as ort

    path = Path(path)
    if not path.is_file():
        raise ExportError(f"ONNX file not found: {path}")
    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
    opts.log_severity_level = 3
    if profile_prefix is not None:
        opts.enable_profiling = True
        opts.profile_file_prefix = str(profile_prefix)
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def run_onnx(session, x: torch.Tensor) -> torch.Tensor:  # noqa: ANN001 - onnxruntime session
    """Run ``session`` on ``x`` (converted to float32 numpy) and return its first output as a tensor; a graph with
    a fixed batch size runs ``x`` in slices of that size.

    Shape:
        (B, C, H, W) -> (B, ...)
    """
    spec = session.get_inputs()[0]
    fixed = spec.shape[0] if isinstance(spec.shape[0], int) else x.shape[0]
    x = x.detach().cpu().float()
    outs = [session.run(None, {spec.name: x[i : i + fixed].numpy()})[0] for i in range(0, x.shape[0], fixed)]
    return torch.cat([torch.from_numpy(o) for o in outs])


@dataclass(frozen=True)
class OnnxCheck:
    """Result of :func:`verify_onnx` for one set of inputs."""

    label: str
    batch: int
    max_abs_diff: float
    top1_agreement: float


def verify_onnx(
    path: str | os.PathLike,
    model: nn.Module,
    inputs: Sequence[tuple[str, torch.Tensor]],
    threads: int | None = None,
) -> list[OnnxCheck]:
    """Compare the ONNX file in onnxruntime (CPU) with ``model`` in eval (float32, no grad) on each labelled batch.

    Shape:
        inputs: (label, (B, C, H, W)) pairs at the export size
    """
    session = onnx_session(path, threads)
    was_training = model.training
    model.eval()
    results = []
    try:
        for label, x in inputs:
            with torch.no_grad():
                ref = model(x.to(next(model.parameters()).device)).float().cpu()
            got = run_onnx(session, x)
            if got.shape != ref.shape:
                raise ExportError(f"ONNX output shape {tuple(got.shape)} differs from PyTorch's {tuple(ref.shape)}")
            diff = (got - ref).abs().max().item()
            agree = (got.argmax(-1) == ref.argmax(-1)).float().mean().item() if ref.dim() == 2 else float("nan")
            results.append(OnnxCheck(label, x.shape[0], diff, agree))
    finally:
        model.train(was_training)
    return results
