"""Independent references for the long convolutions, shared by the op, mixer and benchmark tests: plain depthwise
``conv1d``/``conv2d`` (cross-correlation with a flipped kernel and explicit zero padding, so kernels larger than the
input work), in float64. tests/ops/test_fftconv.py checks them against a literal loop over the definition.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def ref_conv2d(x: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """``y[b,c,i,j] = sum k[c,a,b'] x[b,c,i+kh//2-a, j+kw//2-b']`` via a depthwise cross-correlation in float64."""
    x = x.double()
    k = k.double()
    nc, kh, kw = k.shape
    ch, cw = kh // 2, kw // 2
    # Flipped kernel turns the correlation into a convolution; the left pad is kernel_len - 1 - center, the right pad
    # is center, so the output has the input's size whatever the kernel size.
    xp = F.pad(x, (kw - 1 - cw, cw, kh - 1 - ch, ch))
    return F.conv2d(xp, k.flip(-1, -2).unsqueeze(1), groups=nc)


def ref_conv1d(x: torch.Tensor, k: torch.Tensor, causal: bool) -> torch.Tensor:
    """``y[t] = sum_j k[j] x[t + c - j]``, ``c = 0`` (causal) or ``K // 2`` (bidirectional, K = kernel length)."""
    x = x.double()
    k = k.double()
    nc, nk = k.shape
    c = 0 if causal else nk // 2
    xp = F.pad(x, (nk - 1 - c, c))
    return F.conv1d(xp, k.flip(-1).unsqueeze(1), groups=nc)
