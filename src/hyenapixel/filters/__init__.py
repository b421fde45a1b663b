"""Kernel generators (paper Section 3): each filter's ``forward()`` returns a long convolution kernel.

Filters only build kernels; applying them is the job of :mod:`hyenapixel.ops`, composing both is the job of
:mod:`hyenapixel.mixers`. Kernel visualisation, truncation and resampling therefore work on a filter alone. Every
filter reports its learned extent with ``support(threshold)``: per channel, the taps where its decay window reaches
the threshold, or ``None`` for a directly learned kernel (all of its taps count).
"""

from hyenapixel.filters.decay import DECAY_TARGET, FAST_DECAY_PCT, SLOW_DECAY_PCT, decay_rates
from hyenapixel.filters.explicit import DirectFilter2d, ExplicitFilter2d, SeparableFilter2d
from hyenapixel.filters.implicit1d import ImplicitFilter1d, hyena_positional_encoding
from hyenapixel.filters.implicit2d import (
    ImplicitFilter2d,
    bbox_sides,
    pair,
    radial_distance,
    resample_pos_emb_2d,
    sincos_positional_encoding_2d,
)
from hyenapixel.filters.mlp import Sine, SineMLP

__all__ = [
    "DECAY_TARGET",
    "FAST_DECAY_PCT",
    "SLOW_DECAY_PCT",
    "DirectFilter2d",
    "ExplicitFilter2d",
    "ImplicitFilter1d",
    "ImplicitFilter2d",
    "SeparableFilter2d",
    "Sine",
    "SineMLP",
    "bbox_sides",
    "decay_rates",
    "hyena_positional_encoding",
    "pair",
    "radial_distance",
    "resample_pos_emb_2d",
    "sincos_positional_encoding_2d",
]
