"""Reporting: markdown tables, the machine a run was measured on, JSON output."""

from __future__ import annotations

import json
import math
import os
import platform
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import asdict, is_dataclass
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]


def ms(seconds: float) -> str:
    """Seconds as milliseconds with one decimal."""
    return f"{1000 * seconds:.1f}"


def interval(low_med_high: Sequence[float]) -> str:
    """A median with its interval, as :func:`benchmarks.common.median_interval` returns them (low, median, high), as
    text: ``"0.954 [0.913, 0.980]"``."""
    low, med, high = low_med_high
    return f"{med:.3f} [{low:.3f}, {high:.3f}]"


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A markdown table: one header row, the separator, then one line per row (cells formatted with ``str``)."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def code_version() -> str:
    """Git commit of the checkout, with ``+dirty`` when ``src/`` has uncommitted changes ('unknown' without git)."""
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "src"], cwd=ROOT, capture_output=True, text=True)
    except OSError:
        return "unknown"
    if rev.returncode != 0:
        return "unknown"
    return rev.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def machine_info(threads: int) -> str:
    """One line: code version, torch, threads and CPUs, python, architecture, load average."""
    load = ", load average " + " ".join(f"{v:.2f}" for v in os.getloadavg()) if hasattr(os, "getloadavg") else ""
    return (
        f"code {code_version()}, torch {torch.__version__}, {threads} threads of {os.cpu_count()} CPUs, "
        f"python {platform.python_version()}, {platform.machine()}{load}"
    )


def all_finite(results: object) -> bool:
    """True if every float in a nest of dicts, lists and tuples is finite."""
    if isinstance(results, dict):
        return all(all_finite(v) for v in results.values())
    if isinstance(results, (list, tuple)):
        return all(all_finite(v) for v in results)
    if isinstance(results, float):
        return math.isfinite(results)
    return True


def write_json(path: str | os.PathLike, results: dict) -> None:
    """Write ``results`` as indented JSON; dataclasses become dicts, anything else unknown its ``str``."""

    def default(o: object) -> object:
        return asdict(o) if is_dataclass(o) and not isinstance(o, type) else str(o)

    Path(path).write_text(json.dumps(results, indent=1, default=default))


def finish(results: dict, json_path: str | os.PathLike | None) -> dict:
    """The end of a benchmark run: print the load average (a busy machine shows there) and write ``results`` to
    ``json_path`` if given; returns ``results``."""
    if hasattr(os, "getloadavg"):
        print("\n# load average at the end: " + " ".join(f"{v:.2f}" for v in os.getloadavg()))
    if json_path:
        write_json(json_path, results)
    return results
