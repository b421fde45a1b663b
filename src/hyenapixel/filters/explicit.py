"""Ablation filters of paper Section 4.2: explicit (directly learned) long kernels and spatially separable long
kernels ("H_px SC", main axes only).
"""

from __future__ import annotations

import torch
from torch import nn

from hyenapixel.filters.implicit2d import Region, _pair


class ExplicitFilter2d(nn.Module):
    """A directly learned (non-implicit) depthwise kernel of any size, plus the skip term.

    Shape:
        forward() -> (channels, kh, kw)
    """

    def __init__(self, channels: int, kernel_size: int | tuple[int, int] = 55, **_) -> None:
        super().__init__()
        kh, kw = _pair(kernel_size)
        self.channels, self.kernel_size = channels, (kh, kw)
        self.weight = nn.Parameter(torch.randn(channels, kh, kw) * (kh * kw) ** -0.5)
        self.skip = nn.Parameter(torch.zeros(channels))

    def forward(self, region: Region | None = None) -> torch.Tensor:
        """The kernel, or its taps ``[rows, cols]`` for ``region = (rows, cols)``."""
        return self.weight if region is None else self.weight[:, region[0], region[1]]


class SeparableFilter2d(nn.Module):
    """Spatially separable long kernel: the outer product of a learned vertical and horizontal 1D kernel.

    Convolving with it equals a vertical long convolution followed by a horizontal one.

    Shape:
        forward() -> (channels, kh, kw)
    """

    def __init__(self, channels: int, kernel_size: int | tuple[int, int] = 55, **_) -> None:
        super().__init__()
        kh, kw = _pair(kernel_size)
        self.channels, self.kernel_size = channels, (kh, kw)
        self.weight_v = nn.Parameter(torch.randn(channels, kh) * kh**-0.5)
        self.weight_h = nn.Parameter(torch.randn(channels, kw) * kw**-0.5)
        self.skip = nn.Parameter(torch.zeros(channels))

    def forward(self, region: Region | None = None) -> torch.Tensor:
        """The kernel, or its taps ``[rows, cols]`` for ``region = (rows, cols)``."""
        rows, cols = region or (slice(None), slice(None))
        return self.weight_v[:, rows, None] * self.weight_h[:, None, cols]
