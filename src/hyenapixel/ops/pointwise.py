"""Per-pixel linear maps of channels-last feature maps (the projections and channel MLPs of the MetaFormer blocks,
paper Section 3, Fig. 3) through the convolution kernels on multi-threaded CPUs.

On CPU, ``F.linear`` runs on the BLAS GEMM (MKL), while a 1 x 1 convolution of a channels-last map can run on
oneDNN, which was faster for the dense-size maps of the HyenaPixel backbones, forward and backward (timings in
docs/benchmarks.md); with several threads this is the speed ConvFormer's 1 x 1 convolutions get.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from hyenapixel.ops.tracing import tracing

__all__ = ["pixel_linear"]


class _OneDnnLinear(torch.autograd.Function):
    """``F.linear`` over the channels of a contiguous (B, H, W, C) float32 map by oneDNN with one thread: forward and
    input gradient as 1 x 1 convolutions of channels-last views (oneDNN), the weight gradient as one GEMM. Not
    twice differentiable."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None):  # noqa: ANN205
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        return _conv1x1(x, weight[:, :, None, None], bias)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor):  # noqa: ANN205 - autograd signature
        x, weight = ctx.saved_tensors
        grad = grad.contiguous()
        flat = grad.view(-1, grad.shape[-1])
        grad_x = _conv1x1(grad, weight.t().contiguous()[:, :, None, None]) if ctx.needs_input_grad[0] else None
        grad_w = flat.t().mm(x.reshape(-1, x.shape[-1])) if ctx.needs_input_grad[1] else None
        grad_b = flat.sum(0) if ctx.has_bias and ctx.needs_input_grad[2] else None
        return grad_x, grad_w, grad_b


def _conv1x1(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """oneDNN's 1 x 1 convolution of the channels-last view of a contiguous (B, H, W, C) map.

    Shape:
        x: (B, H, W, C_in), weight: (C_out, C_in, 1, 1) -> (B, H, W, C_out)
    """
    y = torch.ops.aten.mkldnn_convolution(x.permute(0, 3, 1, 2), weight, bias, [0, 0], [1, 1], [1, 1], 1)
    return y.permute(0, 2, 3, 1)


def pixel_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``F.linear(x, weight, bias)`` over the channels of a (B, H, W, C) map, on CPU by oneDNN (same values up to
    float rounding): with several torch threads as a 1 x 1 convolution of the map's channels-last view (torch then
    runs it, forward and backward, on oneDNN), with one thread for float32 by :class:`_OneDnnLinear` (torch would
    pick its GEMM for a 1 x 1 convolution there). Else ``F.linear``: other shapes and devices, a non-contiguous map,
    autocast, ``torch.compile`` (the compiler picks its own kernels), ``torch.jit`` tracing and ``torch.export``
    (ONNX and exported programs keep their MatMul / Gemm nodes), no oneDNN; these differ from the oneDNN paths by
    float rounding only.

    Shape:
        x: (B, H, W, C_in), weight: (C_out, C_in), bias: (C_out,) or None -> (B, H, W, C_out)
    """
    onednn = (
        not tracing()  # first: dynamo cannot trace the checks below
        and x.dim() == 4
        and x.device.type == "cpu"
        and x.is_contiguous()
        and not torch.is_autocast_enabled("cpu")
        and _onednn_available()
    )
    if onednn and torch.get_num_threads() > 1:
        return F.conv2d(x.permute(0, 3, 1, 2), weight[:, :, None, None], bias).permute(0, 2, 3, 1)
    float32 = x.dtype == weight.dtype == torch.float32 and (bias is None or bias.dtype == torch.float32)
    if onednn and float32:
        return _OneDnnLinear.apply(x, weight, bias)
    return F.linear(x, weight, bias)


def _onednn_available() -> bool:
    """Whether torch has oneDNN (checked after ``torch.compile``'s tracing, which cannot trace ``torch.backends``)."""
    return torch.backends.mkldnn.is_available()
