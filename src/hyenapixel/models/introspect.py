"""What the tools above the models need to know about a model, asked in one place: its name, input channels,
input size and data config, the long-convolution mixers (paper Section 3) and the feature-map size each module sees.

Training, analysis, dense prediction and export all use these functions; none of them restates the lookups.
Works for the registered HyenaPixel / Hyena families and, where it makes sense, for any timm model.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from hyenapixel.mixers import HyenaMixer1d, HyenaPixelMixer

__all__ = [
    "LONG_CONV_MIXERS",
    "hyenapixel_kernel_sizes",
    "data_config",
    "default_input_size",
    "input_channels",
    "input_side",
    "model_name",
    "module_inputs",
    "stage_sizes",
]

#: The token mixers with an implicit long convolution: HyenaPixel (2D) and the 1D Hyena mixers (bidirectional and
#: causal). Export freezes their convolutions; the kernel analyses read their filters.
LONG_CONV_MIXERS: tuple[type[nn.Module], ...] = (HyenaPixelMixer, HyenaMixer1d)


def _pretrained_cfg(model: nn.Module) -> dict[str, Any]:
    return dict(getattr(model, "pretrained_cfg", None) or getattr(model, "default_cfg", None) or {})


def model_name(model: nn.Module) -> str:
    """The timm architecture name (``hpx_former_s18``), else the class name."""
    return _pretrained_cfg(model).get("architecture") or type(model).__name__


def hyenapixel_kernel_sizes(model: nn.Module) -> list[tuple[int, int]]:
    """The long-kernel size (rows, columns) of every HyenaPixel mixer of ``model``, in module order."""
    return [tuple(m.filter.kernel_size) for m in model.modules() if isinstance(m, HyenaPixelMixer)]


def input_channels(model: nn.Module) -> int:
    """Image channels the model takes: its ``in_chans`` attribute (MetaFormer, most timm models), else the input
    channels of its first 2D convolution (the stem), else its pretrained config's, else 3."""
    chans = getattr(model, "in_chans", None)
    if isinstance(chans, int) and not isinstance(chans, bool) and chans > 0:
        return chans
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            return int(module.in_channels)
    return int((_pretrained_cfg(model).get("input_size") or (3,))[0])


def input_side(value: Any) -> int | None:
    """The image side length of a stored ``input_size``: ``(C, H, W)`` (timm's form, and what our checkpoints store)
    or a side length (older files); None stays None."""
    if value is None:
        return None
    return int(value) if isinstance(value, int) else int(list(value)[-1])


def default_input_size(model: nn.Module) -> tuple[int, int]:
    """``(H, W)`` the model was built for (its pretrained config's ``input_size``), else 224 x 224."""
    size = _pretrained_cfg(model).get("input_size") or (3, 224, 224)
    return int(size[-2]), int(size[-1])


def data_config(model: nn.Module | str) -> dict[str, Any]:
    """Evaluation data settings of a model or a registered model name, resolved by timm's
    ``resolve_data_config`` from the pretrained config (ImageNet mean/std, crop 0.875 and bicubic where the config
    does not say): ``input_size`` (the side length, an int), ``mean``, ``std`` (tuples), ``crop_pct`` (float) and
    ``interpolation``. A name is looked up without building the model."""
    from timm.data import resolve_data_config
    from timm.models import get_pretrained_cfg

    if isinstance(model, str):
        pcfg = get_pretrained_cfg(model)
        cfg = resolve_data_config(pretrained_cfg=pcfg.to_dict() if pcfg is not None else {}, use_test_size=False)
    else:
        cfg = resolve_data_config(pretrained_cfg=_pretrained_cfg(model), model=model, use_test_size=False)
    return {
        "input_size": int(cfg["input_size"][-1]),
        "mean": tuple(float(v) for v in cfg["mean"]),
        "std": tuple(float(v) for v in cfg["std"]),
        "crop_pct": float(cfg["crop_pct"]),
        "interpolation": str(cfg["interpolation"]),
    }


def module_inputs(
    model: nn.Module,
    modules: Mapping[str, nn.Module],
    image_size: int | Sequence[int],
    in_chans: int | None = None,
) -> dict[str, torch.Size]:
    """The shape of the first input each of ``modules`` (name -> submodule of ``model``) receives when ``model``
    runs in eval on one zero image of ``image_size``. The model's mode is restored; no gradient is recorded.
    Modules the forward does not reach are missing from the result. Whatever the model raises for an input it cannot
    take propagates: callers word it in their own error type.

    Shape:
        image (1, in_chans, H, W) -> {name: shape of that module's input, e.g. (1, h, w, C) for a token mixer}
    """
    h, w = (image_size, image_size) if isinstance(image_size, int) else (int(image_size[0]), int(image_size[1]))
    found: dict[str, torch.Size] = {}

    def recorder(name: str):  # noqa: ANN202 - a forward pre-hook
        def record(_module: nn.Module, args: tuple) -> None:
            found.setdefault(name, args[0].shape)

        return record

    handles = [module.register_forward_pre_hook(recorder(name)) for name, module in modules.items()]
    param = next(model.parameters(), None)
    device = param.device if param is not None else None
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, in_chans or input_channels(model), h, w, device=device))
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    return found


def _conv_out(size: int, conv: nn.Conv2d, axis: int) -> int:
    k, s, p, d = conv.kernel_size[axis], conv.stride[axis], conv.padding[axis], conv.dilation[axis]
    return (size + 2 * p - d * (k - 1) - 1) // s + 1


def stage_sizes(model: nn.Module, height: int, width: int) -> list[tuple[int, int]]:
    """The exact ``(h, w)`` of each stage output of a MetaFormer for an input of ``height x width``, from the
    arithmetic of its stem and downsampling convolutions (no forward pass).

    The 7x7 stride-4 stem gives ``floor((H - 3) / 4) + 1`` and each stride-2 downsampling ``ceil(h / 2)``, so sizes
    that are not multiples of 32 give maps slightly larger than ``H / stride`` (e.g. 800x1333 -> 200x333, 100x167,
    50x84, 25x42).
    """
    h = _conv_out(height, model.stem.conv, 0)
    w = _conv_out(width, model.stem.conv, 1)
    sizes = []
    for stage in model.stages:
        conv = getattr(stage.downsample, "conv", None)
        if conv is not None:
            h, w = _conv_out(h, conv, 0), _conv_out(w, conv, 1)
        sizes.append((h, w))
    return sizes
