"""Multi-head self-attention token mixer for the attention stages of H_px AFormer / H_b AFormer (paper Section 3,
"Token mixer layout"), following the CAFormer layout: head dim 32, no qkv or projection bias.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Attention(nn.Module):
    """Global multi-head self-attention over all H*W positions.

    Shape:
        (B, H, W, C) -> (B, H, W, C)
    """

    def __init__(self, dim: int, head_dim: int = 32, attn_drop: float = 0.0, proj_drop: float = 0.0) -> None:
        super().__init__()
        self.head_dim = head_dim
        self.num_heads = max(dim // head_dim, 1)
        inner = self.num_heads * head_dim
        self.qkv = nn.Linear(dim, 3 * inner, bias=False)
        self.attn_drop = attn_drop
        self.proj = nn.Linear(inner, dim, bias=False)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, H, W, _ = x.shape
        qkv = self.qkv(x).reshape(B, H * W, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # each (B, heads, N, head_dim)
        drop = self.attn_drop if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=drop)
        y = y.transpose(1, 2).reshape(B, H, W, self.num_heads * self.head_dim)
        return self.proj_drop(self.proj(y))


class PositionalAttention(Attention):
    """:class:`Attention` that first adds a learned absolute positional embedding (ViT) to its input.

    Without it, one attention layer after a small stem sees a bag of tokens: it cannot tell *where* a token is,
    so it cannot compute a relation between positions. The embedding has ``grid`` x ``grid`` positions and is
    resized bicubically for other feature-map sizes.

    Shape:
        (B, H, W, C) -> (B, H, W, C)
    """

    def __init__(self, dim: int, grid: int = 16, head_dim: int = 32, attn_drop: float = 0.0, proj_drop: float = 0.0):
        super().__init__(dim, head_dim=head_dim, attn_drop=attn_drop, proj_drop=proj_drop)
        if grid < 1:
            raise ValueError(f"grid must be >= 1, got {grid}")
        self.pos_embed = nn.Parameter(torch.zeros(grid, grid, dim))
        nn.init.trunc_normal_(self.pos_embed, std=0.02)

    def position_embedding(self, height: int, width: int) -> torch.Tensor:
        """The embedding resized to a ``height`` x ``width`` map.

        Shape:
            -> (height, width, dim)
        """
        pe = self.pos_embed
        if pe.shape[:2] == (height, width):
            return pe
        pe = F.interpolate(pe.permute(2, 0, 1)[None], size=(height, width), mode="bicubic", align_corners=False)
        return pe[0].permute(1, 2, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x + self.position_embedding(x.shape[1], x.shape[2]).to(x.dtype))
