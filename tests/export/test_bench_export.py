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


def test_paired_ratios_pair_the_calls_of_each_round(bench: ModuleType) -> None:
    # six rounds; in round i the machine runs at speed 1 + i (every call of the round alike), which the per-round
    # ratios cancel: a / ref is 2 in eager and 1.5 in onnxruntime in every round, a's onnxruntime / eager 0.375
    slow = [1.0 + i for i in range(6)]
    times = {
        "a|eager": [0.4 * f for f in slow],
        "a|onnxruntime": [0.15 * f for f in slow],
        "ref|eager": [0.2 * f for f in slow],
        "ref|onnxruntime": [0.1 * f for f in slow],
    }
    paired = bench.paired_ratios(times, ["a", "ref"], ["eager", "onnxruntime"])
    assert set(paired["a"]) == {"onnxruntime"} and set(paired["ref"]) == {"onnxruntime"}
    assert paired["a"]["onnxruntime"]["vs_eager"] == pytest.approx((0.375,) * 3)
    assert paired["a"]["onnxruntime"]["vs_eager_ratio"] == pytest.approx((0.75,) * 3)  # 1.5 / 2
    assert paired["ref"]["onnxruntime"]["vs_eager_ratio"] == pytest.approx((1.0,) * 3)
    times["a|onnxruntime"][5] *= 10  # one disturbed call moves the interval's end, not the median
    low, med, high = bench.paired_ratios(times, ["a", "ref"], ["eager", "onnxruntime"])["a"]["onnxruntime"]["vs_eager"]
    assert low == pytest.approx(0.375) and med == pytest.approx(0.375) and high == pytest.approx(3.75)
    table = bench.format_paired({"2": paired}, ["a", "ref"], [2], ["onnxruntime"]).splitlines()
    assert table[2] == "| a | 2 | onnxruntime | 0.375 [0.375, 0.375] | 0.750 [0.750, 0.750] |"
    assert len(table) == 3


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
    paired = res["paired"]["3"]["hpx_former_s18"]
    assert set(paired) == {"onnxruntime", "onnxruntime_batched", "compile", "compile_unfrozen"}
    assert paired["onnxruntime"]["vs_eager_ratio"] == pytest.approx((1.0,) * 3)  # the only model is the reference
    train = res["train"]["hpx_former_s18"]
    assert train["loss_diff"] <= 1e-4 and train["eager"] > 0 and train["compile"] > 0
