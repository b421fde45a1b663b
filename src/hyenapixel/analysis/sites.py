"""Where the token mixers of a model sit (stage, block) and the feature-map size each one sees: the common ground
of the kernel analyses of paper Section 5 and Appendix D (Fig. 5, 6, 7, 11, 12).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from hyenapixel.errors import UserError
from hyenapixel.mixers import HyenaMixer1d, HyenaPixelMixer

__all__ = ["LONG_CONV_MIXERS", "MixerSite", "feature_sizes", "long_conv_sites", "mixer_sites", "model_name"]

#: The mixers whose long-convolution filters the kernel tools analyse.
LONG_CONV_MIXERS: tuple[type[nn.Module], ...] = (HyenaPixelMixer, HyenaMixer1d)

_BLOCK = re.compile(r"(?:^|\.)stages\.(\d+)\.blocks\.(\d+)\.token_mixer$")


@dataclass
class MixerSite:
    """One token mixer: its module path, stage and block (0-based) and the module."""

    name: str
    stage: int
    block: int
    module: nn.Module


def model_name(model: nn.Module) -> str:
    """The timm architecture name, else the class name."""
    cfg = getattr(model, "pretrained_cfg", None) or getattr(model, "default_cfg", None) or {}
    return cfg.get("architecture") or type(model).__name__


def mixer_sites(model: nn.Module) -> list[MixerSite]:
    """Every ``stages.<i>.blocks.<j>.token_mixer`` of a MetaFormer-style model, in order."""
    sites = []
    for name, module in model.named_modules():
        match = _BLOCK.search(name)
        if match:
            sites.append(MixerSite(name, int(match.group(1)), int(match.group(2)), module))
    return sites


def long_conv_sites(model: nn.Module, tool: str = "this tool") -> list[MixerSite]:
    """The sites whose mixer has a HyenaPixel or Hyena long-convolution filter (anywhere in the model: mixers
    outside the MetaFormer layout are numbered in order as stage 0); a :class:`UserError` if there are none."""
    sites = [s for s in mixer_sites(model) if isinstance(s.module, LONG_CONV_MIXERS)]
    if not sites:
        others = [(n, m) for n, m in model.named_modules() if isinstance(m, LONG_CONV_MIXERS)]
        sites = [MixerSite(n, 0, j, m) for j, (n, m) in enumerate(others)]
    if not sites:
        raise UserError(
            f"{model_name(model)} has no HyenaPixel or Hyena long-convolution filters, so {tool} has nothing to "
            "show; use a model with HyenaPixel (hpx_former_*, c_hpx_former_*, hpx_a_former_*) or bidirectional "
            "Hyena (hb_former_*, hb_a_former_*) mixers"
        )
    return sites


def default_input_size(model: nn.Module) -> tuple[int, int]:
    """The input size a model was built for (its pretrained config), else 224 x 224."""
    cfg = getattr(model, "pretrained_cfg", None) or {}
    size = cfg.get("input_size") or (3, 224, 224)
    return int(size[-2]), int(size[-1])


@torch.inference_mode()
def feature_sizes(
    model: nn.Module, sites: Sequence[MixerSite], img_size: int | Sequence[int] | None = None
) -> dict[str, tuple[int, int]]:
    """The (H, W) of the channels-last feature map each site's mixer receives for one image of ``img_size``
    (default: the model's own input size), measured with forward pre-hooks on a zero image.

    Shape:
        img_size (H, W) -> {site name: (h, w)}
    """
    from hyenapixel.analysis.report import check_image_size

    size = default_input_size(model) if img_size is None else img_size
    h, w = check_image_size(model, size)
    found: dict[str, tuple[int, int]] = {}
    handles = []
    for s in sites:

        def hook(_module: nn.Module, args: tuple, name: str = s.name) -> None:
            found[name] = (int(args[0].shape[1]), int(args[0].shape[2]))  # (B, H, W, C)

        handles.append(s.module.register_forward_pre_hook(hook))
    param = next(model.parameters(), None)
    in_chans = int(getattr(model, "in_chans", 3) or 3)
    was_training = model.training
    try:
        model.eval()
        model(torch.zeros(1, in_chans, h, w, device=param.device if param is not None else None))
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    return found
