"""The MMDetection/MMSegmentation backbone ``HyenaPixelBackbone`` (paper Section 4.3): the four stage outputs of a
HyenaPixel MetaFormer, each through its stage-specific LayerNorm, as the official configs' ``TimmModel`` with
``features_only=True`` gave them. A plain ``torch.nn.Module``: it needs no MM package to build or run.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from hyenapixel.dense.backbones import DenseInputError, StageNorm, backbone

__all__ = ["HyenaPixelBackbone"]

_NORMS = {"layernorm": StageNorm, None: None}


class HyenaPixelBackbone(nn.Module):
    """Config-friendly wrapper of :func:`hyenapixel.dense.backbones` (every argument is a plain value).

    Args:
        model_name: a registered model (``hpx_former_s18`` in the paper's configs).
        checkpoint: ImageNet weights (official ``pytorch_model.bin`` / ``.safetensors`` or a run of ours).
        pretrained: the official hub weights instead (needs network access).
        kernel_policy: ``"paper"`` (224-px kernels) or ``"cover"`` (``2F - 1`` at ``img_size``).
        img_size: the largest (H, W) input, for ``"cover"``.
        out_indices: the stages to return.
        out_norm: ``"layernorm"`` (the official stage norms) or ``None``.
        drop_path_rate: stochastic depth (0.4 in the paper's dense runs).
        model_kwargs: more ``timm.create_model`` arguments (``depths``, ``dims``, ...).
        init_cfg: accepted for MM compatibility; must be None (weights come from ``checkpoint`` / ``pretrained``).

    Shape:
        (B, 3, H, W) -> tuple of (B, C_i, h_i, w_i) at strides 4/8/16/32
    """

    def __init__(
        self,
        model_name: str = "hpx_former_s18",
        checkpoint: str | None = None,
        pretrained: bool = False,
        kernel_policy: str = "paper",
        img_size: int | Sequence[int] | None = None,
        out_indices: Sequence[int] = (0, 1, 2, 3),
        out_norm: str | None = "layernorm",
        drop_path_rate: float = 0.0,
        model_kwargs: dict | None = None,
        init_cfg: dict | None = None,
    ) -> None:
        super().__init__()
        if init_cfg is not None:
            raise DenseInputError(
                "HyenaPixelBackbone loads its weights itself: give checkpoint=PATH (or pretrained=True), not init_cfg"
            )
        if out_norm not in _NORMS:
            raise DenseInputError(f"out_norm must be 'layernorm' or None, got {out_norm!r}")
        self.body = backbone(
            model_name,
            checkpoint=checkpoint,
            pretrained=pretrained,
            kernel_policy=kernel_policy,
            img_size=tuple(img_size) if isinstance(img_size, (list, tuple)) else img_size,
            out_norm=_NORMS[out_norm],
            out_indices=tuple(out_indices),
            drop_path_rate=drop_path_rate,
            **(model_kwargs or {}),
        )
        self.depths = [len(stage.blocks) for stage in self.body.metaformer.stages]
        self.out_channels = self.body.out_channels

    def init_weights(self) -> None:
        """Nothing to do: the weights were loaded when the backbone was built (MM runners call this)."""

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(self.body(x))
