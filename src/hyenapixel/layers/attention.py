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
