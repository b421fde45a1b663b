"""Independent blocks of work on every CPU thread (the blocked FFT convolutions of paper Section 3 and the blocked
implicit filter of Eq. 4).

The FFT convolution and the implicit filter run on CPU as many cache-sized blocks (channel slices, rows of kernel
taps), each a handful of operations that one intra-op thread pool speeds up little (small matrix products,
memory-bound transforms). On the large maps of dense prediction, where the blocks are many, the blocks themselves are
spread over ``torch.get_num_threads()`` Python threads (torch releases the GIL inside its operations), each running
its operations on one intra-op thread; the calling thread works too. Blocks must write disjoint outputs; reductions
are left to the caller (per-worker partial results, summed in a fixed order).

Python threads pay only for large blocks. Starting them costs a core for a few milliseconds: with torch's default
OpenMP wait policy the caller's idle intra-op thread keeps spinning for a while after the last parallel operation,
on the core a worker needs. Callers whose blocks are small say ``spread=False``, and their blocks run as one plain
loop whose operations use torch's own threads (docs/benchmarks.md has the measurements behind each caller's choice).

Blocks run one after the other, exactly as a plain loop would, where threads cannot help or are unsafe: one intra-op
thread, fewer than two blocks, ``spread=False``, while autograd records operations (the workers would record into one
graph at the same time; forward and backward of an autograd function run without recording), while
``torch.compile`` or ``torch.jit`` traces, and inside a worker (no nesting).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import torch

from hyenapixel.ops.tracing import tracing

__all__ = ["block_workers", "intra_op_threads", "parallel_map", "split_evenly"]

T = TypeVar("T")
R = TypeVar("R")

_state = threading.local()
_pools: dict[int, ThreadPoolExecutor] = {}  # created on first use, one per worker count
_pools_lock = threading.Lock()
_fork_handler_registered = False


def _forget_pools_after_fork() -> None:
    """A forked child (e.g. a DataLoader worker) inherits the pools but not their threads: start afresh."""
    global _pools_lock
    _pools.clear()
    _pools_lock = threading.Lock()


@contextlib.contextmanager
def intra_op_threads(threads: int | None) -> Iterator[None]:
    """torch's intra-op thread count set to ``threads`` (None: left as it is) for the ``with`` block and restored
    after it: ``torch.set_num_threads`` changes the whole process."""
    saved = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(saved)


def block_workers(items: int, spread: bool = True) -> int:
    """How many threads :func:`parallel_map` would use for ``items`` blocks now (1: a plain loop)."""
    if tracing():
        return 1
    if not spread or items < 2 or getattr(_state, "inside", False) or torch.is_grad_enabled():
        return 1
    return max(1, min(torch.get_num_threads(), items))


def split_evenly(n: int, parts: int) -> list[range]:
    """``range(n)`` cut into ``parts`` contiguous, nonempty pieces whose lengths differ by at most one."""
    parts = max(1, min(parts, n))
    bounds = [n * i // parts for i in range(parts + 1)]
    return [range(a, b) for a, b in zip(bounds, bounds[1:])]


def _pool(workers: int) -> ThreadPoolExecutor:
    """The pool of ``workers`` threads, created on first use; so is the at-fork handler that forgets the pools in a
    forked child (nothing is registered or started on import)."""
    global _fork_handler_registered
    with _pools_lock:
        if not _fork_handler_registered and hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=_forget_pools_after_fork)
            _fork_handler_registered = True
        if workers not in _pools:
            _pools[workers] = ThreadPoolExecutor(workers, thread_name_prefix="hyenapixel-blocks")
        return _pools[workers]


def parallel_map(fn: Callable[[T], R], items: Sequence[T], spread: bool = True) -> list[R]:
    """``[fn(item) for item in items]``, with the items shared out over :func:`block_workers` threads
    (``spread=False``: the plain loop, for blocks too small for Python threads to pay).

    The calling thread and ``workers - 1`` pool threads take the next item in turn until none is left; while they
    run, torch uses one intra-op thread (``torch.set_num_threads`` is process-wide: other threads running torch
    operations at the same time get one thread too; restored afterwards), and each worker runs with the caller's
    inference-mode setting and without recording gradients. The first exception is re-raised.
    """
    workers = block_workers(len(items), spread)
    if workers == 1:
        return [fn(item) for item in items]
    results: list = [None] * len(items)
    order = itertools.count()
    take = threading.Lock()
    inference = torch.is_inference_mode_enabled()

    def work() -> None:
        outer = getattr(_state, "inside", False)
        _state.inside = True
        try:
            with torch.inference_mode(inference), torch.no_grad():
                while True:
                    with take:
                        i = next(order)
                    if i >= len(items):
                        return
                    results[i] = fn(items[i])
        finally:
            _state.inside = outer

    with intra_op_threads(1):
        futures = [_pool(workers - 1).submit(work) for _ in range(workers - 1)]
        try:
            work()
        finally:
            for f in futures:  # wait for all of them before anything else touches their outputs
                f.exception()
        for f in futures:
            f.result()
    return results
