"""Activations of the MetaFormer baselines used by HyenaPixel (paper Section 3: StarReLU replaces GELU)."""

from __future__ import annotations

import torch
from torch import nn


class StarReLU(nn.Module):
    """StarReLU: ``s * relu(x) ** 2 + b`` with learnable scalars ``s`` and ``b`` (Yu et al., MetaFormer baselines).

    Shape:
        any -> same
    """

    def __init__(self, scale_value: float = 1.0, bias_value: float = 0.0) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.full((1,), float(scale_value)))
        self.bias = nn.Parameter(torch.full((1,), float(bias_value)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.addcmul(self.bias, self.scale, torch.relu(x).square())


class SquaredReLU(nn.Module):
    """Squared ReLU ``relu(x) ** 2`` (So et al., Primer), used in the MLP classifier head.

    Shape:
        any -> same
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x).square()
