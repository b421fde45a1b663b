"""The fused evaluation of HyenaPixel's implicit 2D kernel (paper Section 3, Eq. 4) and its plain reference.

``kernel = W_out sin(W_n ... sin(W_1 z + b_1) ... + b_n) * (exp(-|decay| dist) + shift)``: a sine MLP over the
positional encoding ``z`` of every kernel tap, times the decay window. :func:`implicit_kernel` picks the
implementation in one place: the fused autograd function (:class:`_ImplicitKernel`: blocks of kernel rows, each
block's whole MLP chain in cache, activations recomputed in backward instead of stored) in eager calls, the plain
differentiable reference :func:`implicit_kernel_ref` while a graph is traced (:func:`~hyenapixel.ops.tracing.tracing`).
Both compute the same function up to float rounding; the tests compare them on values and gradients.
See docs/benchmarks.md for the timings behind the block size.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import torch
from torch.autograd.function import once_differentiable

from hyenapixel.ops.parallel import block_workers, parallel_map, split_evenly
from hyenapixel.ops.tracing import tracing

__all__ = ["BLOCK_ELEMENTS", "THREADS_FROM_TAPS", "implicit_kernel", "implicit_kernel_ref"]


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
        if pre is None:  # forward: the product written where its sine goes (no copy)
            torch.mm(w, h, out=out[:-1]).sin_()
        else:  # backward
            pre.append(torch.mm(w, h))
            torch.sin(pre[-1], out=out[:-1])
        hs.append(out)
        h = out
    return hs


def _decay(neg_rate: torch.Tensor, dist: torch.Tensor) -> torch.Tensor:
    """``exp(neg_rate_c * dist_p)`` (``neg_rate = -|decay|``).

    Shape:
        neg_rate (C,), dist (P,) -> (C, P)
    """
    return torch.outer(neg_rate, dist).exp_()


Region = tuple[slice, slice]


def _taps(t: torch.Tensor, region: Region | None) -> torch.Tensor:
    """The taps ``region = (rows, cols)`` of a ``(..., h, w)`` tensor (a view; all of it for ``None``)."""
    return t if region is None else t[..., region[0], region[1]]


#: Kernel taps per call from which the row blocks run on Python threads
#: (:func:`~hyenapixel.ops.parallel.parallel_map`); fewer go as one loop on torch's threads. Between the largest
#: kernel of a 224-px model (111 x 111) and the stage-3 kernels of dense inputs (docs/benchmarks.md).
THREADS_FROM_TAPS = 14 << 10

#: Positions per block of the fused kernel evaluation: about this many elements in its widest activation (512 KiB
#: in float32), so the whole MLP chain of a block runs in cache (timings: docs/benchmarks.md).
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


def _spread(z: torch.Tensor) -> bool:
    """Whether the row blocks of a kernel over the positions of ``z`` (E, h, w) are worth Python threads."""
    return z.shape[1] * z.shape[2] >= THREADS_FROM_TAPS


def _mlp_row_blocks(z: torch.Tensor, w_out: torch.Tensor, weights: Sequence[torch.Tensor]) -> list[slice]:
    """:func:`_row_blocks` sized for the widest layer of the filter MLP (the same blocks in forward and backward)."""
    return _row_blocks(z, max(w_out.shape[0], *(w.shape[0] for w in weights)))


class _ImplicitKernel(torch.autograd.Function):
    """``kernel = W_out sin(W_n ... sin(W_1 z + b_1) ... + b_n) * (exp(-|decay| dist) + shift)`` (Eq. 4) over the
    taps ``region`` of ``z`` and ``dist`` (all of them for ``None``).

    The caller folds the sine frequencies and biases into ``weights``: ``[f_i W_i | f_i b_i]`` per hidden layer,
    since ``sin(f (W h + b)) = sin((f W) h + f b)``. Forward and backward run over blocks of kernel rows
    (:data:`BLOCK_ELEMENTS`), each block's whole MLP chain in cache; only the inputs are saved, and backward
    recomputes a block's activations right before using them (for a 667 x 667 stage-1 kernel a hidden activation
    is 114 MiB, a block's 512 KiB). The gradient of ``z`` is written block by block into a tensor of ``z``'s whole
    shape, zero outside the region (no region-sized gradient to copy into it afterwards). Not twice differentiable.

    Shape:
        z: (E, kh, kw), dist: (kh, kw), decay/shift: (C,), w_out: (C, H_n), weights: (H_i, H_{i-1} + 1)
        -> (C, h * w) for the region's h x w taps
    """

    @staticmethod
    def forward(ctx, z, dist, region, decay, shift, w_out, *weights):  # noqa: ANN001, ANN205 - autograd signature
        ctx.save_for_backward(z, dist, decay, shift, w_out, *weights)
        ctx.region = region
        z, dist = _taps(z, region), _taps(dist, region)
        width = z.shape[2]
        out = z.new_empty(w_out.shape[0], z.shape[1] * width)
        neg_rate = decay.abs().neg_()

        def block(rows: slice) -> None:
            h = _sine_layers(z[:, rows], weights)[-1][:-1]
            window = _decay(neg_rate, dist[rows].reshape(-1)).add_(shift[:, None])
            torch.mul(torch.mm(w_out, h), window, out=out[:, rows.start * width : rows.stop * width])

        parallel_map(block, _mlp_row_blocks(z, w_out, weights), _spread(z))
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor):  # noqa: ANN205 - autograd signature
        z_all, dist, decay, shift, w_out, *weights = ctx.saved_tensors
        region = ctx.region
        z, dist = _taps(z_all, region), _taps(dist, region)
        grad = grad.contiguous()
        width = z.shape[2]
        g_z = _zero_outside(z_all, region) if ctx.needs_input_grad[0] else None
        g_z_taps = None if g_z is None else _taps(g_z, region)
        blocks = _mlp_row_blocks(z, w_out, weights)
        neg_rate = decay.abs().neg_()

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
                e = _decay(neg_rate, d)
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
                if g_z_taps is not None:
                    g_z_taps[:, rows] = g_h.view(g_h.shape[0], -1, width)
            return [g_shift, g_decay, g_out, *g_weights]

        # each worker sums its own contiguous share of the blocks; the shares are added in a fixed order
        spread = _spread(z)
        groups = split_evenly(len(blocks), block_workers(len(blocks), spread))
        partials = parallel_map(run, groups, spread)
        g_shift, g_decay, g_out, *g_weights = (functools.reduce(torch.add, p) for p in zip(*partials))
        return g_z, None, None, g_decay.mul_(-decay.sign()), g_shift, g_out, *g_weights


def _zero_outside(z: torch.Tensor, region: Region | None) -> torch.Tensor:
    """An uninitialised tensor like ``z`` (contiguous) whose entries outside the taps ``region`` are zero: the
    region is written by the caller.

    Shape:
        z: (E, kh, kw) -> (E, kh, kw)
    """
    out = torch.empty_like(z, memory_format=torch.contiguous_format)
    if region is None:
        return out
    rows, cols = (range(*s.indices(n)) for s, n in zip(region, z.shape[1:]))
    out[:, : rows.start].zero_()
    out[:, rows.stop :].zero_()
    out[:, rows.start : rows.stop, : cols.start].zero_()
    out[:, rows.start : rows.stop, cols.stop :].zero_()
    return out


def implicit_kernel_ref(
    z: torch.Tensor,
    dist: torch.Tensor,
    decay: torch.Tensor,
    shift: torch.Tensor,
    w_out: torch.Tensor,
    *weights: torch.Tensor,
    region: Region | None = None,
) -> torch.Tensor:
    """What :class:`_ImplicitKernel` computes, in plain differentiable ops: the reference of :func:`implicit_kernel`
    and its path while a graph is traced (dynamo cannot trace the fused function's saved tensors).

    Shape:
        z: (E, kh, kw), dist: (kh, kw), decay/shift: (C,), w_out: (C, H_n), weights: (H_i, H_{i-1} + 1)
        -> (C, h * w) for the region's h x w taps
    """
    z, dist = _taps(z, region), _taps(dist, region)
    h = z.reshape(z.shape[0], -1)
    for w in weights:
        h = torch.sin(torch.addmm(w[:, -1:], w[:, :-1], h))
    window = torch.exp(-torch.outer(decay.abs(), dist.reshape(-1))) + shift[:, None]
    return torch.mm(w_out, h) * window


def implicit_kernel(
    z: torch.Tensor,
    dist: torch.Tensor,
    decay: torch.Tensor,
    shift: torch.Tensor,
    w_out: torch.Tensor,
    *weights: torch.Tensor,
    region: Region | None = None,
) -> torch.Tensor:
    """``W_out sin(W_n ... sin(W_1 z + b_1) ... + b_n) * (exp(-|decay| dist) + shift)`` for the positions
    ``region = (rows, cols)`` of ``z`` and ``dist`` (two unit-step slices; ``None``: every position); each hidden
    layer's weight carries its bias as a last column (fold a sine frequency ``f`` in as ``[f W | f b]``). The
    fused function in eager calls (not twice differentiable; the gradient of ``z`` is zero outside the region),
    :func:`implicit_kernel_ref` while a graph is traced.

    Shape:
        z: (E, kh, kw), dist: (kh, kw), decay/shift: (C,), w_out: (C, H_n), weights: (H_i, H_{i-1} + 1)
        -> (C, h * w) for the region's h x w taps
    """
    if region is not None and any(s.step not in (None, 1) for s in region):
        raise ValueError(f"implicit_kernel: region must be two unit-step slices (rows, cols), got {region}")
    if tracing():
        return implicit_kernel_ref(z, dist, decay, shift, w_out, *weights, region=region)
    return _ImplicitKernel.apply(z, dist, region, decay, shift, w_out, *weights)
