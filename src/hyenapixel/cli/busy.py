"""A busy machine at the start of a CPU run: measured before torch is imported, so that the OpenMP threads of
torch's CPU kernels can be told to wait passively (``OMP_WAIT_POLICY=PASSIVE``).

On a machine whose cores are taken by other processes, OpenMP threads that spin while they wait for each other
(the runtime's default) steal the time the other threads need, and a two-thread training step slows far more than
its share of the CPU; passive waiting gives most of that back. On an idle machine spinning is faster, so the
policy changes only when the machine is busy. Figures and the benchmark: README, "A busy machine", and
``benchmarks/bench_busy.py``.
"""

from __future__ import annotations

import os
import time
from collections.abc import MutableMapping

__all__ = ["BUSY_CORES", "busy_cores", "wait_passively_if_busy"]

#: Other processes keeping at least this many cores busy make the machine busy.
BUSY_CORES = 0.75


def _cpu_times() -> tuple[int, int] | None:
    """(busy, total) jiffies of all CPUs from ``/proc/stat``; None where it cannot be read."""
    try:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    if len(fields) < 5:
        return None
    idle = fields[3] + fields[4]  # idle + iowait
    total = sum(fields[:8])  # guest time is already counted in user time
    return total - idle, total


def busy_cores(interval: float = 0.25) -> float | None:
    """How many cores are busy right now: the non-idle share of all CPUs' time over ``interval`` seconds times the
    core count (Linux ``/proc/stat``), else the 1-minute load average; None where neither is available."""
    first = _cpu_times()
    if first is not None:
        time.sleep(interval)
        second = _cpu_times()
        if second is not None and second[1] > first[1]:
            share = (second[0] - first[0]) / (second[1] - first[1])
            return share * (os.cpu_count() or 1)
    if hasattr(os, "getloadavg"):
        return os.getloadavg()[0]
    return None


def wait_passively_if_busy(
    environ: MutableMapping[str, str] = os.environ, busy: float | None = None, threshold: float = BUSY_CORES
) -> str | None:
    """If other processes keep ``threshold`` cores or more busy and ``OMP_WAIT_POLICY`` is not set, set it to
    ``PASSIVE`` in ``environ`` and return the one line that says so (None otherwise). Call it before torch is
    imported: the OpenMP runtime reads the variable when it starts. ``busy``: the measured busy cores (default:
    :func:`busy_cores`)."""
    if "OMP_WAIT_POLICY" in environ:
        return None
    busy = busy_cores() if busy is None else busy
    if busy is None or busy < threshold:
        return None
    environ["OMP_WAIT_POLICY"] = "PASSIVE"
    return (
        f"the machine is busy (other processes use {busy:.1f} of {os.cpu_count() or 1} cores): torch's threads wait "
        "passively (OMP_WAIT_POLICY=PASSIVE; set OMP_WAIT_POLICY=ACTIVE to keep spinning, --threads 1 for one thread)"
    )
