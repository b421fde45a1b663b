"""Smoke test of ``benchmarks/bench_export.py`` (the pattern of tests/test_benchmarks_smoke.py): its quick mode
runs every runtime on a reduced model and checks them against eager; its table computes the ratios it prints. No
timing thresholds."""

from __future__ import annotations

import math
from types import ModuleType

import pytest
import torch

pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    from benchmarks import bench_export

    return bench_export


def test_table_ratios(bench: ModuleType) -> None:
    t = {
        "2": {
            "a": {
                "eager": 0.2,
                "onnxruntime": 0.1,
                "onnxruntime_batched": 0.12,
                "compile": 0.3,
                "compile_unfrozen": 0.4,
            },
            "ref": {
                "eager": 0.1,
                "onnxruntime": 0.05,
                "onnxruntime_batched": 0.05,
                "compile": 0.1,
                "compile_unfrozen": 0.1,
            },
        }
    }
    lines = bench.format_table(t, ["a", "ref"], [2]).splitlines()
    assert lines[0].startswith("| model | batch | runtime | ms / image | vs eager | vs ref")
    assert lines[2] == "| a | 2 | eager | 100.0 | 1.00 | 2.00 |"
    assert lines[3] == "| a | 2 | onnxruntime | 50.0 | 0.50 | 2.00 |"
    assert lines[4] == "| a | 2 | onnxruntime_batched | 60.0 | 0.60 | 2.40 |"
    assert lines[5] == "| a | 2 | compile | 150.0 | 1.50 | 3.00 |"
    assert lines[6] == "| a | 2 | compile_unfrozen | 200.0 | 2.00 | 4.00 |"
    assert len(lines) == 2 + 10


@pytest.mark.slow
def test_quick_run(bench: ModuleType) -> None:
    threads = torch.get_num_threads()
    try:
        argv = ["--quick", "--backend", "aot_eager", "--models", "hpx_former_s18", "--batches", "3"]
        res = bench.main([*argv, "--train-batch", "2"])
    finally:
        torch.set_num_threads(threads)  # main() sets the process-wide thread count
    check = res["check"]["hpx_former_s18"]
    assert all(check[r] <= 1e-4 for r in ("onnxruntime", "onnxruntime_batched", "compile", "compile_unfrozen"))
    times = res["time"]
    assert set(times) == {"3"}
    assert all(math.isfinite(v) and v > 0 for b in times.values() for r in b.values() for v in r.values())
    train = res["train"]["hpx_former_s18"]
    assert train["loss_diff"] <= 1e-4 and train["eager"] > 0 and train["compile"] > 0
