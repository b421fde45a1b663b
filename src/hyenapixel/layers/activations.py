"""Activations of the MetaFormer baselines used by HyenaPixel (paper Section 3: StarReLU replaces GELU)."""

from __future__ import annotations

import torch
from torch import nn

from hyenapixel.ops.pointwise import star_relu


class StarReLU(nn.Module):
    """StarReLU: ``s * relu(x) ** 2 + b`` with learnable scalars ``s`` and ``b`` (Yu et al., MetaFormer baselines),
    computed by :func:`~hyenapixel.ops.pointwise.star_relu`.

    Args:
        inplace: like ``nn.ReLU(inplace=True)``: where autograd does not record, the input is overwritten with the
            output (no allocation); for layers whose input no one else reads, such as the output of the linear layer
            before it.

    Shape:
        any -> same
    """

    def __init__(self, scale_value: float = 1.0, bias_value: float = 0.0, inplace: bool = False) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.full((1,), float(scale_value)))
        self.bias = nn.Parameter(torch.full((1,), float(bias_value)))
        self.inplace = inplace

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return star_relu(x, self.scale, self.bias, self.inplace)

    def extra_repr(self) -> str:
        return "inplace=True" if self.inplace else ""


class SquaredReLU(nn.Module):
    """Squared ReLU ``relu(x) ** 2`` (So et al., Primer), used in the MLP classifier head.

    Shape:
        any -> same
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x).square()
