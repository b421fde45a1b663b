"""Per-pixel operations of the MetaFormer blocks (paper Section 3, Fig. 3): the projections and channel MLPs of
channels-last feature maps, and the MLPs' StarReLU activation.

On CPU, ``F.linear`` runs on the BLAS GEMM (MKL), while a 1 x 1 convolution of a channels-last map can run on
oneDNN, which was faster for the dense-size maps of the HyenaPixel backbones, forward and backward (timings in
docs/benchmarks.md); with several threads this is the speed ConvFormer's 1 x 1 convolutions get.

StarReLU ``s * relu(x) ** 2 + b`` written as three operations allocates three maps as large as the MLP's hidden
layer (four times the block's channels); at large batches and maps each is a fresh, page-faulted allocation, which
costs more than the arithmetic. :func:`star_relu` computes the same values with one allocation (none in place),
and its backward saves one map instead of two and allocates one (the input gradient).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from hyenapixel.ops.tracing import tracing

__all__ = ["pixel_linear", "star_relu", "star_relu_ref"]


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


def star_relu_ref(x: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """StarReLU ``scale * relu(x) ** 2 + bias`` as plain operations: the reference of :func:`star_relu`, and the
    form traced graphs, mixed dtypes and autocast get.

    Shape:
        x: any, scale / bias: broadcastable to x (StarReLU: one element each) -> x's shape
    """
    return torch.addcmul(bias, scale, torch.relu(x).square())


def _square_scale_shift_(r: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """``bias + scale * r ** 2`` written over ``r`` (the last two operations of :func:`star_relu_ref`, in its order).

    Shape:
        r: any, scale / bias: broadcastable to r without enlarging it -> r's shape
    """
    r.mul_(r)
    return torch.addcmul(bias, scale, r, out=r)


def _dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``(a * b).sum()``; for two contiguous tensors as one dot product, without the product map (a fresh allocation
    as large as the MLP's hidden layer; the sum differs by float rounding). Differentiable either way.

    Shape:
        a, b: the same shape -> ()
    """
    if a.is_contiguous() and b.is_contiguous():
        return torch.dot(a.view(-1), b.view(-1))
    return (a * b).sum()


class _StarReLU(torch.autograd.Function):
    """:func:`star_relu_ref` with one allocation in forward (the squared ReLU, scaled and shifted in place) and the
    input the only saved map. Backward: ``dx = 2 s g r``, ``ds = sum(g r^2) = sum(g r x)``, ``db = sum(g)`` with
    ``r = relu(x)`` (zero where ``x <= 0``, so is ``dx``); with ``create_graph`` it is built from differentiable
    operations of ``x``, so it can be differentiated again."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor):  # noqa: ANN205
        ctx.save_for_backward(x, scale)
        ctx.bias_shape = bias.shape
        return _square_scale_shift_(torch.relu(x), scale, bias)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # noqa: ANN205 - autograd signature
        x, scale = ctx.saved_tensors
        need_x, need_scale, need_bias = ctx.needs_input_grad
        recorded = torch.is_grad_enabled()  # double backward: every step differentiable in x, nothing in place
        t = grad * torch.relu(x) if recorded else torch.relu(x).mul_(grad)  # g r
        grad_scale = _dot(t, x).reshape(scale.shape) if need_scale else None  # g r x = g r^2
        grad_bias = grad.sum().reshape(ctx.bias_shape) if need_bias else None
        grad_x = None
        if need_x:
            grad_x = t * (2 * scale) if recorded else t.mul_(2 * scale)
        return grad_x, grad_scale, grad_bias


def star_relu(x: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor, inplace: bool = False) -> torch.Tensor:
    """StarReLU ``scale * relu(x) ** 2 + bias`` (:func:`star_relu_ref`) with fewer passes and allocations over
    ``x``: without autograd recording, one allocation (``inplace=True``: none, ``x`` is overwritten and returned);
    with it, one allocation in forward and one map saved for backward (:class:`_StarReLU`; ``inplace`` does not
    apply, ``x`` is left as it is). The same values as the reference (the same operations in the same order); the
    gradients equal its gradients up to float rounding. Traced graphs, autocast, inputs whose dtype differs from
    ``scale``'s or ``bias``'s and a ``scale`` or ``bias`` that broadcasts ``x`` to a larger shape take the reference.

    Shape:
        x: any, scale / bias: broadcastable to x (StarReLU: one element each) -> x's shape
    """
    if (
        tracing()  # first: dynamo cannot trace the checks below
        or torch.is_autocast_enabled(x.device.type)
        or not x.dtype == scale.dtype == bias.dtype
        or torch.broadcast_shapes(x.shape, scale.shape, bias.shape) != x.shape
    ):
        return star_relu_ref(x, scale, bias)
    if torch.is_grad_enabled() and (x.requires_grad or scale.requires_grad or bias.requires_grad):
        return _StarReLU.apply(x, scale, bias)
    return _square_scale_shift_(torch.relu_(x) if inplace else torch.relu(x), scale, bias)
