"""Ratios against a named baseline measured in the same run. The interleaved timing itself is the library's
(:mod:`hyenapixel.analysis.measure`, which ``hyenapixel bench`` uses too), re-exported here."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import NamedTuple

from hyenapixel.analysis.measure import CLOCKS, interleaved_medians, interleaved_times, median_interval

__all__ = ["CLOCKS", "Comparison", "compare", "interleaved_medians", "interleaved_times", "median_interval"]


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
