"""Token mixers (paper Section 3, Fig. 3): HyenaPixel (2D) and bidirectional / causal Hyena (1D).

Each mixer composes projections, a short depthwise convolution, a filter from :mod:`hyenapixel.filters` and an FFT
convolution from :mod:`hyenapixel.ops`. Mixers take and return channels-last maps (B, H, W, C).

The tools above the models change a mixer only through its seams: ``frozen_conv`` (a module that replaces the long
convolution), ``split_projections()``, ``truncate(size, map_size)``, ``kernel_support(threshold, map_size)``,
``filter_kernel(map_size)`` and ``relative_kernel_size(map_size)``; none of them changes the state dict.
"""

from hyenapixel.mixers.cache import SpectrumCache, clear_spectrum_caches
from hyenapixel.mixers.hyena import BidirectionalHyenaMixer, CausalHyenaMixer, HyenaMixer1d
from hyenapixel.mixers.hyenapixel import HyenaPixelMixer

__all__ = [
    "BidirectionalHyenaMixer",
    "CausalHyenaMixer",
    "HyenaMixer1d",
    "HyenaPixelMixer",
    "SpectrumCache",
    "clear_spectrum_caches",
]
