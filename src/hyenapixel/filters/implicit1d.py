"""The 1D Hyena implicit filter, causal (original Hyena) and bidirectional (paper Section 3, "Hyena" and
"Bi-directional Hyena", Eq. 2).

kernel(c, t) = FFN(PE(t))_c * exp(-|alpha_c| * t_norm)

PE(t) is ``[t_lin, cos(2 pi f t / L), -sin(2 pi f t / L)]`` for ``bands`` frequencies ``f``; for the causal filter
``t_lin`` runs 0..1 and ``t_norm = t_lin``; for the bidirectional filter (length ``2L - 1``, centered) ``t_lin``
rises 0..1 to the center and falls back to 0 and ``t_norm = 1 - t_lin`` is the normalised distance from the
center, i.e. the window ``exp(-alpha |t|)``. The decay rates are fixed (not trained), as in Hyena.

Other sequence lengths: the learned embedding is resampled by linear interpolation along the sequence
(``align_corners=True``: first, center and last tap stay put) and ``t_norm`` is recomputed, so the window keeps its
shape relative to the kernel length.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from hyenapixel.filters.decay import DECAY_TARGET, FAST_DECAY_PCT, SLOW_DECAY_PCT, decay_rates
from hyenapixel.filters.mlp import SineMLP


def _time_axis(length: int, causal: bool) -> torch.Tensor:
    if causal:
        return torch.linspace(0, 1, length)
    if length % 2 == 0:
        raise ValueError(f"a bidirectional (centered) filter needs an odd length, got {length}")
    half = torch.linspace(0, 1, length // 2 + 1)
    return torch.cat([half[:-1], half.flip(0)])


def hyena_positional_encoding(length: int, emb_dim: int, causal: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Hyena's complex-exponential positional encoding and the normalised distance used by the decay window.

    Returns ``(z, t_norm)``: ``z = [t_lin, Re exp(-i f w), Im exp(-i f w)]`` with ``w = 2 pi t / length``,
    ``f = linspace(1e-4, bands - 1, bands)`` and ``bands = (emb_dim - 1) // 2``.

    Shape:
        -> z (length, emb_dim), t_norm (length,)
    """
    if emb_dim < 3 or emb_dim % 2 == 0:
        raise ValueError(f"emb_dim must be odd and >= 3 (time, cosine and sine bands), got {emb_dim}")
    t_lin = _time_axis(length, causal)
    bands = (emb_dim - 1) // 2
    w = 2 * math.pi * torch.arange(length, dtype=torch.float64)[:, None] / length
    f = torch.linspace(1e-4, bands - 1, bands, dtype=torch.float64)[None, :]
    z = torch.cat([t_lin[:, None].double(), torch.cos(f * w), -torch.sin(f * w)], dim=1).float()
    t_norm = t_lin if causal else 1 - t_lin
    return z, t_norm


class ImplicitFilter1d(nn.Module):
    """Implicit Hyena filter producing one length-``kernel_len`` kernel per channel.

    Args:
        channels: number of kernels.
        kernel_len: length at which the filter is trained: ``L`` (causal) or ``2L - 1`` (bidirectional).
        emb_dim: positional-encoding width (odd; paper: 33/33/49/65, i.e. K + 1).
        hidden: FFN width (paper: 2K).
        causal: causal (original Hyena) or centered bidirectional filter.

    Shape:
        forward(length=None) -> (channels, length or kernel_len)
    """

    def __init__(
        self,
        channels: int,
        kernel_len: int,
        emb_dim: int = 33,
        hidden: int = 64,
        causal: bool = False,
        num_inner: int = 2,
        fast_decay_pct: float = FAST_DECAY_PCT,
        slow_decay_pct: float = SLOW_DECAY_PCT,
        target: float = DECAY_TARGET,
    ) -> None:
        super().__init__()
        self.channels, self.kernel_len, self.causal = channels, kernel_len, causal
        z, t_norm = hyena_positional_encoding(kernel_len, emb_dim, causal)
        self.pos_emb = nn.Parameter(z)
        self.register_buffer("t_norm", t_norm, persistent=False)
        self.register_buffer("decay", decay_rates(channels, fast_decay_pct, slow_decay_pct, target), persistent=False)
        self.mlp = SineMLP(emb_dim, hidden, channels, num_inner=num_inner, w=1.0)
        self.skip = nn.Parameter(torch.randn(channels))

    def embedding(self, length: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Positional embedding and window time axis for a kernel of ``length`` taps.

        Shape:
            -> (length, emb_dim), (length,)
        """
        if length == self.kernel_len:
            return self.pos_emb, self.t_norm
        if length < 1 or (not self.causal and length % 2 == 0):
            kind = "a causal filter needs a positive length" if self.causal else "a centered filter needs an odd length"
            raise ValueError(f"invalid kernel length {length}: {kind}")
        if length == 1:
            idx = 0 if self.causal else self.kernel_len // 2
            z = self.pos_emb[idx : idx + 1]
        else:
            z = F.interpolate(self.pos_emb.t()[None], size=length, mode="linear", align_corners=True)[0].t()
        t_norm = _time_axis(length, self.causal).to(self.t_norm)
        return z, t_norm if self.causal else 1 - t_norm

    def window(self, length: int | None = None) -> torch.Tensor:
        """The decay window ``exp(-|alpha| t_norm)`` of a kernel of ``length`` taps (default: :attr:`kernel_len`).

        Shape:
            -> (channels, length)
        """
        _, t_norm = self.embedding(length or self.kernel_len)
        return torch.exp(-t_norm[None, :] * self.decay.abs()[:, None])

    @torch.no_grad()
    def support(self, threshold: float, length: int | None = None) -> torch.Tensor:
        """Per channel, the number of taps of a ``length``-tap kernel where the window is at least ``threshold``
        (the learned filter size of paper Section 5 in 1D).

        Shape:
            -> (channels, 1)
        """
        return (self.window(length) >= threshold).sum(1, keepdim=True)

    def forward(self, length: int | None = None) -> torch.Tensor:
        """The kernel for ``length`` taps (default: :attr:`kernel_len`).

        Shape:
            -> (channels, length or kernel_len)
        """
        z, t_norm = self.embedding(length or self.kernel_len)
        k = self.mlp(z)  # (channels, length)
        return k * torch.exp(-t_norm[None, :] * self.decay.abs()[:, None])

    def extra_repr(self) -> str:
        return f"channels={self.channels}, kernel_len={self.kernel_len}, causal={self.causal}"
