"""hyenapixel: HyenaPixel and bidirectional Hyena vision models for timm.

Reference implementation of "HyenaPixel: Global Image Context with Convolutions" (Spravil, Houben, Behnke,
ECAI 2024, arXiv:2402.19305). Importing the package registers the model families in timm.
"""

from hyenapixel.mixers import BidirectionalHyenaMixer, CausalHyenaMixer, HyenaPixelMixer
from hyenapixel.models import (
    REGISTERED_MODELS,
    MetaFormer,
    checkpoint_filter_fn,
    load_checkpoint_into,
    resample_hyenapixel_filters,
)
from hyenapixel.ops import fftconv1d, fftconv2d

__version__ = "0.1.0"

__all__ = [
    "REGISTERED_MODELS",
    "BidirectionalHyenaMixer",
    "CausalHyenaMixer",
    "HyenaPixelMixer",
    "MetaFormer",
    "checkpoint_filter_fn",
    "create_model",
    "fftconv1d",
    "fftconv2d",
    "load_checkpoint_into",
    "resample_hyenapixel_filters",
]


def create_model(name: str, pretrained: bool = False, **kwargs):  # noqa: ANN201 - returns a timm model
    """Thin alias of ``timm.create_model`` (the models are registered in timm on import)."""
    import timm

    return timm.create_model(name, pretrained=pretrained, **kwargs)
