"""The decay rates of the exponential windows of the implicit filters (paper Section 3: Eq. 2 for the 1D Hyena
filter, Eq. 4 for the 2D HyenaPixel filter), shared by both.

Channel ``c`` decays at rate ``|alpha_c|``; the rates are spread linearly between the channel that falls to ``target``
over ``slow_decay_pct`` of the (normalised) kernel extent and the one that falls to it over ``fast_decay_pct``, as in
Hyena's exponential modulation.
"""

from __future__ import annotations

import math

import torch

FAST_DECAY_PCT = 0.3
SLOW_DECAY_PCT = 1.5
DECAY_TARGET = 1e-2


def decay_rates(
    channels: int,
    fast_decay_pct: float = FAST_DECAY_PCT,
    slow_decay_pct: float = SLOW_DECAY_PCT,
    target: float = DECAY_TARGET,
) -> torch.Tensor:
    """``linspace(log(target) / slow_decay_pct, log(target) / fast_decay_pct, channels)`` (negative values; the
    windows use their magnitude), so ``exp(rate * pct) == target`` at both ends.

    Shape:
        -> (channels,)
    """
    if not (fast_decay_pct > 0 and slow_decay_pct > 0 and 0 < target < 1):
        raise ValueError(
            f"decay needs positive extents and a target in (0, 1), got fast_decay_pct={fast_decay_pct}, "
            f"slow_decay_pct={slow_decay_pct}, target={target}"
        )
    return torch.linspace(math.log(target) / slow_decay_pct, math.log(target) / fast_decay_pct, channels)
