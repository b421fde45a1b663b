"""The 2D HyenaPixel implicit filter (paper Section 3, "HyenaPixel", Eq. 4).

kernel(c, x, y) = FFN(PE(x, y))_c * (exp(-|alpha_c| * ||(x, y) - center||) + b_c)

PE is the 2D sine/cosine positional encoding of Wang & Liu (half the channels encode the column, half the row);
the FFN is a sine-activated MLP with hidden width 2K. The learnable skip term ``skip`` (the Hyena "bias" D) is kept
here with the filter; mixers add it to the kernel's center tap.

The filter can evaluate any rectangular region of taps alone (``filter(region)``): a convolution never uses the taps
that cannot reach its output (at 800 x 1333 px a 667 x 667 stage-1 kernel meets a 200 x 333 map through 399 x 665
of them), so the mixers ask only for those. The sine frequencies are folded into the linear layers and the kernel is
evaluated by :func:`hyenapixel.ops.implicit.implicit_kernel` (fused, activations recomputed in backward);
it equals the module-by-module evaluation ``mlp(pos_emb) * window()`` up to float rounding.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from hyenapixel.filters.decay import decay_rates
from hyenapixel.filters.mlp import SineMLP
from hyenapixel.ops.implicit import implicit_kernel


def sincos_positional_encoding_2d(dim: int, height: int, width: int) -> torch.Tensor:
    """2D sine/cosine positional encoding (Wang & Liu): channels ``[0, dim/2)`` encode the column, the rest the row.

    Within each half, even channels are ``sin(pos * f_i)`` and odd ones ``cos(pos * f_i)`` with
    ``f_i = 10000 ** (-2i / (dim/2))``.

    Shape:
        -> (dim, height, width)
    """
    if dim % 4 != 0:
        raise ValueError(f"2D sine/cosine positional encoding needs a multiple of 4 channels, got {dim}")
    half = dim // 2
    freqs = torch.exp(torch.arange(0, half, 2, dtype=torch.float64) * (-math.log(10000.0) / half))
    cols = torch.arange(width, dtype=torch.float64)[:, None] * freqs  # (W, half/2)
    rows = torch.arange(height, dtype=torch.float64)[:, None] * freqs  # (H, half/2)
    pe = torch.empty(dim, height, width, dtype=torch.float64)
    pe[0:half:2] = torch.sin(cols).t()[:, None, :]
    pe[1:half:2] = torch.cos(cols).t()[:, None, :]
    pe[half::2] = torch.sin(rows).t()[:, :, None]
    pe[half + 1 :: 2] = torch.cos(rows).t()[:, :, None]
    return pe.float()


def radial_distance(height: int, width: int) -> torch.Tensor:
    """Euclidean distance of each kernel tap's center from the kernel center ``(height/2, width/2)``.

    For odd sizes the center is the middle tap, so the distance there is 0.

    Shape:
        -> (height, width)
    """
    i = torch.arange(height, dtype=torch.float64) + 0.5 - height / 2
    j = torch.arange(width, dtype=torch.float64) + 0.5 - width / 2
    return torch.sqrt(i[:, None] ** 2 + j[None, :] ** 2).float()


def resample_pos_emb_2d(pos_emb: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resample a learned 2D positional embedding to a new kernel size (bicubic, antialiased).

    Shape:
        (K, h, w) -> (K, size[0], size[1])
    """
    out = F.interpolate(pos_emb.detach().float()[None], size=size, mode="bicubic", antialias=True, align_corners=False)
    return out[0].to(pos_emb.dtype)


def pair(v: int | tuple[int, int]) -> tuple[int, int]:
    """``(v, v)`` for an int, else the first two entries as ints (a kernel size given as one number or two)."""
    return (int(v), int(v)) if isinstance(v, int) else (int(v[0]), int(v[1]))


Region = tuple[slice, slice]


def _extent(mask: torch.Tensor) -> torch.Tensor:
    """Per row, the distance from the first to the last true entry plus one (0 if none).

    Shape:
        (C, n) -> (C,)
    """
    idx = torch.arange(mask.shape[1], device=mask.device)
    first = torch.where(mask, idx, mask.shape[1]).min(1).values
    last = torch.where(mask, idx, -1).max(1).values
    return (last - first + 1).clamp_min(0)


def bbox_sides(mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per channel, the height and width of the bounding box of the true entries (0 if none).

    Shape:
        (C, kh, kw) -> (C,), (C,)
    """
    return _extent(mask.any(2)), _extent(mask.any(1))


class ImplicitFilter2d(nn.Module):
    """Implicit 2D long-convolution filter of HyenaPixel.

    Args:
        channels: number of kernels (one per channel).
        kernel_size: kernel height and width (int or pair); the paper uses 111/55/27/13 for 224 px input.
        emb_dim: positional-encoding channels K (paper: 32/32/48/64), a multiple of 4.
        hidden: FFN width (default 2K).
        num_inner: hidden-to-hidden layers in the FFN.

    Shape:
        forward() -> (channels, kh, kw)
    """

    def __init__(
        self,
        channels: int,
        kernel_size: int | tuple[int, int] = 55,
        emb_dim: int = 32,
        hidden: int | None = None,
        num_inner: int = 1,
    ) -> None:
        super().__init__()
        kh, kw = pair(kernel_size)
        if kh < 1 or kw < 1:
            raise ValueError(f"kernel_size must be positive, got {kernel_size}")
        self.channels = channels
        self.kernel_size = (kh, kw)
        self.pos_emb = nn.Parameter(sincos_positional_encoding_2d(emb_dim, kh, kw))
        self.mlp = SineMLP(emb_dim, hidden or 2 * emb_dim, channels, num_inner=num_inner, w=1.0)
        self.decay = nn.Parameter(decay_rates(channels) / max(kh, kw))
        self.shift = nn.Parameter(torch.zeros(channels))
        self.skip = nn.Parameter(torch.randn(channels))
        self.register_buffer("distance", radial_distance(kh, kw), persistent=False)

    @torch.no_grad()
    def reset_ffn(self, gain: float = 1.0) -> ImplicitFilter2d:
        """Initialise the FFN's linear layers as ``nn.Linear`` does by default (uniform in ``+-1/sqrt(fan_in)``),
        the output layer's weights times ``gain``.

        A MetaFormer initialises every linear layer, the filter's too, with a truncated normal of std 0.02, which
        starts the long kernel near zero next to the skip term (the mixer is local at first). With this
        initialisation, times a gain of a few, the long taps start at a few percent of the skip term, so that training
        finds long-range relations sooner; the isotropic ablation models use it (:mod:`hyenapixel.models.isotropic`).
        """
        linears = [m for m in self.mlp if isinstance(m, nn.Linear)]
        for module in linears:
            module.reset_parameters()
        linears[-1].weight.mul_(gain)
        return self

    def window(self) -> torch.Tensor:
        """The modulation window ``exp(-|alpha| * dist) + b`` of Eq. 4.

        Shape:
            -> (channels, kh, kw)
        """
        return torch.exp(-self.distance * self.decay.abs()[:, None, None]) + self.shift[:, None, None]

    @torch.no_grad()
    def support(self, threshold: float) -> torch.Tensor:
        """Per channel, the sides (rows, cols) of the bounding box of the taps where the window (Eq. 4) is at least
        ``threshold``: the filter size the training learned (paper Section 5, Fig. 5).

        Shape:
            -> (channels, 2)
        """
        return torch.stack(bbox_sides(self.window().float() >= threshold), 1)

    def forward(self, region: Region | None = None) -> torch.Tensor:
        """The kernel, or only its taps ``[rows, cols]`` for ``region = (rows, cols)`` (two unit-step slices).

        Shape:
            -> (channels, kh, kw), or (channels, len(rows), len(cols)) for a region
        """
        weights = self.mlp.folded_weights()  # each sine frequency and bias folded into its linear layer
        pos_emb, w_out = self.pos_emb, self.mlp[-1].weight
        with torch.autocast(pos_emb.device.type, enabled=False):  # a kernel in the parameters' precision
            k = implicit_kernel(pos_emb, self.distance, self.decay, self.shift, w_out, *weights, region=region)
        size = pos_emb.shape[1:] if region is None else pos_emb[0, region[0], region[1]].shape
        return k.view(self.channels, *size)

    @torch.no_grad()
    def resample_(self, kernel_size: int | tuple[int, int]) -> ImplicitFilter2d:
        """Resize the filter in place to a new kernel size (fine-tuning at higher resolution, paper Section 4.1).

        The learned positional embedding is resampled bicubically and the decay rates are scaled by
        ``old / new`` so that the window has the same value at the same *relative* position of the kernel.
        """
        kh, kw = pair(kernel_size)
        old = max(self.kernel_size)
        self.pos_emb = nn.Parameter(resample_pos_emb_2d(self.pos_emb, (kh, kw)))
        self.decay.mul_(old / max(kh, kw))
        self.kernel_size = (kh, kw)
        self.register_buffer("distance", radial_distance(kh, kw).to(self.decay.device), persistent=False)
        return self

    def extra_repr(self) -> str:
        return f"channels={self.channels}, kernel_size={self.kernel_size}"
