"""Token mixers (paper Section 3, Fig. 3): HyenaPixel (2D) and bidirectional / causal Hyena (1D).

Each mixer composes projections, a short depthwise convolution, a filter from :mod:`hyenapixel.filters` and an FFT
convolution from :mod:`hyenapixel.ops`. Mixers take and return channels-last maps (B, H, W, C).
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
