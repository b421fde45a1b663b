"""Helpers shared by the benchmark scripts: timing, memory, reporting, and the mixer baseline.

A new benchmark (``benchmarks/bench_<idea>.py``, run as ``python -m benchmarks.bench_<idea>``) times callables
against a named baseline, measured in the same run::

    from benchmarks.common import CLOCKS, compare, machine_info, markdown_table, ms

    cmp = compare({"ours": f, "reference": g}, baseline="reference", warmup=2, repeats=5, clock=CLOCKS["wall"])
    print(f"# {machine_info(threads)}")
    print(markdown_table(["variant", "ms", "vs reference"],
                         [[k, ms(t), f"{cmp.ratios[k]:.2f}"] for k, t in cmp.medians.items()]))

The timing and memory measurement is the library's own (:mod:`hyenapixel.analysis.measure`, which ``hyenapixel
bench`` uses too), re-exported here:

* :mod:`benchmarks.common.timing`: :func:`interleaved_times` (warmup rounds, then timed rounds round-robin over
  the callables so that a change of machine load hits all alike; every time, by round) and
  :func:`interleaved_medians` (the median per callable), :func:`median_interval` (a median with its
  distribution-free confidence interval, for per-round ratios), ``CLOCKS`` (``wall``: elapsed time; ``cpu``:
  process CPU time, robust to other jobs when used with one thread; ``cuda``: elapsed time with a device
  synchronisation at both ends of each call), all from the library; and :func:`compare` (the medians plus ratios
  against a named baseline, a :class:`Comparison`).
* :mod:`benchmarks.common.memory`: :class:`PeakRSS` (the library's context manager: resident-memory peak of a code
  block above the RSS at its start, from ``/proc/self/status`` after resetting the kernel's peak counter) and
  :func:`run_isolated`
  (runs ``python -m <module> <args>`` in a fresh process with glibc's mmap threshold fixed, so the peak RSS follows
  the peak of live tensors, and returns the JSON object the process printed last).
* :mod:`benchmarks.common.report`: :func:`markdown_table`, :func:`ms`, :func:`interval` (a median with its
  interval as text), :func:`machine_info` (code version, torch, threads, load average), :func:`all_finite`,
  :func:`write_json`, :func:`finish`.
* :mod:`benchmarks.common.weights`: :func:`trained_like` (every parameter moved off its initial constant, so that
  exported graphs keep the scale and shift operators of trained weights).
* :mod:`benchmarks.common.baseline`: the S18 stage shapes (:data:`STAGES`, from :mod:`hyenapixel.models.families`)
  and :class:`BaselineHyenaPixel`, a straightforward HyenaPixel mixer the library's mixer is compared with.
"""

from benchmarks.common.baseline import (
    STAGES,
    BaselineHyenaPixel,
    Stage,
    check_equivalence,
    make_ours,
    set_cache_enabled,
)
from benchmarks.common.memory import FIXED_MALLOC, PeakRSS, run_isolated
from benchmarks.common.report import (
    all_finite,
    code_version,
    finish,
    interval,
    machine_info,
    markdown_table,
    ms,
    write_json,
)
from benchmarks.common.timing import (
    CLOCKS,
    Comparison,
    compare,
    interleaved_medians,
    interleaved_times,
    median_interval,
)
from benchmarks.common.weights import trained_like

__all__ = [
    "CLOCKS",
    "FIXED_MALLOC",
    "STAGES",
    "BaselineHyenaPixel",
    "Comparison",
    "PeakRSS",
    "Stage",
    "all_finite",
    "check_equivalence",
    "code_version",
    "compare",
    "interleaved_medians",
    "interleaved_times",
    "interval",
    "machine_info",
    "make_ours",
    "markdown_table",
    "median_interval",
    "ms",
    "run_isolated",
    "set_cache_enabled",
    "trained_like",
    "write_json",
    "finish",
]
