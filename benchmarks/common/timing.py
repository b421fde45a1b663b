"""Interleaved timing of several callables and ratios against a named baseline measured in the same run."""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from typing import NamedTuple

import torch


def _cuda_clock() -> float:
    torch.cuda.synchronize()
    return time.perf_counter()


CLOCKS: dict[str, Callable[[], float]] = {"wall": time.perf_counter, "cpu": time.process_time, "cuda": _cuda_clock}


def interleaved_times(
    fns: Mapping[str, Callable[[], object]],
    warmup: int,
    repeats: int,
    clock: Callable[[], float] = time.perf_counter,
    pause: float = 0.0,
) -> dict[str, list[float]]:
    """Seconds of every timed call of each function: ``warmup`` untimed rounds, then ``max(1, repeats)`` timed
    rounds, each round calling every function once in turn (so a change of machine load hits all of them alike).
    Entry ``i`` of every list is from round ``i``, so per-round ratios pair calls made close together.

    ``pause``: untimed seconds of sleep before each timed call, so that the worker threads a runtime leaves
    spinning after its call (onnxruntime's thread pool, OpenMP) go idle before the next runtime is timed."""
    for _ in range(warmup):
        for f in fns.values():
            f()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(max(1, repeats)):
        for k, f in fns.items():
            if pause:
                time.sleep(pause)
            t0 = clock()
            f()
            times[k].append(clock() - t0)
    return times


def interleaved_medians(
    fns: Mapping[str, Callable[[], object]],
    warmup: int,
    repeats: int,
    clock: Callable[[], float] = time.perf_counter,
    pause: float = 0.0,
) -> dict[str, float]:
    """Median seconds per call of each function over the timed rounds of :func:`interleaved_times`."""
    times = interleaved_times(fns, warmup, repeats, clock, pause)
    return {k: statistics.median(v) for k, v in times.items()}


def median_interval(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float, float]:
    """``(low, median, high)``: the median of ``values`` and a distribution-free confidence interval for the median
    of the distribution they are drawn from (independent draws assumed): the order statistics ``x(k)`` and
    ``x(n+1-k)`` for the largest ``k`` whose binomial coverage ``1 - 2 P(Bin(n, 1/2) < k)`` is at least
    ``confidence``. With too few values for that coverage (fewer than 6 at 0.95) the interval is the whole range
    and covers less than asked."""
    xs = sorted(values)
    n = len(xs)
    if n == 0:
        raise ValueError("median_interval needs at least one value")
    k, below = 1, 1 / 2**n  # below: P(Bin(n, 1/2) <= k - 1)
    while k < (n + 1) // 2:
        below_next = below + math.comb(n, k) / 2**n  # P(Bin <= k)
        if 1 - 2 * below_next < confidence:
            break
        k, below = k + 1, below_next
    return xs[k - 1], statistics.median(xs), xs[n - k]


class Comparison(NamedTuple):
    """Median seconds per call of each variant and its time over the baseline's (< 1: faster than the baseline)."""

    medians: dict[str, float]
    baseline: str

    @property
    def ratios(self) -> dict[str, float]:
        ref = self.medians[self.baseline]
        return {k: t / ref for k, t in self.medians.items()}


def compare(
    fns: Mapping[str, Callable[[], object]],
    baseline: str,
    warmup: int,
    repeats: int,
    clock: Callable[[], float] = time.perf_counter,
) -> Comparison:
    """:func:`interleaved_medians` of ``fns``, one of which is the ``baseline`` the others are divided by."""
    if baseline not in fns:
        raise ValueError(f"baseline {baseline!r} is not one of the timed functions: {', '.join(fns)}")
    return Comparison(interleaved_medians(fns, warmup, repeats, clock), baseline)
