"""Hyena token mixers over the flattened image (paper Section 3): the bidirectional H_b with a centered filter of
length 2L - 1 and the original causal Hyena, both of order 2.

    x0, x1, v = split(dwconv3(in_proj(x)))          over the H*W sequence
    y = out_proj(out_norm(x0 * fftconv1d(qk_norm(v * x1), K + D)))

Filters are built for the training sequence length; other image sizes resample the learned positional embedding
(see :class:`~hyenapixel.filters.ImplicitFilter1d`).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from hyenapixel.filters import ImplicitFilter1d
from hyenapixel.layers import PixelLinear
from hyenapixel.mixers.cache import ClearsCacheOnModeSwitch, SpectrumCache
from hyenapixel.mixers.hyenapixel import projection_branches, tap_mask, with_skip
from hyenapixel.ops import plan_conv1d

__all__ = ["BidirectionalHyenaMixer", "CausalHyenaMixer", "HyenaMixer1d"]


class HyenaMixer1d(ClearsCacheOnModeSwitch, nn.Module):
    """Order-2 Hyena operator on the row-major flattened feature map. Use the subclasses.

    Args:
        dim: channels C.
        seq_len: H*W at the training resolution (paper: 56^2, 28^2, 14^2, 7^2 per stage).
        filter_emb_dim: positional-encoding width of the filter (paper: 33/33/49/65).
        filter_hidden: FFN width of the filter (paper: 64/64/96/128).
        qk_norm_layer / out_norm_layer: channels-last norms after the first gating and before the projection.

    Seams as :class:`~hyenapixel.mixers.HyenaPixelMixer`: :attr:`frozen_conv` (``None`` or a module replacing the
    long convolution, ``(B, C, L) -> (B, C, L)``), :meth:`split_projections`, :meth:`truncate`,
    :meth:`kernel_support`, :meth:`filter_kernel`.

    Shape:
        (B, H, W, C) -> (B, H, W, C)
    """

    causal: bool
    frozen_conv: nn.Module | None
    in_proj: nn.Module
    short_conv: nn.Module

    def __init__(
        self,
        dim: int,
        seq_len: int,
        filter_emb_dim: int = 33,
        filter_hidden: int = 64,
        short_kernel_size: int = 3,
        qk_norm_layer: Callable[[int], nn.Module] | None = None,
        out_norm_layer: Callable[[int], nn.Module] | None = None,
        drop: float = 0.0,
    ) -> None:
        super().__init__()
        self.dim, self.seq_len = dim, seq_len
        self.in_proj = PixelLinear(dim, 3 * dim)  # nn.Linear (a sequence is not a map: F.linear)
        pad = short_kernel_size - 1 if self.causal else short_kernel_size // 2
        self.short_conv = nn.Conv1d(3 * dim, 3 * dim, short_kernel_size, padding=pad, groups=3 * dim)
        self.filter = ImplicitFilter1d(
            dim, self.kernel_len(seq_len), emb_dim=filter_emb_dim, hidden=filter_hidden, causal=self.causal
        )
        self.qk_norm = qk_norm_layer(dim) if qk_norm_layer else nn.Identity()
        self.out_norm = out_norm_layer(dim) if out_norm_layer else nn.Identity()
        self.out_proj = PixelLinear(dim, dim)
        self.drop = nn.Dropout(drop)
        self.frozen_conv = None  # no module, no state: the repr and the state dict stay as they were
        self.spectrum_cache = SpectrumCache()
        self.tap_limits: tuple[float] | None = None

    def kernel_len(self, length: int) -> int:
        """Filter length covering a sequence of ``length`` tokens."""
        return length if self.causal else 2 * length - 1

    def kernel(self, length: int | None = None) -> torch.Tensor:
        """The long kernel for a sequence of ``length`` tokens, with the skip term at lag 0 (truncated if
        :meth:`truncate` says so).

        Shape:
            -> (C, kernel_len(length))
        """
        k = self.filter(self.kernel_len(length or self.seq_len))
        center = 0 if self.causal else k.shape[-1] // 2
        if self.tap_limits is not None:
            k = k * tap_mask((center,), self.tap_limits, (range(k.shape[-1]),), k.device)
        return with_skip(k, self.filter.skip, (center,))

    def truncate(self, size: float | None, map_size: tuple[int, int] = (0, 0)) -> None:
        """Keep only the kernel taps within relative size ``size`` of the ``L = H * W`` tokens of a ``map_size =
        (H, W)`` map: lags of at most ``(size * L - 1) / 2`` (paper Section 5, kernel truncation; the skip term
        stays). ``size=None`` restores the whole kernel. Cached spectra are dropped."""
        length = map_size[0] * map_size[1]
        self.tap_limits = None if size is None else ((size * length - 1) / 2,)
        self.spectrum_cache.clear()

    def filter_kernel(self, map_size: tuple[int, int]) -> torch.Tensor:
        """The filter's kernel for the ``H * W`` tokens of a ``map_size = (H, W)`` map, as it learned it: no skip
        term, never truncated.

        Shape:
            -> (C, kernel_len(H * W))
        """
        return self.filter(self.kernel_len(map_size[0] * map_size[1]))

    def relative_kernel_size(self, map_size: tuple[int, int]) -> float:
        """The kernel's length over the sequence's (``H * W`` tokens): truncating to a relative size at or above it
        changes nothing."""
        length = map_size[0] * map_size[1]
        return self.kernel_len(length) / length

    def kernel_support(self, threshold: float, map_size: tuple[int, int]) -> torch.Tensor:
        """Per channel, the taps of the kernel for a ``map_size = (H, W)`` map (``H * W`` tokens) where the
        filter's window reaches ``threshold`` (:meth:`~hyenapixel.filters.ImplicitFilter1d.support`).

        Shape:
            -> (C, 1)
        """
        return self.filter.support(threshold, self.kernel_len(map_size[0] * map_size[1]))

    def split_projections(self) -> None:
        """Replace ``in_proj`` and ``short_conv`` by the three x0/x1/v branches of
        :func:`~hyenapixel.mixers.hyenapixel.projection_branches` (1x1 and depthwise 1D convolutions, eval mode):
        the same function without a 3C tensor to split."""
        self.in_proj, self.short_conv = projection_branches(self.in_proj, self.short_conv, self.dim)

    def long_conv(self, u: torch.Tensor) -> torch.Tensor:
        """Apply the long convolution (with skip term) along the last axis.

        Shape:
            (B, C, L) -> (B, C, L)
        """
        if self.frozen_conv is not None:
            return self.frozen_conv(u)
        length = u.shape[-1]
        plan = plan_conv1d(length, self.kernel_len(length), self.causal)
        return self.spectrum_cache.convolve(self.filter, u, plan, lambda: self.kernel(length))

    def projections(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``x0, x1, v``: the input projection and the short convolution over the flattened map.

        Shape:
            (B, H, W, C) -> three (B, C, H * W)
        """
        B, H, W, C = x.shape
        L = H * W
        if isinstance(self.in_proj, nn.ModuleList):  # the branches of split_projections
            u = x.reshape(B, L, C).transpose(1, 2)
            x0, x1, v = (dw(pw(u))[..., :L] for pw, dw in zip(self.in_proj, self.short_conv))
            return x0, x1, v
        u = self.in_proj(x.reshape(B, L, C)).transpose(1, 2)  # (B, 3C, L)
        u = self.short_conv(u)[..., :L]
        return u.chunk(3, dim=1)  # type: ignore[return-value]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, H, W, C = x.shape
        x0, x1, v = self.projections(x)
        g = (v * x1).transpose(1, 2)  # (B, L, C)
        g = self.qk_norm(g).transpose(1, 2)
        y = x0 * self.long_conv(g.contiguous())
        y = self.out_proj(self.out_norm(y.transpose(1, 2)))  # (B, L, C)
        return self.drop(y).reshape(B, H, W, C)


class BidirectionalHyenaMixer(HyenaMixer1d):
    """H_b: Hyena with a centered filter of length 2L - 1, so every token sees the whole image (Section 3).

    Arguments as :class:`HyenaMixer1d` (``dim``, ``seq_len``, filter widths, norms). Any map size works: the filter
    is evaluated for the ``L = H * W`` tokens it gets.

    Shape:
        (B, H, W, C) -> (B, H, W, C)
    """

    causal = False


class CausalHyenaMixer(HyenaMixer1d):
    """The original causal Hyena over the flattened image (the Section 4.2 "causal" ablation): token ``t`` of the
    row-major sequence sees tokens ``0..t`` only, through a filter of length ``L``.

    Arguments as :class:`HyenaMixer1d`.

    Shape:
        (B, H, W, C) -> (B, H, W, C)
    """

    causal = True
