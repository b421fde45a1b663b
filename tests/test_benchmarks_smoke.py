"""Smoke tests for ``benchmarks/bench_mixer.py``: its functions run on tiny shapes and give finite numbers, and its
baseline mixer computes the same function as :class:`hyenapixel.mixers.HyenaPixelMixer` (no timing thresholds).
"""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch

from conv_references import ref_conv2d

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_mixer.py"


def _load_script(path: Path) -> ModuleType:
    """Import a benchmark script as the module its file name gives."""
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = module  # dataclasses resolve their module by name
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    return _load_script(SCRIPT)


def _tiny(bench: ModuleType):  # noqa: ANN202 - returns the script's Stage
    return bench.Stage("tiny", dim=8, size=6, kernel=11, emb=8)


def test_baseline_computes_the_same_mixer(bench: ModuleType) -> None:
    # Same weights, same input, float64: the benchmark compares two implementations of one function. (Both build
    # the window's distance table in float32, rounded slightly differently, hence not 1e-12; a wrong crop, flip or
    # missing term gives O(1) differences.)
    assert bench.check_equivalence(_tiny(bench), batch=2) < 1e-6
    assert bench.check_equivalence(bench.Stage("odd", dim=4, size=3, kernel=5, emb=4)) < 1e-6


def test_bench_stage_gives_finite_times(bench: ModuleType) -> None:
    res = bench.bench_stage(_tiny(bench), batch=2, warmup=0, repeats=1)
    keys = {"fwd_ours", "fwd_base", "fwdbwd_ours", "fwdbwd_base", "eval_cached", "eval_nocache", "eval_base"}
    keys.add("eval_shared")
    assert set(res) == keys
    assert all(math.isfinite(v) and v > 0 for v in res.values())
    table = bench.format_stage_table({"tiny": res}, batch=2)
    assert table.count("\n") == 2 and "| tiny |" in table


def test_interleaved_medians_calls_each_variant(bench: ModuleType) -> None:
    calls = {"a": 0, "b": 0}

    def f(name: str) -> None:
        calls[name] += 1

    res = bench.interleaved_medians({"a": lambda: f("a"), "b": lambda: f("b")}, warmup=2, repeats=3)
    assert calls == {"a": 5, "b": 5}
    assert set(res) == {"a", "b"} and all(v >= 0 for v in res.values())


def test_model_table_ratios(bench: ModuleType) -> None:
    speed = {
        "convformer_s18": {"eval_ips": 10.0, "train_ips": 4.0},
        "hpx_former_s18": {"eval_ips": 5.0, "train_ips": 2.0},
        "hpx_former_s18 (no cache)": {"eval_ips": 2.5},
    }
    memory = {
        "convformer_s18": {"train_peak_above_baseline_mib": 100.0},
        "hpx_former_s18": {"train_peak_above_baseline_mib": 150.0},
    }
    table = bench.format_model_table(speed, memory, 16, 8).splitlines()
    assert table[2].startswith("| convformer_s18 | 10.0 | 1.00 | 4.0 | 1.00 | 100 | 1.00 |")
    assert table[3] == "| hpx_former_s18 | 5.0 | 2.00 | 2.0 | 2.00 | 150 | 1.50 |"
    assert table[4] == "| hpx_former_s18 (no cache) | 2.5 | 4.00 | - | - | - | - |"


@pytest.mark.slow
def test_main_quick_end_to_end(bench: ModuleType, tmp_path: Path) -> None:
    out = tmp_path / "res.json"
    argv = ["--quick", "--stages", "4", "--models", "hpx_former_s18", "--img", "32", "--threads", "1"]
    threads = torch.get_num_threads()
    try:
        res = bench.main([*argv, "--no-check", "--breakdown", "--json", str(out)])
    finally:
        torch.set_num_threads(threads)  # main() sets the process-wide thread count
    assert bench._finite(res)
    assert set(res["stages"]["4"]) >= {"fwd_ours", "fwdbwd_base", "eval_cached"}
    speed = res["models"]["speed"]
    assert set(speed) == {"hpx_former_s18", "hpx_former_s18 (no cache)"}  # the model's mixers have caches
    assert speed["hpx_former_s18"]["train_ips"] > 0 and speed["hpx_former_s18"]["eval_ips"] > 0
    mem = res["models"]["memory"]["hpx_former_s18"]
    assert math.isfinite(mem["train_peak_above_baseline_mib"]) and mem["train_peak_above_baseline_mib"] >= 0
    parts = res["breakdown"]["hpx_former_s18"]
    assert {"0.token_mixer", "3.mlp", "total"} <= set(parts) and parts["total"] >= parts["0.token_mixer"] > 0
    assert json.loads(out.read_text())["stages"]["4"]["fwd_ours"] == res["stages"]["4"]["fwd_ours"]


ALTERNATIVES = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_eval_alternatives.py"


@pytest.fixture(scope="module")
def alternatives(bench: ModuleType) -> ModuleType:  # imports bench_mixer by name: load that first
    return _load_script(ALTERNATIVES)


@pytest.mark.parametrize(("h", "w", "kh", "kw"), [(6, 6, 11, 11), (5, 7, 3, 9), (4, 3, 15, 2), (1, 1, 1, 1)])
def test_dft_products_equal_a_direct_convolution(alternatives: ModuleType, h: int, w: int, kh: int, kw: int) -> None:
    # The benchmarked alternative must compute the mixer's convolution, or its timing says nothing. Reference: the
    # direct centered convolution the op tests use, float64.
    torch.manual_seed(0)
    c = 3
    x = torch.randn(2, h, w, c, dtype=torch.float64)
    k = torch.randn(c, kh, kw, dtype=torch.float64)
    m = alternatives.DFTMatrices.make(h, w, kh, kw, dtype=torch.float64)
    kr, ki = m.spectrum(k)
    got = alternatives.dft_conv_cl(x, kr, ki, m)
    ref = ref_conv2d(x.permute(0, 3, 1, 2), k).permute(0, 2, 3, 1)
    assert got.shape == ref.shape
    assert (got - ref).abs().max().item() < 1e-12


def test_alternatives_benchmark_runs(alternatives: ModuleType) -> None:
    res = alternatives.main(["--stages", "4", "--batch", "1", "--warmup", "0", "--repeats", "1"])
    assert set(res) == {"4"}
    assert all(math.isfinite(v) and v > 0 for v in res["4"].values())
