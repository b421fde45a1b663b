"""The fused implicit-kernel evaluation (paper Eq. 4) against the kernel written out with plain tensor operations:
values and every input's gradient in float64, in one block and in blocks of kernel rows (also on two threads)."""

from __future__ import annotations

import pytest
import torch

from hyenapixel.ops import implicit, implicit_kernel, implicit_kernel_ref


def _inputs(seed: int, channels: int = 5, emb: int = 6, hidden: tuple[int, ...] = (8, 7), size=(6, 9)):
    g = torch.Generator().manual_seed(seed)

    def rand(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=g, dtype=torch.float64).requires_grad_()

    z = rand(emb, *size)
    dist = torch.rand(*size, generator=g, dtype=torch.float64) * 5
    decay, shift = rand(channels), rand(channels)
    widths = (emb, *hidden)
    weights = [rand(o, i + 1) for i, o in zip(widths[:-1], widths[1:])]
    w_out = rand(channels, hidden[-1])
    return z, dist, decay, shift, w_out, weights


def _written_out(z, dist, decay, shift, w_out, weights) -> torch.Tensor:  # noqa: ANN001 - tensors
    """``W_out sin(... sin(W_1 z + b_1) ...) * (exp(-|decay| dist) + shift)``, one position at a time per layer."""
    h = z.reshape(z.shape[0], -1)
    for w in weights:
        h = torch.sin(w[:, :-1] @ h + w[:, -1:])
    window = torch.exp(-decay.abs()[:, None] * dist.reshape(1, -1)) + shift[:, None]
    return (w_out @ h) * window


@pytest.mark.parametrize("block_elements", [None, 16])
def test_fused_kernel_equals_the_written_out_kernel(monkeypatch, block_elements) -> None:
    if block_elements is not None:  # blocks of one kernel row
        monkeypatch.setattr(implicit, "BLOCK_ELEMENTS", block_elements)
    z, dist, decay, shift, w_out, weights = _inputs(0)
    got = implicit_kernel(z, dist, decay, shift, w_out, *weights)
    want = _written_out(z, dist, decay, shift, w_out, weights)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(implicit_kernel_ref(z, dist, decay, shift, w_out, *weights), want, rtol=1e-12, atol=0)
    up = torch.randn(want.shape, dtype=torch.float64)
    wrt = [z, decay, shift, w_out, *weights]
    for a, b in zip(torch.autograd.grad((got * up).sum(), wrt), torch.autograd.grad((want * up).sum(), wrt)):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-11)


def _check_written_out(seed: int, size: tuple[int, int]) -> None:
    """The fused kernel on ``size`` taps equals the written-out one, values and the parameters' gradients."""
    z, dist, decay, shift, w_out, weights = _inputs(seed, size=size)
    got = implicit_kernel(z, dist, decay, shift, w_out, *weights)
    want = _written_out(z, dist, decay, shift, w_out, weights)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    wrt = [decay, shift, w_out, *weights]
    for a, b in zip(torch.autograd.grad(got.sum(), wrt), torch.autograd.grad(want.sum(), wrt)):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-11)


def test_row_blocks_on_two_threads_equal_the_written_out_kernel(monkeypatch, block_threads) -> None:
    monkeypatch.setattr(implicit, "BLOCK_ELEMENTS", 16)
    _check_written_out(1, (9, 4))


def test_only_kernels_from_the_threshold_on_spread_their_rows_over_threads(monkeypatch, two_threads_pool_tasks) -> None:
    # two threads, blocks of one row: fewer taps than THREADS_FROM_TAPS run as one loop on torch's threads, at least
    # that many on Python threads; both equal the written-out kernel, values and gradients
    monkeypatch.setattr(implicit, "BLOCK_ELEMENTS", 16)
    monkeypatch.setattr(implicit, "THREADS_FROM_TAPS", 36)
    for size, spreads in (((5, 7), False), ((6, 6), True)):
        two_threads_pool_tasks.clear()
        _check_written_out(2, size)
        assert bool(two_threads_pool_tasks) == spreads, size


def _check_region() -> None:
    """The taps rows 1-5, columns 2-8 of a 7 x 10 kernel: values as the written-out kernel of that crop; the gradient
    of z is the crop's gradient inside the region and zero outside it (autograd of the slicing in the reference)."""
    z, dist, decay, shift, w_out, weights = _inputs(3, size=(7, 10))
    region = (slice(1, 6), slice(2, 9))
    got = implicit_kernel(z, dist, decay, shift, w_out, *weights, region=region)
    want = _written_out(z[:, 1:6, 2:9], dist[1:6, 2:9], decay, shift, w_out, weights)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    ref = implicit_kernel_ref(z, dist, decay, shift, w_out, *weights, region=region)
    torch.testing.assert_close(ref, want, rtol=1e-12, atol=0)
    up = torch.randn(want.shape, dtype=torch.float64)
    wrt = [z, decay, shift, w_out, *weights]
    got_grads = torch.autograd.grad((got * up).sum(), wrt)
    for a, b in zip(got_grads, torch.autograd.grad((want * up).sum(), wrt)):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-11)
    outside = torch.ones(7, 10, dtype=torch.bool)
    outside[1:6, 2:9] = False
    assert got_grads[0][:, outside].eq(0).all()
    assert got_grads[0][:, 1:6, 2:9].ne(0).all()


def test_region_in_one_block_equals_the_written_out_kernel_of_its_taps() -> None:
    _check_region()


def test_region_in_row_blocks_equals_the_written_out_kernel_of_its_taps(monkeypatch, block_threads) -> None:
    monkeypatch.setattr(implicit, "BLOCK_ELEMENTS", 16)  # blocks of one kernel row, on two threads in the 2nd case
    _check_region()


def test_region_with_a_step_is_refused() -> None:
    z, dist, decay, shift, w_out, weights = _inputs(4)
    with pytest.raises(ValueError, match="unit-step"):
        implicit_kernel(z, dist, decay, shift, w_out, *weights, region=(slice(0, 6, 2), slice(None)))
