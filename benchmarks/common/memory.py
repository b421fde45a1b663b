"""Peak resident memory of a block of code (:class:`PeakRSS`, the library's, from
:mod:`hyenapixel.analysis.measure`), and running a measurement in a fresh process.

The peak is read from ``/proc/self/status`` (``VmHWM``) after resetting the kernel's peak counter to the current RSS
(``echo 5 > /proc/self/clear_refs``); where that is unavailable, ``ru_maxrss`` (the lifetime peak) is the fallback.
With glibc's default dynamic mmap threshold, freed large buffers stay in the heap and the peak RSS varies between
identical runs (docs/benchmarks.md); :func:`run_isolated` fixes the threshold at 128 KiB (:data:`FIXED_MALLOC`), so
every large tensor is its own mapping, returned to the system when freed, and the peak RSS follows the peak of live
tensors.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from hyenapixel.analysis.measure import PeakRSS

__all__ = ["FIXED_MALLOC", "PeakRSS", "run_isolated"]

ROOT = Path(__file__).resolve().parents[2]
FIXED_MALLOC = {"MALLOC_MMAP_THRESHOLD_": "131072", "MALLOC_TRIM_THRESHOLD_": "131072"}


def run_isolated(module: str, argv: Sequence[str], fixed_malloc: bool = True) -> dict:
    """Run ``python -m module *argv`` from the repository root in a fresh process (glibc's mmap threshold fixed
    unless ``fixed_malloc`` is false) and return the JSON object on the last line of its standard output."""
    env = dict(os.environ, **FIXED_MALLOC) if fixed_malloc else None
    cmd = [sys.executable, "-m", module, *argv]
    res = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env, cwd=ROOT)
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{res.stderr[-2000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])
