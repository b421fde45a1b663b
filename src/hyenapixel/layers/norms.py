"""Layer normalisation without bias, as used by the MetaFormer baselines and HyenaPixel (paper Section 4.2,
"Normalization for stability").
"""

from __future__ import annotations

from torch import nn


class LayerNormNoBias(nn.LayerNorm):
    """LayerNorm over the last (channel) dimension with a learnable scale and no bias.

    Shape:
        (..., C) -> (..., C)
    """

    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__(dim, eps=eps, bias=False)
