"""Output of the analysis tools (paper Section 5, Appendices B-D): one folder per run holding ``<tool>.png`` (the
figure) and ``<tool>.json`` (every number in it), plus the input-size check shared by the tools.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from hyenapixel.errors import UserError
from hyenapixel.paths import folder_target_problem, numbered_folder, timestamp

#: Reports longer than this (in compact JSON characters) are written without indentation.
COMPACT_JSON_ABOVE = 100_000

__all__ = ["COMPACT_JSON_ABOVE", "check_image_size", "input_size_rule", "output_dir", "save_report", "to_jsonable"]


def output_dir(tool: str, output: str | os.PathLike[str] | None = None, *, overwrite: bool = False) -> Path:
    """The folder a tool writes to, checked now and created only when :func:`save_report` writes the report, so a
    run that fails leaves no empty folder behind.

    Without ``output``: ``analysis/<tool>-<YYYYmmdd-HHMMSS>/`` in the working directory; if that folder already
    exists and is not empty, a suffix ``-2``, ``-3``, ... is added, so a run never overwrites another one. An
    explicit ``output`` is used as given, but one that holds a report of the same tool (``<tool>.json``) is
    refused unless ``overwrite`` (then that tool's files are replaced; other files stay).

    Raises:
        UserError: ``output`` is a file, holds a report of ``tool`` (without ``overwrite``), or cannot be created
            (its nearest existing parent is a file or not writable).
    """
    if output is not None:
        out = Path(output)
        if out.exists() and not out.is_dir():
            raise UserError(f"--output {out}: exists and is not a folder")
        if (out / f"{tool}.json").exists() and not overwrite:
            raise UserError(
                f"--output {out} holds the report of an earlier {tool} run ({out / f'{tool}.json'}); choose "
                "another --output or pass --overwrite to replace it"
            )
        _check_creatable(out)
        return out
    out = numbered_folder(Path("analysis") / f"{tool}-{timestamp()}", _holds_something)
    _check_creatable(out)
    return out


def _holds_something(path: Path) -> bool:
    return path.exists() and (not path.is_dir() or any(path.iterdir()))


def _check_creatable(out: Path) -> None:
    """``out`` exists as a writable folder, or can be created (see :func:`hyenapixel.paths.folder_target_problem`)."""
    problem = folder_target_problem(out)
    if problem:
        raise UserError(f"--output: {problem}")


def _make_dir(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create the output folder {out}: {exc.strerror or exc}") from None


def to_jsonable(value: Any) -> Any:
    """``value`` as plain JSON data: dataclasses and mappings become objects, tensors / arrays / tuples become
    (nested) lists, numpy and torch scalars become numbers, paths and enums strings; non-finite floats become
    ``null`` (strict JSON has no NaN or infinity)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, torch.Tensor):
        return to_jsonable(value.detach().cpu().tolist())
    if isinstance(value, np.ndarray):
        return to_jsonable(value.tolist())
    if isinstance(value, np.generic):
        return to_jsonable(value.item())
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, (bool, int, str)) or value is None:
        return value
    if isinstance(value, enum.Enum):
        return to_jsonable(value.value)
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, (list, tuple, set, frozenset)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, torch.dtype | torch.device):
        return str(value)
    raise TypeError(f"cannot convert {type(value).__name__} to JSON")


def save_report(
    out: str | os.PathLike[str], tool: str, numbers: Any, fig: Any, weights: Mapping[str, str] | None = None
) -> tuple[Path, Path]:
    """Write ``out/<tool>.json`` (``numbers`` through :func:`to_jsonable`; indented unless it exceeds
    :data:`COMPACT_JSON_ABOVE` characters) and ``out/<tool>.png`` (the matplotlib
    figure ``fig``, rendered with the Agg canvas, then closed). ``weights`` (model label -> which weights it had:
    checkpoint file and epoch, pretrained hub weights, random initialisation) is written under the figure, so that a
    figure of random weights never passes for one of trained weights. Returns ``(json_path, png_path)``."""
    if weights:
        line = "; ".join(f"{label}: {what}" for label, what in weights.items())
        fig.text(0.5, 0.0, f"weights: {line}", ha="center", va="top", fontsize=7, wrap=True)
    out = Path(out)
    _make_dir(out)
    json_path, png_path = out / f"{tool}.json", out / f"{tool}.png"
    data = to_jsonable(numbers)
    text = json.dumps(data, separators=(",", ":"), allow_nan=False)
    if len(text) < COMPACT_JSON_ABOVE:  # small reports are indented for reading; large ones (maps) stay compact
        text = json.dumps(data, indent=1, allow_nan=False)
    json_path.write_text(text + "\n")
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)  # render off-screen whatever backend pyplot may be using
    fig.savefig(png_path, dpi=fig.dpi, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return json_path, png_path


@dataclasses.dataclass(frozen=True)
class SizeRule:
    """The input sizes a model accepts: each side at least ``min_size`` and a multiple of ``multiple``, or, for
    models built for one size, exactly ``fixed``."""

    min_size: int
    multiple: int = 1
    fixed: tuple[int, int] | None = None


def _total_stride(model: nn.Module) -> int:
    info = getattr(model, "feature_info", None)
    reductions = []
    if isinstance(info, Sequence):
        reductions = [int(i["reduction"]) for i in info if isinstance(i, Mapping) and "reduction" in i]
    elif info is not None and hasattr(info, "reduction"):
        reductions = [int(r) for r in info.reduction()]
    return max(reductions, default=32)


def input_size_rule(model: nn.Module) -> SizeRule:
    """What :func:`check_image_size` enforces for ``model``.

    Hierarchical networks (the MetaFormers here, ConvNeXt, ResNet, ...) pad or round at every stride, so any side
    of at least the total stride works. Patch-embedding transformers with a fixed size (timm's ViT with
    ``strict_img_size``) accept only that size; with ``dynamic_img_size`` any multiple of the patch size.
    """
    stride = _total_stride(model)
    patch_embed = getattr(model, "patch_embed", None)
    img_size = getattr(patch_embed, "img_size", None)
    patch = getattr(patch_embed, "patch_size", None)
    if img_size is not None and patch is not None:
        p = int(max(patch)) if isinstance(patch, Sequence) else int(patch)
        if getattr(patch_embed, "strict_img_size", False) and not getattr(model, "dynamic_img_size", False):
            return SizeRule(min_size=p, multiple=p, fixed=(int(img_size[0]), int(img_size[1])))
        if not getattr(patch_embed, "dynamic_img_pad", False):
            return SizeRule(min_size=p, multiple=p)
        return SizeRule(min_size=p)
    return SizeRule(min_size=stride)


def check_image_size(model: nn.Module, size: int | Sequence[int]) -> tuple[int, int]:
    """Return ``size`` as ``(height, width)`` if ``model`` can take it, else raise a :class:`UserError` naming the
    smallest size (and the multiple, or the one fixed size) the model accepts."""
    if isinstance(size, int):
        size = (size, size)
    if len(size) != 2 or any(not isinstance(s, int) or isinstance(s, bool) for s in size):
        raise UserError(f"image size must be an int or (height, width), got {size!r}")
    h, w = int(size[0]), int(size[1])
    rule = input_size_rule(model)
    name = getattr(model, "default_cfg", {}).get("architecture") or type(model).__name__
    if rule.fixed is not None and (h, w) != rule.fixed:
        raise UserError(
            f"{name} takes only {rule.fixed[0]}x{rule.fixed[1]} px input, got {h}x{w}; use --input-size {rule.fixed[0]}"
        )
    if min(h, w) < rule.min_size:
        raise UserError(
            f"{name} needs images of at least {rule.min_size} px per side (its total stride), got {h}x{w}; "
            f"use --input-size {rule.min_size} or larger"
        )
    if rule.multiple > 1 and (h % rule.multiple or w % rule.multiple):
        raise UserError(
            f"{name} needs image sides that are multiples of {rule.multiple} px (at least {rule.min_size}), got {h}x{w}"
        )
    return h, w
