"""Slow, obviously correct references for the FFT long convolutions of :mod:`hyenapixel.ops.fftconv` (paper
Section 3): plain depthwise ``conv1d`` / ``conv2d`` in float64 with explicit zero padding, so any kernel size works,
including kernels larger than the input. They define what the fast ops must compute; the tests compare the fast
ops with them and compare them with a literal loop over the definition.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["fftconv1d_ref", "fftconv2d_ref"]


def fftconv2d_ref(x: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """``y[b,c,i,j] = sum_{a,b'} k[c,a,b'] * x[b,c, i + kh//2 - a, j + kw//2 - b']`` (zeros outside the image), by a
    direct depthwise convolution, computed and returned in float64.

    Shape:
        x: (B, C, H, W), k: (C, kh, kw) -> (B, C, H, W)
    """
    x, k = x.double(), k.double()
    kh, kw = k.shape[-2:]
    # a flipped kernel turns conv2d's cross-correlation into a convolution; left pad kernel_len - 1 - center and
    # right pad center keep the input's size whatever the kernel size
    xp = F.pad(x, (kw - 1 - kw // 2, kw // 2, kh - 1 - kh // 2, kh // 2))
    return F.conv2d(xp, k.flip(-1, -2).unsqueeze(1), groups=k.shape[0])


def fftconv1d_ref(x: torch.Tensor, k: torch.Tensor, *, causal: bool) -> torch.Tensor:
    """``y[t] = sum_j k[j] * x[t + c - j]`` with ``c = 0`` (causal) or ``K // 2`` (bidirectional), by a direct
    depthwise convolution, computed and returned in float64.

    Shape:
        x: (B, C, L), k: (C, K) -> (B, C, L)
    """
    x, k = x.double(), k.double()
    n = k.shape[-1]
    c = 0 if causal else n // 2
    return F.conv1d(F.pad(x, (n - 1 - c, c)), k.flip(-1).unsqueeze(1), groups=k.shape[0])
