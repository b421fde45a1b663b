"""Timing and peak memory of calls: the one measurement helper of ``hyenapixel bench`` (the runtime scaling of paper
Fig. 2, :mod:`hyenapixel.analysis.bench`) and of the scripts in ``benchmarks/`` (which import it through
``benchmarks.common``).

Timing is interleaved: every round calls each function once, in turn, so that a change of machine load hits all of
them alike, and entry ``i`` of every list of times is from round ``i`` (per-round ratios pair calls made close
together). Summaries are medians, with a distribution-free confidence interval where wanted.

Peak memory: on CUDA ``torch.cuda.max_memory_allocated`` above the allocation before the call; on CPU the peak
resident set of the process (Linux: ``VmHWM`` after resetting the kernel's peak counter through
``/proc/self/clear_refs``) above the resident set before the call, so it counts what the call touched, allocator
overhead included.
"""

from __future__ import annotations

import ctypes
import gc
import math
import statistics
import time
from collections.abc import Callable, Hashable, Mapping, Sequence
from functools import partial
from typing import TypeVar

import torch

__all__ = [
    "CLOCKS",
    "PeakRSS",
    "device_clock",
    "interleaved_medians",
    "interleaved_times",
    "median_interval",
    "peak_memory",
]

K = TypeVar("K", bound=Hashable)


def _cuda_clock(device: torch.device | str | None = None) -> float:
    torch.cuda.synchronize(device)
    return time.perf_counter()


#: ``wall``: elapsed time; ``cpu``: CPU time of the process (robust to other jobs when torch runs one thread);
#: ``cuda``: elapsed time after waiting for the current CUDA device.
CLOCKS: dict[str, Callable[[], float]] = {"wall": time.perf_counter, "cpu": time.process_time, "cuda": _cuda_clock}


def device_clock(device: torch.device | str) -> Callable[[], float]:
    """The wall clock for timing work on ``device``: on CUDA it first waits for the device's queued work, so that a
    call is timed from start to finish."""
    device = torch.device(device)
    return partial(_cuda_clock, device) if device.type == "cuda" else time.perf_counter


def interleaved_times(
    fns: Mapping[K, Callable[[], object]],
    warmup: int,
    repeats: int,
    clock: Callable[[], float] = time.perf_counter,
    pause: float = 0.0,
) -> dict[K, list[float]]:
    """Seconds of every timed call of each function: ``warmup`` untimed rounds, then ``max(1, repeats)`` timed
    rounds, each round calling every function once in turn (so a change of machine load hits all of them alike).
    Entry ``i`` of every list is from round ``i``, so per-round ratios pair calls made close together.

    ``pause``: untimed seconds of sleep before each timed call, so that the worker threads a runtime leaves
    spinning after its call (onnxruntime's thread pool, OpenMP) go idle before the next runtime is timed."""
    for _ in range(warmup):
        for f in fns.values():
            f()
    times: dict[K, list[float]] = {k: [] for k in fns}
    for _ in range(max(1, repeats)):
        for k, f in fns.items():
            if pause:
                time.sleep(pause)
            t0 = clock()
            f()
            times[k].append(clock() - t0)
    return times


def interleaved_medians(
    fns: Mapping[K, Callable[[], object]],
    warmup: int,
    repeats: int,
    clock: Callable[[], float] = time.perf_counter,
    pause: float = 0.0,
) -> dict[K, float]:
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


def _lifetime_peak_kib() -> int:
    import resource  # POSIX only: imported where needed

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _rss_kib() -> tuple[int, int | None]:
    """(current RSS, peak RSS since the last reset or None) in KiB."""
    try:
        with open("/proc/self/status") as f:
            fields = dict(line.split(":", 1) for line in f if ":" in line)
        return int(fields["VmRSS"].split()[0]), int(fields["VmHWM"].split()[0])
    except (OSError, KeyError, ValueError):
        return _lifetime_peak_kib(), None


class PeakRSS:
    """``with PeakRSS() as mem: work()``, then ``mem.result()``: the resident set at entry (baseline), the peak
    resident set during the block and the peak above the baseline, in MiB, with the method used.

    The peak is ``VmHWM`` of ``/proc/self/status`` after resetting the kernel's peak counter to the current resident
    set (``echo 5 > /proc/self/clear_refs``); where that is unavailable, ``ru_maxrss`` (the lifetime peak, which
    :attr:`resets` tells) is the fallback."""

    baseline_kib: int
    peak_kib: int
    method: str

    def __enter__(self) -> PeakRSS:
        self.baseline_kib, _ = _rss_kib()
        self.method = "VmHWM after clear_refs"
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # resets the peak-RSS counter (VmHWM) to the current RSS
        except OSError:
            self.method = "ru_maxrss (lifetime peak)"
        return self

    def __exit__(self, *exc: object) -> None:
        peak = _rss_kib()[1] if self.resets else None
        self.peak_kib = peak if peak is not None else _lifetime_peak_kib()

    @property
    def resets(self) -> bool:
        """Whether the peak was reset at entry (else it is the process's lifetime peak)."""
        return self.method.startswith("VmHWM")

    def result(self) -> dict[str, float | str]:
        return {
            "baseline_mib": self.baseline_kib / 1024,
            "peak_mib": self.peak_kib / 1024,
            "peak_above_baseline_mib": (self.peak_kib - self.baseline_kib) / 1024,
            "method": self.method,
        }


def _malloc_trim() -> None:
    """Return glibc's freed heap memory to the system, so that the resident set before a call is what is live."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def peak_memory(fn: Callable[[], object], device: torch.device | str = "cpu") -> float:
    """Bytes by which ``fn()`` raises the peak memory above what was in use before it (NaN where the platform
    cannot tell: CPU memory needs Linux's ``/proc/self/clear_refs``).

    CUDA: ``torch.cuda.max_memory_allocated`` above ``memory_allocated`` before the call. CPU: :class:`PeakRSS`
    around the call, after ``gc.collect`` and glibc's ``malloc_trim``.
    """
    device = torch.device(device)
    gc.collect()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        fn()
        torch.cuda.synchronize(device)
        return float(torch.cuda.max_memory_allocated(device) - before)
    _malloc_trim()
    with PeakRSS() as mem:
        fn()
    if not mem.resets:
        return float("nan")
    return float(max(mem.peak_kib - mem.baseline_kib, 0) * 1024)
