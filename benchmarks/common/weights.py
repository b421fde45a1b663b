"""Weights for speed benchmarks that build the graphs trained weights give.

A freshly initialised model has scales of exactly 1 and biases of exactly 0 (LayerNorm, StarReLU, residual
scales). onnxruntime's graph optimizer removes a multiplication by a constant 1 and an addition of a constant 0,
so an exported model with its initial weights runs fewer operators than the same model trained.
"""

from __future__ import annotations

import torch
from torch import nn


def trained_like(model: nn.Module, std: float = 0.02, seed: int = 0) -> nn.Module:
    """Move every floating-point parameter of ``model`` off its initial value by Gaussian noise of ``std`` (in
    place, seeded), so that no scale is exactly 1 and no bias exactly 0; returns ``model``."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.is_floating_point():
                p.add_(torch.randn(p.shape, generator=gen, dtype=p.dtype).to(p.device) * std)
    return model
