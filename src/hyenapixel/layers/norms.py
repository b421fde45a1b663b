"""Layer normalisations without bias, as used by the MetaFormer baselines and HyenaPixel (paper Section 4.2,
"Normalization for stability").
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class LayerNormNoBias(nn.LayerNorm):
    """LayerNorm over the last (channel) dimension with a learnable scale and no bias.

    Shape:
        (..., C) -> (..., C)
    """

    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__(dim, eps=eps, bias=False)


def layer_norm_channels_first(x: torch.Tensor, weight: torch.Tensor | None, eps: float) -> torch.Tensor:
    """LayerNorm over dim 1 of a channels-first tensor, without layout copies.

    Shape:
        (B, C, *spatial) -> (B, C, *spatial)
    """
    var, mean = torch.var_mean(x, dim=1, unbiased=False, keepdim=True)
    y = (x - mean) * torch.rsqrt(var + eps)
    if weight is not None:
        y = y * weight.view(1, -1, *([1] * (x.dim() - 2)))
    return y


class LayerNorm2dNoBias(nn.Module):
    """Channel LayerNorm for channels-first maps (normalises over C at every position), scale only.

    Numerically the same as :class:`LayerNormNoBias` applied to the channels-last view; it avoids permuting.

    Shape:
        (B, C, *spatial) -> (B, C, *spatial)
    """

    def __init__(self, dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.is_contiguous(memory_format=torch.channels_last) and x.dim() == 4:
            return F.layer_norm(x.permute(0, 2, 3, 1), (x.shape[1],), self.weight, None, self.eps).permute(0, 3, 1, 2)
        return layer_norm_channels_first(x, self.weight, self.eps)
