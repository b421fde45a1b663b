"""Peak resident memory of a block of code, and running a measurement in a fresh process.

The peak is read from ``/proc/self/status`` (``VmHWM``) after resetting the kernel's peak counter to the current RSS
(``echo 5 > /proc/self/clear_refs``); where that is unavailable, ``ru_maxrss`` (the lifetime peak) is the fallback.
With glibc's default dynamic mmap threshold, freed large buffers stay in the heap and the peak RSS varies by about
+-10 % between identical runs; :func:`run_isolated` fixes the threshold at 128 KiB (:data:`FIXED_MALLOC`), so every
large tensor is its own mapping, returned to the system when freed, and the peak RSS follows the peak of live
tensors.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FIXED_MALLOC = {"MALLOC_MMAP_THRESHOLD_": "131072", "MALLOC_TRIM_THRESHOLD_": "131072"}


def _rss_kib() -> tuple[int, int | None]:
    """(current RSS, peak RSS since the last reset or None) in KiB."""
    try:
        with open("/proc/self/status") as f:
            fields = dict(line.split(":", 1) for line in f if ":" in line)
        return int(fields["VmRSS"].split()[0]), int(fields["VmHWM"].split()[0])
    except (OSError, KeyError, ValueError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, None


class PeakRSS:
    """``with PeakRSS() as mem: work()``, then ``mem.result()``: the RSS at entry (baseline), the peak RSS during
    the block and the peak above the baseline, in MiB, with the method used."""

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
        peak = _rss_kib()[1] if self.method.startswith("VmHWM") else None
        self.peak_kib = peak if peak is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    def result(self) -> dict[str, float | str]:
        return {
            "baseline_mib": self.baseline_kib / 1024,
            "peak_mib": self.peak_kib / 1024,
            "peak_above_baseline_mib": (self.peak_kib - self.baseline_kib) / 1024,
            "method": self.method,
        }


def run_isolated(module: str, argv: Sequence[str], fixed_malloc: bool = True) -> dict:
    """Run ``python -m module *argv`` from the repository root in a fresh process (glibc's mmap threshold fixed
    unless ``fixed_malloc`` is false) and return the JSON object on the last line of its standard output."""
    env = dict(os.environ, **FIXED_MALLOC) if fixed_malloc else None
    cmd = [sys.executable, "-m", module, *argv]
    res = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env, cwd=ROOT)
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{res.stderr[-2000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])
