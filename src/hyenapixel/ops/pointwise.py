"""Per-pixel linear maps of channels-last feature maps (the projections and channel MLPs of the MetaFormer blocks,
paper Section 3, Fig. 3) through the convolution kernels on multi-threaded CPUs.

On CPU, ``F.linear`` runs on the BLAS GEMM (MKL), while a 1 x 1 convolution of a channels-last map runs on oneDNN
when torch has more than one thread. On the 2-core EPYC of docs/benchmarks.md the latter is 1.4-2x faster for the
dense-size maps of the HyenaPixel backbones (forward and backward; e.g. 64 -> 256 channels of 200 x 333: 43 against
60 ms), the speed ConvFormer's 1 x 1 convolutions get. With one thread both run the same GEMM, so ``F.linear`` stays.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["pixel_linear"]


def pixel_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``F.linear(x, weight, bias)`` over the channels of a (B, H, W, C) map: on CPU with several torch threads as a
    1 x 1 convolution of the map's channels-last view (same values up to float rounding), else ``F.linear``
    (other shapes and devices, one thread, ``torch.compile`` and ``torch.jit`` tracing).

    Shape:
        x: (B, H, W, C_in), weight: (C_out, C_in), bias: (C_out,) or None -> (B, H, W, C_out)
    """
    conv = (
        x.dim() == 4
        and x.device.type == "cpu"
        and x.is_contiguous()
        and torch.get_num_threads() > 1
        and not (torch.compiler.is_compiling() or torch.jit.is_tracing() or torch.jit.is_scripting())
    )
    if not conv:
        return F.linear(x, weight, bias)
    return F.conv2d(x.permute(0, 3, 1, 2), weight[:, :, None, None], bias).permute(0, 2, 3, 1)
