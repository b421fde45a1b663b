"""The HyenaPixel token mixer H_px (paper Section 3, "HyenaPixel"; Fig. 3; Eq. 3 with the window of Eq. 4).

    q, k, v = split(dwconv5x5(pwconv(x)))
    y = out_proj(out_norm(v * fftconv2d(qk_norm(q * k), K + D)))

where K is the implicit 2D filter and D its skip term (added to the kernel's center tap, which is the same as adding
``D * input``). The qk/out LayerNorms are the "Normalization for stability" of Section 4.2.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from hyenapixel.filters import ImplicitFilter2d
from hyenapixel.layers import DepthwiseConv2d, PixelLinear
from hyenapixel.mixers.cache import ClearsCacheOnModeSwitch, SpectrumCache
from hyenapixel.ops import conv_saving_spectrum, conv_with_plan, plan_conv2d


def with_skip(kernel: torch.Tensor, skip: torch.Tensor, center: tuple[int, ...]) -> torch.Tensor:
    """Add the per-channel skip term to the kernel tap that multiplies the input at the output position.

    Shape:
        kernel (C, *k), skip (C,) -> (C, *k)
    """
    # out of place, one copy; its backward passes the gradient through and gathers one tap per channel for the skip
    # (a fraction of the cost of a clone with an in-place add, whose backward copies the kernel-sized gradient)
    device = kernel.device
    index = (torch.arange(kernel.shape[0], device=device), *(torch.tensor([c], device=device) for c in center))
    return torch.index_put(kernel, index, skip.to(kernel.dtype), accumulate=True)


class HyenaPixelMixer(ClearsCacheOnModeSwitch, nn.Module):
    """HyenaPixel: gated global 2D convolution with an implicit kernel up to (and beyond) twice the feature map.

    Args:
        dim: channels C.
        kernel_size: long kernel size (paper: 111/55/27/13 per stage at 224 px; ablations: 9, half, quarter).
        filter_emb_dim: positional-encoding channels K of the implicit filter (paper: 32/32/48/64).
        filter_layer: kernel generator class/partial called as ``filter_layer(dim, kernel_size, emb_dim=...)``;
            :class:`~hyenapixel.filters.ExplicitFilter2d` and :class:`~hyenapixel.filters.SeparableFilter2d` give
            the Section 4.2 ablations.
        short_kernel_size: depthwise convolution on the 3C projections (paper: 5).
        qk_norm_layer / out_norm_layer: channels-last norms after ``q * k`` and before the output projection
            (``None``: none).

    The kernel spectrum is cached per input size while no gradient can reach the filter (see
    :class:`~hyenapixel.mixers.SpectrumCache`); ``mixer.spectrum_cache.enabled = False`` switches that off.

    Shape:
        (B, H, W, C) -> (B, H, W, C)
    """

    def __init__(
        self,
        dim: int,
        kernel_size: int | tuple[int, int] = 55,
        filter_emb_dim: int = 32,
        filter_layer: Callable[..., nn.Module] = ImplicitFilter2d,
        short_kernel_size: int = 5,
        qk_norm_layer: Callable[[int], nn.Module] | None = None,
        out_norm_layer: Callable[[int], nn.Module] | None = None,
        drop: float = 0.0,
    ) -> None:
        super().__init__()
        self.dim = dim
        self.in_proj = PixelLinear(dim, 3 * dim)  # nn.Linear, by oneDNN on multi-threaded CPUs
        self.short_conv = DepthwiseConv2d(3 * dim, short_kernel_size)  # nn.Conv2d with a faster CPU backward
        self.filter = filter_layer(dim, kernel_size, emb_dim=filter_emb_dim)
        self.qk_norm = qk_norm_layer(dim) if qk_norm_layer else nn.Identity()
        self.out_norm = out_norm_layer(dim) if out_norm_layer else nn.Identity()
        self.out_proj = PixelLinear(dim, dim)
        self.drop = nn.Dropout(drop)
        self.spectrum_cache = SpectrumCache()

    def kernel(self, region: tuple[slice, slice] | None = None) -> torch.Tensor:
        """The long kernel including the skip term at its center tap; only the taps ``region = (rows, cols)`` if
        given (unit-step slices, as :attr:`hyenapixel.ops.ConvPlan.taps` gives them).

        Shape:
            -> (C, kh, kw), or (C, len(rows), len(cols)) for a region
        """
        k = self.filter(region)
        kh, kw = self.filter.kernel_size
        rows, cols = region or (slice(None), slice(None))
        center = (kh // 2 - (rows.indices(kh)[0]), kw // 2 - (cols.indices(kw)[0]))
        if not (0 <= center[0] < k.shape[-2] and 0 <= center[1] < k.shape[-1]):
            return k  # the center tap is not in the region
        return with_skip(k, self.filter.skip, center)

    def long_conv(self, u: torch.Tensor) -> torch.Tensor:
        """Apply the long convolution (with skip term) to a channels-first map.

        Only the kernel taps that can reach the map are generated (``plan.taps``): at 800 x 1333 px (a 200 x 333
        map), 399 x 665 of the 667 x 667 stage-1 taps. With a gradient into the filter the kernel is regenerated on
        every call (its backward recomputes the filter's activations, see
        :class:`~hyenapixel.filters.ImplicitFilter2d`) and, when the spectrum is not much larger than the kernel, the
        graph keeps the spectrum (:func:`~hyenapixel.ops.conv_saving_spectrum`); otherwise the cached spectrum is
        used.

        Shape:
            (B, C, H, W) -> (B, C, H, W)
        """
        kh, kw = self.filter.kernel_size
        full = plan_conv2d(u.shape[-2], u.shape[-1], kh, kw)
        taps, plan = full.taps, full.cropped()
        if self.spectrum_cache.active(self.filter):
            return self.spectrum_cache.convolve(self.filter, u, plan, lambda: self.kernel(taps))
        kernel = self.kernel(taps)
        *rows, last = plan.fft_shape
        if 2 * math.prod(rows) * (last // 2 + 1) <= 1.5 * kernel[0].numel():
            # a covering kernel: its spectrum is about its size, so keeping it instead costs no memory
            return conv_saving_spectrum(u, kernel, plan)
        return conv_with_plan(u, kernel, plan)  # a kernel much smaller than its spectrum (224-px kernels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (B, H, W, 3C) contiguous; viewed as NCHW it is channels_last, which the depthwise conv handles natively
        qkv = self.in_proj(x).permute(0, 3, 1, 2)
        qkv = self.short_conv(qkv)
        q, k, v = qkv.chunk(3, dim=1)
        qk = q * k
        qk = self.qk_norm(qk.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)  # norms work on the channels-last view
        y = v * self.long_conv(qk.contiguous())  # the FFT wants (B, C, H, W) contiguous: one layout change
        y = y.permute(0, 2, 3, 1)  # (B, H, W, C)
        return self.drop(self.out_proj(self.out_norm(y)))
