"""Depthwise 2D convolution with a faster CPU backward: the short convolution of the HyenaPixel operator (paper
Section 3, Fig. 3: the depthwise 5 x 5 convolution on the 3C projections).

On CPU, torch's depthwise convolution backward spends most of its time on the weight gradient, several times what
the forward takes (timings in docs/benchmarks.md). Both gradients are convolutions themselves, which the forward
kernels compute fast:

* ``grad_x = conv(grad_y, flip(w))`` with padding ``k - 1 - p`` (a depthwise convolution like the forward);
* ``grad_w[c] = sum_n conv(pad(x)[n, c], grad_y[n, c])``: per sample and channel, a "valid" correlation of the
  padded input with the output gradient as the kernel (a depthwise convolution with a map-sized kernel and the
  forward's zero padding).

The values are those of ``torch.nn.functional.conv2d`` up to float rounding (sums taken in another order), and the
backward is built from differentiable convolutions, so higher derivatives work.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from hyenapixel.ops.tracing import tracing

__all__ = ["depthwise_conv2d"]


def _weight_grad(x: torch.Tensor, grad_y: torch.Tensor, padding: int) -> torch.Tensor:
    """``grad_w[c, 0, a, b] = sum_{n,i,j} grad_y[n, c, i, j] * pad(x)[n, c, i + a, j + b]``, one sample at a time
    (faster than torch's weight gradient and than stacking the samples as a group's input channels), the padding
    left to the convolution (no padded copy of ``x``; see docs/benchmarks.md).

    Shape:
        x: (B, C, H, W), grad_y: (B, C, H', W') -> (C, 1, H + 2p - H' + 1, W + 2p - W' + 1)
    """
    total = None
    for n in range(x.shape[0]):
        part = F.conv2d(x[n : n + 1], grad_y[n : n + 1].transpose(0, 1), padding=padding, groups=x.shape[1])
        total = part if total is None else total.add_(part)  # the convolution's backward does not need its output
    if total is None:  # an empty batch: no sample contributes
        size = (x.shape[-2] + 2 * padding - grad_y.shape[-2] + 1, x.shape[-1] + 2 * padding - grad_y.shape[-1] + 1)
        return x.new_zeros(x.shape[1], 1, *size)
    return total.transpose(0, 1)


class _DepthwiseConv2d(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, padding: int):  # noqa: ANN205
        ctx.save_for_backward(x, weight)
        ctx.padding, ctx.has_bias = padding, bias is not None
        return F.conv2d(x, weight, bias, padding=padding, groups=x.shape[1])

    @staticmethod
    def backward(ctx, grad_y: torch.Tensor):  # noqa: ANN205 - built from differentiable convolutions
        x, weight = ctx.saved_tensors
        p, k = ctx.padding, weight.shape[-1]
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_x = F.conv2d(grad_y, weight.flip(-2, -1), padding=k - 1 - p, groups=x.shape[1])
        if ctx.needs_input_grad[1]:
            grad_w = _weight_grad(x, grad_y, p)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_b = grad_y.sum((0, 2, 3))
        return grad_x, grad_w, grad_b, None


def depthwise_conv2d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, padding: int) -> torch.Tensor:
    """``F.conv2d(x, weight, bias, padding=padding, groups=C)`` (stride 1, no dilation, zero padding), with the
    backward above on CPU when a gradient is needed, at any batch size and thread count (faster than torch's
    backward with one and with two threads, channels-last or not, docs/benchmarks.md); everywhere else (GPUs, no
    gradient, ``torch.compile`` or ``torch.jit`` tracing) exactly ``F.conv2d``.

    Shape:
        x: (B, C, H, W), weight: (C, 1, kh, kw), bias: (C,) or None -> (B, C, H + 2p - kh + 1, W + 2p - kw + 1)
    """
    c, kh, kw = weight.shape[0], weight.shape[-2], weight.shape[-1]
    if weight.shape[1] != 1 or x.dim() != 4 or x.shape[1] != c:
        raise ValueError(
            f"depthwise_conv2d: x (B, {c}, H, W) and weight ({c}, 1, kh, kw) expected, got "
            f"{tuple(x.shape)} and {tuple(weight.shape)}"
        )
    plain = (
        tracing()  # checked first: dynamo does not trace the rest
        or x.device.type != "cpu"
        or not torch.is_grad_enabled()
        or not (x.requires_grad or weight.requires_grad or (bias is not None and bias.requires_grad))
        or padding > min(kh, kw) - 1
    )
    if plain:
        return F.conv2d(x, weight, bias, padding=padding, groups=c)
    return _DepthwiseConv2d.apply(x, weight, bias, padding)
