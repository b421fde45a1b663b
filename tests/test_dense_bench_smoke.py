"""Smoke tests for ``benchmarks/bench_dense.py`` (run as ``python -m benchmarks.bench_dense``): its kernel policy,
rows and table on tiny inputs (no timing thresholds)."""

from __future__ import annotations

import argparse
import gc
import math
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from benchmarks import bench_dense


@pytest.fixture(autouse=True)
def _collect_models() -> Iterator[None]:
    """Free the models built here (timm's feature wrappers hold reference cycles) before the next test runs, so that
    a later memory measurement does not see their memory returned in the middle of it."""
    yield
    gc.collect()


def test_covering_kernels_reach_across_every_stage_map() -> None:
    assert bench_dense.covering_kernel_sizes(800, 1333) == [667, 333, 167, 83]  # the numbers
    assert bench_dense.covering_kernel_sizes(512, 2048) == [1023, 511, 255, 127]
    for h, w in ((800, 1333), (512, 2048), (97, 203)):
        for stride, k in zip(bench_dense.STRIDES, bench_dense.covering_kernel_sizes(h, w)):
            side = math.ceil(max(h, w) / stride)
            assert k % 2 == 1 and k // 2 == side - 1  # the center tap reaches the farthest position, no further


def test_covering_row_builds_the_model_with_these_kernels() -> None:
    model = bench_dense.ROWS["hpx_former_s18 (covering kernels)"].build(97, 203)
    stages = model.model.stages  # timm's feature wrapper around the MetaFormer
    per_stage = [{m.filter.kernel_size for m in s.modules() if hasattr(m, "spectrum_cache")} for s in stages]
    assert per_stage == [{(k, k)} for k in bench_dense.covering_kernel_sizes(97, 203)]


def test_rows_build_features_only_backbones() -> None:
    x = torch.randn(1, 3, 64, 96)
    for label in ("convformer_s18", "c_hpx_former_s18 (covering kernels)"):
        feats = bench_dense.ROWS[label].build(64, 96).eval()(x)
        assert [f.shape[-2:] for f in feats] == [(16, 24), (8, 12), (4, 6), (2, 3)]


def test_parse_size_and_bad_sizes() -> None:
    assert bench_dense.parse_size("800x1333") == (800, 1333)
    for bad in ("800", "800x", "axb", "16x800"):
        with pytest.raises(argparse.ArgumentTypeError):
            bench_dense.parse_size(bad)


def test_table_ratios_against_the_baseline() -> None:
    speed = {
        "convformer_s18": {"eval": 1.0, "train": 4.0, "eval_ratio": 1.0, "train_ratio": 1.0},
        "hpx_former_s18 (covering kernels)": {"eval": 1.1, "train": 6.0, "eval_ratio": 1.1, "train_ratio": 1.5},
    }
    memory = {"convformer_s18": {"peak_mib": 4096.0}, "hpx_former_s18 (covering kernels)": {"peak_mib": 6144.0}}
    lines = bench_dense.format_table(speed, memory).splitlines()
    assert lines[2] == "| convformer_s18 | 1000.0 | 1.00x | 4000.0 | 1.00x | 4.00 | 1.00x |"
    assert lines[3] == "| hpx_former_s18 (covering kernels) | 1100.0 | 1.10x | 6000.0 | 1.50x | 6.00 | 1.50x |"


def test_bench_size_times_every_row_and_divides_by_the_baseline() -> None:
    rows = [bench_dense.ROWS["convformer_s18"], bench_dense.ROWS["hpx_former_s18 (covering kernels)"]]
    res = bench_dense.bench_size(rows, (64, 64), warmup=1, repeats=1, clock=bench_dense.CLOCKS["cpu"])
    assert set(res) == {r.label for r in rows}
    for r in res.values():
        assert r["eval"] > 0 and r["train"] > 0
        assert r["eval_ratio"] == pytest.approx(r["eval"] / res["convformer_s18"]["eval"])
    assert res["convformer_s18"]["train_ratio"] == 1.0


def test_memory_child_reports_the_peak_of_a_training_step() -> None:
    res = bench_dense.memory_child("convformer_s18", (64, 64), steps=1)
    assert res["peak_mib"] >= res["baseline_mib"] > 0


@pytest.mark.slow
def test_main_quick_without_memory(tmp_path: Path) -> None:
    out = tmp_path / "res.json"
    threads = torch.get_num_threads()
    try:
        res = bench_dense.main(["--quick", "--no-memory", "--threads", "1", "--json", str(out)])
    finally:
        torch.set_num_threads(threads)  # main() sets the process-wide thread count
    table = res["sizes"]["64x96"]["speed"]
    assert set(table) == set(bench_dense.ROWS)
    assert table["convformer_s18"]["train_ratio"] == 1.0
    assert all(r["eval"] > 0 and r["train"] > 0 for r in table.values())
    assert out.read_text().startswith("{")
