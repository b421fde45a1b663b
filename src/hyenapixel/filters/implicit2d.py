"""The 2D HyenaPixel implicit filter (paper Section 3, "HyenaPixel", Eq. 4).

kernel(c, x, y) = FFN(PE(x, y))_c * (exp(-|alpha_c| * ||(x, y) - center||) + b_c)

PE is the 2D sine/cosine positional encoding of Wang & Liu (half the channels encode the column, half the row);
the FFN is a sine-activated MLP with hidden width 2K. The learnable skip term ``skip`` (the Hyena "bias" D) is kept
here with the filter; mixers add it to the kernel's center tap.

The filter can evaluate any rectangular region of taps alone (``filter(region)``): a convolution never uses the taps
that cannot reach its output (at 800 x 1333 px a 667 x 667 stage-1 kernel meets a 200 x 333 map through 399 x 665
of them), so the mixers ask only for those. The kernel is computed by one autograd function that folds the sine
frequencies into the linear layers and recomputes its activations in backward instead of storing them
(:class:`_ImplicitKernel`); it equals the module-by-module evaluation ``mlp(pos_emb) * window()`` up to float
rounding.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable

from hyenapixel.filters.decay import decay_rates
from hyenapixel.filters.mlp import SineMLP
from hyenapixel.ops.parallel import block_workers, parallel_map, split_evenly


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


def _with_ones_row(rows: int, cols: int, like: torch.Tensor) -> torch.Tensor:
    """An uninitialised ``(rows + 1, cols)`` matrix whose last row is ones: an input that carries its layer's bias.

    Shape:
        -> (rows + 1, cols)
    """
    out = like.new_empty(rows + 1, cols)
    out[rows] = 1
    return out


def _sine_layers(
    z: torch.Tensor, weights: tuple[torch.Tensor, ...], pre: list[torch.Tensor] | None = None
) -> list[torch.Tensor]:
    """Hidden sine layers ``h <- sin(W h + b)``, channels-first, each bias stored as the last column of its weight
    and each input with a ones row (so a layer is one matrix product, without a pass that adds the bias). With a
    list ``pre``, the pre-activations ``W h + b`` are kept in it (the backward needs their cosines).

    Shape:
        z: (E, *spatial), weights: (H_i, H_{i-1} + 1) -> inputs of every layer and the last output, each with its
        ones row: [(E + 1, P), (H_1 + 1, P), ..., (H_n + 1, P)]; pre: [(H_i, P)]
    """
    e = z.shape[0]
    h = _with_ones_row(e, z[0].numel(), z)
    h[:e].view_as(z).copy_(z)
    hs = [h]
    for w in weights:
        out = _with_ones_row(w.shape[0], h.shape[1], h)
        if pre is None:  # forward: no out= argument, which torch.export refuses while parameters require grad
            out[:-1] = torch.mm(w, h).sin_()
        else:  # backward only
            pre.append(torch.mm(w, h))
            torch.sin(pre[-1], out=out[:-1])
        hs.append(out)
        h = out
    return hs


def _decay(decay: torch.Tensor, dist: torch.Tensor) -> torch.Tensor:
    """``exp(-|decay_c| * dist_p)``.

    Shape:
        decay (C,), dist (P,) -> (C, P)
    """
    return torch.outer(decay.abs(), dist).neg_().exp_()


# Positions per block of the fused kernel evaluation: about this many elements in its widest activation (512 KiB
# in float32), so the whole MLP chain of a block runs in cache. On the 2-core EPYC the stage-1 kernel of an
# 800 x 1333 input (64 channels, 399 x 665 taps) evaluates in 118 ms in blocks against 271 ms in one piece.
BLOCK_ELEMENTS = 1 << 17


def _row_blocks(z: torch.Tensor, widest: int) -> list[slice]:
    """Blocks of whole kernel rows with about ``BLOCK_ELEMENTS / widest`` positions each (CPU; one block elsewhere).

    Shape:
        z: (E, h, w)
    """
    rows, width = z.shape[1], z.shape[2]
    if z.device.type != "cpu":  # GPUs want one large product per layer
        return [slice(0, rows)]
    step = max(1, BLOCK_ELEMENTS // (widest * width))
    return [slice(r, min(r + step, rows)) for r in range(0, rows, step)]


def _mlp_row_blocks(z: torch.Tensor, w_out: torch.Tensor, weights: Sequence[torch.Tensor]) -> list[slice]:
    """:func:`_row_blocks` sized for the widest layer of the filter MLP (the same blocks in forward and backward)."""
    return _row_blocks(z, max(w_out.shape[0], *(w.shape[0] for w in weights)))


class _ImplicitKernel(torch.autograd.Function):
    """``kernel = W_out sin(W_n ... sin(W_1 z + b_1) ... + b_n) * (exp(-|decay| dist) + shift)`` (Eq. 4).

    The caller folds the sine frequencies and biases into ``weights``: ``[f_i W_i | f_i b_i]`` per hidden layer,
    since ``sin(f (W h + b)) = sin((f W) h + f b)``. Forward and backward run over blocks of kernel rows
    (:data:`BLOCK_ELEMENTS`), each block's whole MLP chain in cache; only the inputs are saved, and backward
    recomputes a block's activations right before using them (for a 667 x 667 stage-1 kernel a hidden activation
    is 114 MiB, a block's 512 KiB). Not twice differentiable.

    Shape:
        z: (E, h, w), dist: (h, w), decay/shift: (C,), w_out: (C, H_n), weights: (H_i, H_{i-1} + 1) -> (C, h * w)
    """

    @staticmethod
    def forward(ctx, z, dist, decay, shift, w_out, *weights):  # noqa: ANN001, ANN205 - autograd signature
        ctx.save_for_backward(z, dist, decay, shift, w_out, *weights)
        width = z.shape[2]
        out = z.new_empty(w_out.shape[0], z.shape[1] * width)

        def block(rows: slice) -> None:
            h = _sine_layers(z[:, rows], weights)[-1][:-1]
            window = _decay(decay, dist[rows].reshape(-1)).add_(shift[:, None])
            out[:, rows.start * width : rows.stop * width] = torch.mm(w_out, h).mul_(window)

        parallel_map(block, _mlp_row_blocks(z, w_out, weights))
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor):  # noqa: ANN205 - autograd signature
        z, dist, decay, shift, w_out, *weights = ctx.saved_tensors
        grad = grad.contiguous()
        width = z.shape[2]
        g_z = torch.empty_like(z, memory_format=torch.contiguous_format) if ctx.needs_input_grad[0] else None
        blocks = _mlp_row_blocks(z, w_out, weights)

        def run(group: range) -> list[torch.Tensor]:
            """The parameter gradients from the row blocks ``group`` (g_z is written in place, rows disjoint)."""
            g_shift, g_decay = torch.zeros_like(shift), torch.zeros_like(decay)
            g_out = torch.zeros_like(w_out)
            g_weights = [torch.zeros_like(w) for w in weights]
            for rows in (blocks[i] for i in group):
                pre: list[torch.Tensor] = []
                hs = _sine_layers(z[:, rows], tuple(weights), pre)
                h = hs.pop()[:-1]
                g = grad[:, rows.start * width : rows.stop * width]
                d = dist[rows].reshape(-1)
                e = _decay(decay, d)
                t = torch.mm(w_out, h).mul_(g)  # grad * raw kernel
                g_shift += t.sum(1)
                g_decay.addmv_(t.mul_(e), d)
                g_raw = torch.mul(g, e.add_(shift[:, None]), out=t)  # gradient of the raw MLP output
                g_out.addmm_(g_raw, h.t())
                g_h = torch.mm(w_out.t(), g_raw)
                for i in range(len(weights) - 1, -1, -1):
                    w, x = weights[i], hs[i]
                    g_a = g_h.mul_(pre[i].cos_())  # the pre-activation turned in place into sin'(W x + b)
                    g_weights[i].addmm_(g_a, x.t())  # bias gradient in the last column
                    g_h = torch.mm(w[:, :-1].t(), g_a) if i > 0 or g_z is not None else None
                if g_z is not None:
                    g_z[:, rows] = g_h.view(g_h.shape[0], -1, width)
            return [g_shift, g_decay, g_out, *g_weights]

        # each worker sums its own contiguous share of the blocks; the shares are added in a fixed order
        groups = split_evenly(len(blocks), block_workers(len(blocks)))
        partials = parallel_map(run, groups)
        g_shift, g_decay, g_out, *g_weights = (functools.reduce(torch.add, p) for p in zip(*partials))
        return g_z, None, g_decay.mul_(-decay.sign()), g_shift, g_out, *g_weights


def implicit_kernel_plain(
    z: torch.Tensor, dist: torch.Tensor, decay: torch.Tensor, shift: torch.Tensor, w_out: torch.Tensor, *weights
) -> torch.Tensor:
    """What :class:`_ImplicitKernel` computes, in plain differentiable ops: the path taken while ``torch.compile``
    traces the model (dynamo cannot trace the fused function's saved tensors) and a second implementation for tests.

    Shape:
        z: (E, h, w), dist: (h, w), decay/shift: (C,), w_out: (C, H_n), weights: (H_i, H_{i-1} + 1) -> (C, h * w)
    """
    h = z.reshape(z.shape[0], -1)
    for w in weights:
        h = torch.sin(torch.addmm(w[:, -1:], w[:, :-1], h))
    window = torch.exp(-torch.outer(decay.abs(), dist.reshape(-1))) + shift[:, None]
    return torch.mm(w_out, h) * window


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

    def window(self) -> torch.Tensor:
        """The modulation window ``exp(-|alpha| * dist) + b`` of Eq. 4.

        Shape:
            -> (channels, kh, kw)
        """
        return torch.exp(-self.distance * self.decay.abs()[:, None, None]) + self.shift[:, None, None]

    def forward(self, region: Region | None = None) -> torch.Tensor:
        """The kernel, or only its taps ``[rows, cols]`` for ``region = (rows, cols)`` (two unit-step slices).

        Shape:
            -> (channels, kh, kw), or (channels, len(rows), len(cols)) for a region
        """
        pos_emb, dist = self.pos_emb, self.distance
        if region is not None:
            pos_emb, dist = pos_emb[:, region[0], region[1]], dist[region[0], region[1]]
        *body, last = list(self.mlp)
        weights = [  # each sine frequency and bias folded into its linear layer
            torch.cat([sine.freq[:, None] * linear.weight, (sine.freq * linear.bias)[:, None]], 1)
            for linear, sine in zip(body[0::2], body[1::2])
        ]
        with torch.autocast(pos_emb.device.type, enabled=False):  # a kernel in the parameters' precision
            kernel = implicit_kernel_plain if torch.compiler.is_compiling() else _ImplicitKernel.apply
            k = kernel(pos_emb, dist, self.decay, self.shift, last.weight, *weights)
        size = pos_emb.shape[1:]
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
