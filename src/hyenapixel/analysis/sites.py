"""Where the token mixers of a model sit (stage, block) and the feature-map size each one sees: the common ground
of the kernel analyses of paper Section 5 and Appendix D (Fig. 5, 6, 7, 11, 12).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from torch import nn

from hyenapixel.errors import UserError
from hyenapixel.models import LONG_CONV_MIXERS, default_input_size, model_name, module_inputs

__all__ = ["MixerSite", "mixer_map_sizes", "long_conv_sites", "mixer_sites"]

_BLOCK = re.compile(r"(?:^|\.)stages\.(\d+)\.blocks\.(\d+)\.token_mixer$")


@dataclass
class MixerSite:
    """One token mixer: its module path, stage and block (0-based) and the module."""

    name: str
    stage: int
    block: int
    module: nn.Module


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


def mixer_map_sizes(
    model: nn.Module, sites: Sequence[MixerSite], img_size: int | Sequence[int] | None = None
) -> dict[str, tuple[int, int]]:
    """The (H, W) of the channels-last feature map each site's mixer receives for one image of ``img_size``
    (default: the model's own input size), measured with forward pre-hooks on a zero image.

    Shape:
        img_size (H, W) -> {site name: (h, w)}
    """
    from hyenapixel.analysis.report import check_image_size

    size = default_input_size(model) if img_size is None else img_size
    shapes = module_inputs(model, {s.name: s.module for s in sites}, check_image_size(model, size))
    return {name: (int(shape[1]), int(shape[2])) for name, shape in shapes.items()}  # (B, H, W, C)
