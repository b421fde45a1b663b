"""Layer-wise learning-rate decay of the paper's dense runs (Section 4.3; the official MMDetection/MMSegmentation
configs use ``decay_rate=0.7``, ``num_layers=6``, AdamW weight decay 0.05).

The rule (ConvNeXt's ``layer_wise`` rule, which the official configs apply to the MetaFormer's modules):

* every parameter gets a layer id ``i`` in ``0 .. num_layers + 1`` and the learning rate
  ``base_lr * decay_rate ** (num_layers + 1 - i)``;
* stem: ``0``; stage 1 blocks: ``1``; stage 2 downsampling and blocks: ``2``; stage 3 downsampling: ``3``;
  stage 3 block ``b`` of ``d``: ``3 + b * (num_layers - 3) // d`` (stage 3 split into ``num_layers - 3`` equal
  groups; for S18's nine blocks and ``num_layers=6`` this is the official ``3 + b // 3``); stage 4 downsampling and
  blocks: ``num_layers``;
* everything else (the stage output norms, neck, heads): ``num_layers + 1``, i.e. the full learning rate;
* weight decay 0 for 1-D tensors and biases, ``weight_decay`` otherwise.

With S18 and the official settings the backbone's rates are ``0.7**7`` (stem) up to ``0.7`` (stage 4) of the base.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from torch import nn

__all__ = ["layer_decay_param_groups", "layer_id", "lr_scale"]

_STEM = re.compile(r"(?:^|\.)stem\.")
_STAGE = re.compile(r"(?:^|\.)stages\.(\d+)\.(?:downsample\.|blocks\.(\d+)\.)")


def layer_id(name: str, depths: Sequence[int], num_layers: int = 6, backbone_prefix: str = "backbone.") -> int:
    """The layer id of parameter ``name`` of a model whose MetaFormer backbone's parameters start with
    ``backbone_prefix`` (``backbone.`` in MMDetection/MMSegmentation and torchvision, ``encoder.`` in smp).

    Args:
        depths: blocks per stage of the backbone (e.g. (3, 3, 9, 3) for S18).
        num_layers: number of decayed layer groups of the backbone (official: 6); must be >= 4.
    """
    if num_layers < 4:
        raise ValueError(f"num_layers must be >= 4 (stem, stages 1-2, >= 1 group of stage 3), got {num_layers}")
    if not name.startswith(backbone_prefix):
        return num_layers + 1
    rest = name[len(backbone_prefix) :]
    if _STEM.search(rest):
        return 0
    m = _STAGE.search(rest)
    if m is None:  # stage output norms and anything else the wrapper adds
        return num_layers + 1
    stage, block = int(m.group(1)), m.group(2)
    if stage == 0:
        return 1
    if stage == 1:
        return 2
    if stage == 2:
        return 3 if block is None else 3 + int(block) * (num_layers - 3) // depths[2]
    return num_layers


def lr_scale(layer: int, num_layers: int = 6, decay_rate: float = 0.7) -> float:
    """``decay_rate ** (num_layers + 1 - layer)``."""
    return decay_rate ** (num_layers + 1 - layer)


def layer_decay_param_groups(
    model: nn.Module,
    depths: Sequence[int],
    base_lr: float,
    weight_decay: float,
    *,
    decay_rate: float = 0.7,
    num_layers: int = 6,
    backbone_prefix: str = "backbone.",
) -> list[dict]:
    """Optimizer parameter groups ``{"params", "param_names", "lr", "lr_scale", "weight_decay", "layer_id"}``: one per
    (layer id, decay / no decay), for ``torch.optim.AdamW(groups)`` or an MM optimizer wrapper. Frozen parameters
    (``requires_grad=False``) are left out."""
    groups: dict[tuple[int, bool], dict] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        lid = layer_id(name, depths, num_layers, backbone_prefix)
        no_decay = p.ndim == 1 or name.endswith(".bias")
        group = groups.get((lid, no_decay))
        if group is None:
            scale = lr_scale(lid, num_layers, decay_rate)
            group = groups[(lid, no_decay)] = {
                "params": [],
                "param_names": [],
                "layer_id": lid,
                "lr_scale": scale,
                "lr": base_lr * scale,
                "weight_decay": 0.0 if no_decay else weight_decay,
            }
        group["params"].append(p)
        group["param_names"].append(name)
    return [groups[k] for k in sorted(groups)]
