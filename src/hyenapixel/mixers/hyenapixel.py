"""The HyenaPixel token mixer H_px (paper Section 3, "HyenaPixel"; Fig. 3; Eq. 3 with the window of Eq. 4).

    q, k, v = split(dwconv5x5(pwconv(x)))
    y = out_proj(out_norm(v * fftconv2d(qk_norm(q * k), K + D)))

where K is the implicit 2D filter and D its skip term (added to the kernel's center tap, which is the same as adding
``D * input``). The qk/out LayerNorms are the "Normalization for stability" of Section 4.2.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from hyenapixel.filters import ImplicitFilter2d
from hyenapixel.layers import DepthwiseConv2d, PixelLinear
from hyenapixel.mixers.cache import ClearsCacheOnModeSwitch, SpectrumCache
from hyenapixel.ops import conv_fresh_kernel, plan_conv2d
from hyenapixel.ops.dft import DFTSpectrum2d, conv2d_channels_last, dft_conv2d_cached, dft_preferred

__all__ = ["HyenaPixelMixer", "projection_branches", "tap_mask", "with_skip"]


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


def tap_mask(
    centers: Sequence[int], limits: Sequence[float], taps: Sequence[range], device: torch.device | None = None
) -> torch.Tensor:
    """Keep-mask of the kernel taps within ``limits`` (per axis, in taps) of the tap at zero offset ``centers``,
    over the taps ``taps`` of each axis: what :meth:`HyenaPixelMixer.truncate` and
    :meth:`~hyenapixel.mixers.HyenaMixer1d.truncate` keep.

    Shape:
        -> bool (len(taps[0]),) or (len(taps[0]), len(taps[1]))
    """
    axes = [(torch.arange(t.start, t.stop) - c).abs().double() <= lim for c, lim, t in zip(centers, limits, taps)]
    mask = axes[0] if len(axes) == 1 else axes[0][:, None] & axes[1][None, :]
    return mask.to(device) if device is not None else mask


def projection_branches(
    linear: nn.Linear, conv: nn.Conv1d | nn.Conv2d, dim: int
) -> tuple[nn.ModuleList, nn.ModuleList]:
    """A ``C -> 3C`` input projection and the depthwise convolution over its ``3C`` channels as one branch per q, k
    and v (x0, x1, v for Hyena): ``pointwise[i]`` a 1x1 convolution ``C -> C`` (the rows of the projection that make
    that part, with their bias), ``depthwise[i]`` a depthwise convolution over its ``C`` channels (same kernel size
    and padding). Applied to the channels-first map, branch ``i`` computes channels ``[i C, (i + 1) C)`` of
    ``conv(linear(x))``. 1D or 2D after ``conv``. The branches are copies in eval mode (the mixers'
    ``split_projections`` installs them).
    """
    conv_cls = nn.Conv2d if conv.weight.dim() == 4 else nn.Conv1d
    ones = (1,) * (conv.weight.dim() - 2)
    pointwise, depthwise = nn.ModuleList(), nn.ModuleList()
    for i in range(3):
        part = slice(i * dim, (i + 1) * dim)
        pw = conv_cls(dim, dim, 1, bias=linear.bias is not None).to(linear.weight)
        dw = conv_cls(dim, dim, conv.kernel_size, padding=conv.padding, groups=dim, bias=conv.bias is not None)
        dw = dw.to(conv.weight)
        with torch.no_grad():
            pw.weight.copy_(linear.weight[part].reshape(dim, dim, *ones))
            dw.weight.copy_(conv.weight[part])
            for module, bias in ((pw, linear.bias), (dw, conv.bias)):
                if bias is not None:
                    module.bias.copy_(bias[part])
        pointwise.append(pw.eval())
        depthwise.append(dw.eval())
    return pointwise, depthwise


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

    Seams for the tools above the models (deployment, analysis):

    * :attr:`frozen_conv`: ``None``, or a module that replaces the long convolution (channels-last,
      ``(B, H, W, C) -> (B, H, W, C)``), such as the precomputed one of
      :func:`hyenapixel.export.freeze_long_convs`;
    * :meth:`split_projections`: the input projection and the short convolution as three q/k/v branches;
    * :meth:`truncate`: keep only the kernel taps near the center (:meth:`relative_kernel_size`: from which size
      on nothing changes);
    * :meth:`kernel_support`: the per-channel extent of the kernel (see the filters' ``support``);
      :meth:`filter_kernel`: the learned kernel alone.

    Shape:
        (B, H, W, C) -> (B, H, W, C)
    """

    frozen_conv: nn.Module | None
    in_proj: nn.Module
    short_conv: nn.Module

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
        self.frozen_conv = None  # no module, no state: the repr and the state dict stay as they were
        self.spectrum_cache = SpectrumCache()
        self.tap_limits: tuple[float, float] | None = None

    def kernel(self, region: tuple[slice, slice] | None = None) -> torch.Tensor:
        """The long kernel including the skip term at its center tap; only the taps ``region = (rows, cols)`` if
        given (unit-step slices, as :attr:`hyenapixel.ops.ConvPlan.taps` gives them). A truncated mixer
        (:meth:`truncate`) gives its truncated kernel.

        Shape:
            -> (C, kh, kw), or (C, len(rows), len(cols)) for a region
        """
        k = self.filter(region)
        kh, kw = self.filter.kernel_size
        rows, cols = region or (slice(None), slice(None))
        if self.tap_limits is not None:  # offsets from the full kernel's center, also for a region of its taps
            taps = (range(*rows.indices(kh)), range(*cols.indices(kw)))
            k = k * tap_mask((kh // 2, kw // 2), self.tap_limits, taps, k.device)
        center = (kh // 2 - (rows.indices(kh)[0]), kw // 2 - (cols.indices(kw)[0]))
        if not (0 <= center[0] < k.shape[-2] and 0 <= center[1] < k.shape[-1]):
            return k  # the center tap is not in the region
        return with_skip(k, self.filter.skip, center)

    def truncate(self, size: float | None, map_size: tuple[int, int] = (0, 0)) -> None:
        """Keep only the kernel taps within the centered window of relative size ``size`` of a ``map_size = (H, W)``
        map: offsets from the kernel's center of at most ``(size * H - 1) / 2`` rows and ``(size * W - 1) / 2``
        columns (paper Section 5, kernel truncation; the skip term stays). ``size=None`` restores the whole kernel.
        Cached spectra are dropped."""
        h, w = map_size
        self.tap_limits = None if size is None else ((size * h - 1) / 2, (size * w - 1) / 2)
        self.spectrum_cache.clear()

    def filter_kernel(self, map_size: tuple[int, int] | None = None) -> torch.Tensor:
        """The filter's kernel as it learned it: no skip term, never truncated (the same for every map size).

        Shape:
            -> (C, kh, kw)
        """
        return self.filter()

    def relative_kernel_size(self, map_size: tuple[int, int]) -> float:
        """The kernel's size over the map's, on the axis where it is largest: truncating to a relative size at or
        above it changes nothing."""
        kh, kw = self.filter.kernel_size
        return max(kh / map_size[0], kw / map_size[1])

    def kernel_support(self, threshold: float, map_size: tuple[int, int] | None = None) -> torch.Tensor | None:
        """Per channel, the kernel's extent in taps (rows, cols) where its filter's window reaches ``threshold``
        (the filter's ``support``); ``None`` for a directly learned kernel, whose every tap counts. ``map_size`` is
        not needed in 2D.

        Shape:
            -> (C, 2)
        """
        return self.filter.support(threshold)

    def split_projections(self) -> None:
        """Replace ``in_proj`` and ``short_conv`` by the three q/k/v branches of :func:`projection_branches`
        (``nn.ModuleList`` each, in eval mode): the same function, computed as 1x1 and depthwise convolutions per
        branch without a 3C tensor to split (the form that deploys best, see docs/deploy.md)."""
        self.in_proj, self.short_conv = projection_branches(self.in_proj, self.short_conv, self.dim)

    def projections(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``q, k, v``: the input projection and the short depthwise convolution, channels-last (views).

        Shape:
            (B, H, W, C) -> three (B, H, W, C)
        """
        if isinstance(self.in_proj, nn.ModuleList):  # the branches of split_projections
            x = x.permute(0, 3, 1, 2)
            q, k, v = (dw(pw(x)).permute(0, 2, 3, 1) for pw, dw in zip(self.in_proj, self.short_conv))
            return q, k, v
        # (B, H, W, 3C) contiguous; viewed as NCHW it is channels_last, which the depthwise conv handles natively
        qkv = self.short_conv(self.in_proj(x).permute(0, 3, 1, 2))
        q, k, v = (t.permute(0, 2, 3, 1) for t in qkv.chunk(3, dim=1))
        return q, k, v

    def long_conv(self, u: torch.Tensor) -> torch.Tensor:
        """Apply the long convolution (with skip term) to a channels-first map.

        Only the kernel taps that can reach the map are generated (``plan.taps``): at 800 x 1333 px (a 200 x 333
        map), 399 x 665 of the 667 x 667 stage-1 taps. With a gradient into the filter the kernel is regenerated on
        every call (:func:`~hyenapixel.ops.conv_fresh_kernel`); otherwise the cached spectrum is used.

        Shape:
            (B, C, H, W) -> (B, C, H, W)
        """
        if self.frozen_conv is not None:
            return self.frozen_conv(u.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        kh, kw = self.filter.kernel_size
        full = plan_conv2d(u.shape[-2], u.shape[-1], kh, kw)
        taps, plan = full.taps, full.cropped()
        if self.spectrum_cache.active(self.filter):
            return self.spectrum_cache.convolve(self.filter, u, plan, lambda: self.kernel(taps))
        return conv_fresh_kernel(u, self.kernel(taps), plan)

    def long_conv_channels_last(self, u: torch.Tensor) -> torch.Tensor:
        """:meth:`long_conv` on a channels-last map (:attr:`frozen_conv` takes it as it is). Small maps go through
        DFT matrix products instead of FFTs (:func:`~hyenapixel.ops.dft.dft_preferred`), from the cache or with the
        kernel regenerated (training): the same convolution up to float rounding.

        Shape:
            (B, H, W, C) -> (B, H, W, C)
        """
        if self.frozen_conv is not None:
            return self.frozen_conv(u)
        kh, kw = self.filter.kernel_size
        full = plan_conv2d(u.shape[1], u.shape[2], kh, kw)
        plan = full.cropped()
        if not self.spectrum_cache.active(self.filter):
            return conv2d_channels_last(u, self.kernel(full.taps), plan)
        if dft_preferred(plan, u):  # small maps: DFT matrix products on the channels-last map, no layout change
            key = (plan, u.dtype, u.device, DFTSpectrum2d)
            spectrum = self.spectrum_cache.get(
                self.filter, key, lambda: DFTSpectrum2d.make(self.kernel(full.taps), plan, u.dtype)
            )
            return dft_conv2d_cached(u, spectrum, plan)
        # the FFT wants (B, C, H, W) contiguous: one layout change
        return self.long_conv(u.permute(0, 3, 1, 2).contiguous()).permute(0, 2, 3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.projections(x)
        y = v * self.long_conv_channels_last(self.qk_norm(q * k))
        return self.drop(self.out_proj(self.out_norm(y)))
