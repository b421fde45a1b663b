"""The layer-wise lr-decay optimizer constructor for MMEngine-based runners (MMDetection 3 / MMSegmentation 1),
registered as ``HyenaPixelLayerDecayOptimizerConstructor``; the rule is :mod:`hyenapixel.dense.mm.layer_decay`.
Imports mmengine at module level: import it only through :mod:`hyenapixel.dense.mm.plugin`.
"""

from __future__ import annotations

from mmengine.optim import DefaultOptimWrapperConstructor
from torch import nn

from hyenapixel.dense.backbones import DenseInputError
from hyenapixel.dense.mm.backbone import HyenaPixelBackbone
from hyenapixel.dense.mm.layer_decay import layer_decay_param_groups

__all__ = ["HyenaPixelLayerDecayOptimizerConstructor"]


class HyenaPixelLayerDecayOptimizerConstructor(DefaultOptimWrapperConstructor):
    """``paramwise_cfg=dict(decay_rate=0.7, num_layers=6)`` (the official configs' values; ``decay_type`` may be
    given as ``"layer_wise"``, the only type). The model must have a ``backbone`` attribute that is a
    :class:`HyenaPixelBackbone`."""

    def add_params(self, params: list[dict], module: nn.Module, **kwargs) -> None:  # noqa: ANN003
        cfg = dict(self.paramwise_cfg or {})
        decay_type = cfg.pop("decay_type", "layer_wise")
        if decay_type != "layer_wise":
            raise DenseInputError(f"decay_type must be 'layer_wise', got {decay_type!r}")
        unknown = set(cfg) - {"decay_rate", "num_layers"}
        if unknown:
            raise DenseInputError(f"unknown paramwise_cfg keys {sorted(unknown)}; use decay_rate and num_layers")
        bb = getattr(module, "backbone", None)
        if not isinstance(bb, HyenaPixelBackbone):
            raise DenseInputError("HyenaPixelLayerDecayOptimizerConstructor needs model.backbone = HyenaPixelBackbone")
        params.extend(
            layer_decay_param_groups(
                module,
                bb.depths,
                self.base_lr,
                self.base_wd or 0.0,
                decay_rate=float(cfg.get("decay_rate", 0.7)),
                num_layers=int(cfg.get("num_layers", 6)),
            )
        )
