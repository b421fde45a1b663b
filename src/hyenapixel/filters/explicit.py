"""Ablation filters of paper Section 4.2: explicit (directly learned) long kernels and spatially separable long
kernels ("H_px SC", main axes only).

Both take the constructor arguments of :class:`~hyenapixel.filters.ImplicitFilter2d` that
:class:`~hyenapixel.mixers.HyenaPixelMixer` passes (``channels, kernel_size, emb_dim=``), so they can replace it;
``emb_dim`` has no meaning for a directly learned kernel and is not used.
"""

from __future__ import annotations

import torch
from torch import nn

from hyenapixel.filters.implicit2d import Region, pair


class DirectFilter2d(nn.Module):
    """Base of the directly learned filters: ``channels``, ``kernel_size`` and the per-channel skip term.

    Shape:
        forward() -> (channels, kh, kw)
    """

    def __init__(self, channels: int, kernel_size: int | tuple[int, int] = 55, emb_dim: int | None = None) -> None:
        super().__init__()
        self.channels, self.kernel_size = channels, pair(kernel_size)
        self.skip = nn.Parameter(torch.zeros(channels))

    def support(self, threshold: float) -> None:
        """``None``: a directly learned kernel has no decay window, all of its :attr:`kernel_size` taps count (the
        ``support`` of :class:`~hyenapixel.filters.ImplicitFilter2d` is where its window reaches ``threshold``)."""
        return None

    def extra_repr(self) -> str:
        return f"channels={self.channels}, kernel_size={self.kernel_size}"


class ExplicitFilter2d(DirectFilter2d):
    """A directly learned (non-implicit) depthwise kernel of any size, plus the skip term.

    Shape:
        forward() -> (channels, kh, kw)
    """

    def __init__(self, channels: int, kernel_size: int | tuple[int, int] = 55, emb_dim: int | None = None) -> None:
        super().__init__(channels, kernel_size)
        kh, kw = self.kernel_size
        self.weight = nn.Parameter(torch.randn(channels, kh, kw) * (kh * kw) ** -0.5)

    def forward(self, region: Region | None = None) -> torch.Tensor:
        """The kernel, or its taps ``[rows, cols]`` for ``region = (rows, cols)``."""
        return self.weight if region is None else self.weight[:, region[0], region[1]]


class SeparableFilter2d(DirectFilter2d):
    """Spatially separable long kernel: the outer product of a learned vertical and horizontal 1D kernel.

    Convolving with it equals a vertical long convolution followed by a horizontal one.

    Shape:
        forward() -> (channels, kh, kw)
    """

    def __init__(self, channels: int, kernel_size: int | tuple[int, int] = 55, emb_dim: int | None = None) -> None:
        super().__init__(channels, kernel_size)
        kh, kw = self.kernel_size
        self.weight_v = nn.Parameter(torch.randn(channels, kh) * kh**-0.5)
        self.weight_h = nn.Parameter(torch.randn(channels, kw) * kw**-0.5)

    def forward(self, region: Region | None = None) -> torch.Tensor:
        """The kernel, or its taps ``[rows, cols]`` for ``region = (rows, cols)``."""
        rows, cols = region or (slice(None), slice(None))
        return self.weight_v[:, rows, None] * self.weight_h[:, None, cols]
