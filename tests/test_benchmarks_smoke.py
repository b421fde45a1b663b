"""Tests of the benchmark package (run as ``python -m benchmarks.<script>``): the helpers compute what they say on
inputs with known answers, the baseline mixer computes the same function as
:class:`hyenapixel.mixers.HyenaPixelMixer`, and the scripts run end to end on tiny shapes (no timing thresholds).
"""

from __future__ import annotations

import itertools
import json
import math
import mmap
from pathlib import Path

import pytest
import torch

from benchmarks import bench_eval_alternatives, bench_mixer, bench_onnx_forms
from benchmarks.common import (
    STAGES,
    PeakRSS,
    Stage,
    all_finite,
    check_equivalence,
    compare,
    interleaved_medians,
    interleaved_times,
    interval,
    markdown_table,
    median_interval,
    ms,
    trained_like,
)
from hyenapixel.models import FEATURE_SIZES, FILTER_EMB_DIMS, KERNEL_SIZES, S_DIMS
from hyenapixel.ops import fftconv2d_ref

TINY = Stage("tiny", dim=8, size=6, kernel=11, emb=8)


class FakeClock:
    """A clock that only the timed functions advance, so the medians are known exactly."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def spend(self, seconds: list[float]) -> None:
        self.now += seconds.pop(0)


def test_stages_are_the_models_s18_table():
    assert [(s.dim, s.size, s.kernel, s.emb) for s in STAGES.values()] == list(
        zip(S_DIMS, FEATURE_SIZES, KERNEL_SIZES, FILTER_EMB_DIMS)
    )
    assert STAGES["1"] == Stage("1", 64, 56, 111, 32)


def test_baseline_computes_the_same_mixer() -> None:
    # Same weights, same input, float64: the benchmark compares two implementations of one function. (Both build
    # the window's distance table in float32, rounded slightly differently, hence not 1e-12; a wrong crop, flip or
    # missing term gives O(1) differences.)
    assert check_equivalence(TINY, batch=2) < 1e-6
    assert check_equivalence(Stage("odd", dim=4, size=3, kernel=5, emb=4)) < 1e-6


def test_interleaved_medians_are_the_medians_of_the_timed_calls() -> None:
    clock = FakeClock()
    costs = {"a": [9.0, 9.0, 1.0, 5.0, 2.0], "b": [9.0, 3.0, 3.0, 30.0, 4.0]}  # first entry: the warmup call
    order: list[str] = []

    def run(name: str) -> None:
        order.append(name)
        clock.spend(costs[name])

    res = interleaved_medians({"a": lambda: run("a"), "b": lambda: run("b")}, warmup=1, repeats=4, clock=clock)
    assert order == ["a", "b"] * 5  # round-robin, warmup round included
    assert res == {"a": 3.5, "b": 3.5}  # medians of [9, 1, 5, 2] and [3, 3, 30, 4]


def test_interleaved_times_keep_every_round() -> None:
    clock = FakeClock()
    costs = {"a": [9.0, 1.0, 5.0], "b": [9.0, 3.0, 30.0]}
    fns = {k: (lambda k=k: clock.spend(costs[k])) for k in costs}
    assert interleaved_times(fns, warmup=1, repeats=2, clock=clock) == {"a": [1.0, 5.0], "b": [3.0, 30.0]}


def _coverage(n: int, k: int) -> float:
    """P(x(k) <= median <= x(n+1-k)) for n draws of a continuous distribution: the share of the 2^n equally likely
    patterns of draws above (1) and below (0) the median with at least k of each."""
    inside = sum(k <= sum(above) <= n - k for above in itertools.product((0, 1), repeat=n))
    return inside / 2**n


@pytest.mark.parametrize("n", [1, 2, 5, 6, 9, 10, 14])
def test_median_interval_is_the_widest_order_statistic_pair_that_covers(n: int) -> None:
    values = [float(v) for v in range(n, 0, -1)]  # x(i) = i, given unsorted
    low, med, high = median_interval(values, 0.95)
    assert med == (n + 1) / 2
    k = int(low)
    assert high == n + 1 - k  # symmetric order statistics
    if n < 6:
        assert (low, high) == (1, n)  # too few values: the whole range
    else:
        assert _coverage(n, k) >= 0.95 > _coverage(n, k + 1)  # the narrowest interval with the coverage
    if n == 9:
        assert (low, high) == (2, 8) and _coverage(9, 2) == pytest.approx(492 / 512)  # 96.1 %
    with pytest.raises(ValueError, match="at least one value"):
        median_interval([])


def test_compare_gives_ratios_against_the_named_baseline() -> None:
    clock = FakeClock()
    costs = {"fast": [1.0, 1.0, 1.0], "ref": [4.0, 4.0, 4.0]}
    fns = {k: (lambda k=k: clock.spend(costs[k])) for k in costs}
    cmp = compare(fns, baseline="ref", warmup=0, repeats=3, clock=clock)
    assert cmp.medians == {"fast": 1.0, "ref": 4.0} and cmp.ratios == {"fast": 0.25, "ref": 1.0}
    with pytest.raises(ValueError, match="baseline 'nope'"):
        compare(fns, baseline="nope", warmup=0, repeats=1)


def test_report_helpers() -> None:
    assert markdown_table(["a", "b"], [[1, "x"], [2.5, "-"]]) == "| a | b |\n|---|---|\n| 1 | x |\n| 2.5 | - |"
    assert ms(0.01234) == "12.3"
    assert interval((0.9131, 0.95449, 0.98)) == "0.954 [0.913, 0.980]"
    assert all_finite({"a": [1.0, (2.0, 3)], "b": "text"})
    assert not all_finite({"a": {"b": [1.0, math.nan]}})


def test_trained_like_moves_every_parameter_off_its_initial_constant() -> None:
    import timm

    model = timm.create_model("hpx_former_s18", depths=(1, 1, 1, 1), dims=(8, 8, 16, 16), num_classes=3)
    before = {k: p.detach().clone() for k, p in model.named_parameters()}
    assert trained_like(model, seed=3) is model
    again = trained_like(
        timm.create_model("hpx_former_s18", depths=(1, 1, 1, 1), dims=(8, 8, 16, 16), num_classes=3), seed=3
    )
    for name, p in model.named_parameters():
        moved = (p - before[name]).abs()
        assert moved.min() > 0 and moved.max() < 0.2, name  # every entry moved a little (std 0.02), ones and zeros too
    # seeded: the same noise on the same model (the init itself is random, so compare the scales and biases)
    assert torch.equal(again.stages[0].blocks[0].mlp.act.scale, model.stages[0].blocks[0].mlp.act.scale)


def test_peak_rss_sees_a_touched_allocation() -> None:
    # a fresh anonymous mapping, so the pages cannot be memory the process already holds (as a reused malloc or
    # torch buffer could be); touching one byte per page makes all 64 MiB resident. It is unmapped only after the
    # block: how promptly the kernel folds freed pages into the peak counter is not what is tested here.
    size = 64 << 20
    with PeakRSS() as mem:
        block = mmap.mmap(-1, size)
        for offset in range(0, size, mmap.PAGESIZE):
            block[offset] = 1
    block.close()
    r = mem.result()
    if r["method"].startswith("VmHWM"):  # Linux: the peak since the block started
        assert 60 <= r["peak_above_baseline_mib"] < 1024
    assert r["peak_mib"] >= r["baseline_mib"] + 60


def test_bench_stage_gives_positive_times() -> None:
    res = bench_mixer.bench_stage(TINY, batch=2, warmup=0, repeats=1)
    keys = {"fwd_ours", "fwd_base", "fwdbwd_ours", "fwdbwd_base", "eval_cached", "eval_nocache", "eval_base"}
    assert set(res) == keys | {"eval_shared"}
    assert all(math.isfinite(v) and v > 0 for v in res.values())
    table = bench_mixer.format_stage_table({"tiny": res}, batch=2)
    assert table.count("\n") == 2 and "| tiny |" in table


def test_model_table_ratios() -> None:
    speed = {
        "convformer_s18": {"eval_ips": 10.0, "train_ips": 4.0},
        "hpx_former_s18": {"eval_ips": 5.0, "train_ips": 2.0},
        "hpx_former_s18 (no cache)": {"eval_ips": 2.5},
    }
    memory = {
        "convformer_s18": {"peak_above_baseline_mib": 100.0},
        "hpx_former_s18": {"peak_above_baseline_mib": 150.0},
    }
    table = bench_mixer.format_model_table(speed, memory, 16, 8).splitlines()
    assert table[2] == "| convformer_s18 | 10.0 | 1.00 | 4.0 | 1.00 | 100 | 1.00 |"
    assert table[3] == "| hpx_former_s18 | 5.0 | 2.00 | 2.0 | 2.00 | 150 | 1.50 |"
    assert table[4] == "| hpx_former_s18 (no cache) | 2.5 | 4.00 | - | - | - | - |"


@pytest.mark.slow
def test_main_quick_end_to_end(tmp_path: Path) -> None:
    out = tmp_path / "res.json"
    argv = ["--quick", "--stages", "4", "--models", "hpx_former_s18", "--img", "32", "--threads", "1"]
    threads = torch.get_num_threads()
    try:
        res = bench_mixer.main([*argv, "--no-check", "--breakdown", "--json", str(out)])
    finally:
        torch.set_num_threads(threads)  # main() sets the process-wide thread count
    assert all_finite(res)
    assert set(res["stages"]["4"]) >= {"fwd_ours", "fwdbwd_base", "eval_cached"}
    speed = res["models"]["speed"]
    assert set(speed) == {"hpx_former_s18", "hpx_former_s18 (no cache)"}  # the model's mixers have caches
    assert speed["hpx_former_s18"]["train_ips"] > 0 and speed["hpx_former_s18"]["eval_ips"] > 0
    mem = res["models"]["memory"]["hpx_former_s18"]  # measured in a fresh `python -m benchmarks.bench_mixer`
    assert mem["peak_mib"] > mem["baseline_mib"] > 100  # torch and the model are loaded before the baseline
    parts = res["breakdown"]["hpx_former_s18"]
    assert {"0.token_mixer", "3.mlp", "total"} <= set(parts) and parts["total"] >= parts["0.token_mixer"] > 0
    assert json.loads(out.read_text())["stages"]["4"]["fwd_ours"] == res["stages"]["4"]["fwd_ours"]


@pytest.mark.parametrize(("h", "w", "kh", "kw"), [(6, 6, 11, 11), (5, 7, 3, 9), (4, 3, 15, 2), (1, 1, 1, 1)])
def test_dft_products_equal_a_direct_convolution(h: int, w: int, kh: int, kw: int) -> None:
    # The benchmarked alternative must compute the mixer's convolution, or its timing says nothing. Reference: the
    # direct centered convolution of hyenapixel.ops, float64.
    torch.manual_seed(0)
    c = 3
    x = torch.randn(2, h, w, c, dtype=torch.float64)
    k = torch.randn(c, kh, kw, dtype=torch.float64)
    m = bench_eval_alternatives.DFTMatrices.make(h, w, kh, kw, dtype=torch.float64)
    kr, ki = m.spectrum(k)
    got = bench_eval_alternatives.dft_conv_cl(x, kr, ki, m)
    ref = fftconv2d_ref(x.permute(0, 3, 1, 2), k).permute(0, 2, 3, 1)
    assert got.shape == ref.shape
    assert (got - ref).abs().max().item() < 1e-12


def test_alternatives_benchmark_runs() -> None:
    res = bench_eval_alternatives.main(["--stages", "4", "--batch", "1", "--warmup", "0", "--repeats", "1"])
    assert set(res) == {"4"}
    assert all(math.isfinite(v) and v > 0 for v in res["4"].values())


def test_onnx_forms_compute_the_model() -> None:
    # every exported form against PyTorch eval of the same weights; the patched classes are restored afterwards
    pytest.importorskip("onnxscript")
    pytest.importorskip("onnxruntime")
    from hyenapixel.layers import PointwiseConvMlp
    from hyenapixel.mixers import HyenaPixelMixer

    forward = PointwiseConvMlp.forward, HyenaPixelMixer.forward
    others = [f for f in bench_onnx_forms.FORMS if f != "default"]
    argv = ["--model", "hpx_former_s4", "--img", "64", "--batches", "2", "--warmup", "0", "--repeats", "2"]
    res = bench_onnx_forms.main([*argv, "--forms", ",".join(others)])
    assert set(res["max_abs_diff"]) == {"default", *others}
    assert all(d < 1e-4 for d in res["max_abs_diff"].values()), res["max_abs_diff"]
    assert all(r["ms_per_image"] > 0 for r in res["2"].values())
    assert res["2"]["default"]["vs_default"] == (1.0, 1.0, 1.0)
    assert (PointwiseConvMlp.forward, HyenaPixelMixer.forward) == forward
    with pytest.raises(SystemExit):
        bench_onnx_forms.parse_args(["--forms", "unfolded,nope"])


@pytest.mark.slow
def test_bench_busy_measures_a_training_process(capsys) -> None:
    from benchmarks import bench_busy

    results = bench_busy.main(["--busy", "0", "1", "--settings", "default", "--rounds", "1", "--seconds", "0.3"])
    assert set(results) == {"default"} and all(len(v) == 1 and v[0] > 0 for v in results["default"].values())
    out = capsys.readouterr().out
    assert "| default |" in out and "busy 1" in out


@pytest.mark.slow
def test_bench_busy_times_the_whole_train_command(capsys) -> None:
    from benchmarks import bench_busy

    results = bench_busy.main(["--command", "--busy", "0", "--rounds", "1", "--train-samples", "128"])
    assert set(results) == {"auto", "spinning"} and all(v[0][0] > 0 for v in results.values())
    assert "| auto |" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        bench_busy.main(["--command", "--settings", "passive"])


def test_two_cores_attribution_and_targets_run() -> None:
    from benchmarks import bench_two_cores as b

    att = b.attribution("train", 1, 32, [1], warmup=0, rounds=1)
    hpx = att.times[b.HPX]
    assert all(hpx[str(s), part, 1] > 0 for s in range(1, 5) for part in b.PARTS)  # the filter included
    assert (str(1), "long conv", 1) not in att.times[b.CONV] and att.times[b.CONV]["all", "whole model", 1] > 0
    table = b.format_attribution(att, [1])
    assert "| 1 | long conv |" in table and "| all | rest |" in table
    targets = b.targets_224(1, 1, 32, [1], warmup=0, rounds=1)
    assert [t.name for t in targets] == ["eval b1 32 px", "train step b1 32 px"]
    assert all(t.hpx_s > 0 and t.conv_s > 0 and t.ratio[0] <= t.ratio[1] <= t.ratio[2] for t in targets)
    assert "ratio (median)" in b.format_targets(targets, 1)


def test_two_cores_dense_attribution_runs_on_the_features_only_backbones() -> None:
    from benchmarks import bench_two_cores as b

    att = b.attribution("train", 1, 0, [1], warmup=0, rounds=1, dense=(64, 96))
    hpx, conv = att.times[b.HPX], att.times[b.CONV]
    assert all(hpx[str(s), part, 1] > 0 for s in range(1, 5) for part in b.PARTS)
    assert conv["all", "whole model", 1] > 0 and ("1", "filter", 1) not in conv
    # covering kernels at 64 x 96: 2 * ceil(96 / stride) - 1 per stage, as bench_dense builds them
    kernels = [
        stage.blocks[0].token_mixer.filter.kernel_size for stage in b.model_stages(b.dense_backbone(b.HPX, (64, 96)))
    ]
    assert kernels == [(47, 47), (23, 23), (11, 11), (5, 5)]
    assert len(b.model_stages(b.dense_backbone(b.CONV, (64, 96)))) == 4


def test_two_cores_dispatch_times_both_settings_and_restores_the_thresholds() -> None:
    from benchmarks import bench_two_cores as b
    from hyenapixel.ops import fftconv, implicit

    before = fftconv.THREADS_FROM_PLANE, implicit.THREADS_FROM_TAPS
    ops = b.dispatch_ops(b.create_model(b.HPX), 1, (32, 32))
    assert len(ops) == 12 and all(not spread for _, spread in ops.values())  # 32-px maps: one loop everywhere
    assert "stage 1 1 x 64 x 8 x 8, kernel 111: long conv (plane 240)" in ops  # 8 + 7 padded to 15 x 16
    with b._spread_from(0, 0):
        assert (fftconv.THREADS_FROM_PLANE, implicit.THREADS_FROM_TAPS) == (0, 0)
    assert (fftconv.THREADS_FROM_PLANE, implicit.THREADS_FROM_TAPS) == before
    rows = b.dispatch(1, 32, (32, 48), 1, warmup=0, rounds=1)
    assert len(rows) == 24 and all(float(r[1]) > 0 and float(r[2]) > 0 for r in rows)


def test_bench_filter_times_this_filter_against_its_floor_and_another_checkout(capsys) -> None:
    import types
    from pathlib import Path

    import hyenapixel
    from benchmarks import bench_filter as b
    from hyenapixel.ops import implicit

    rows = b.main(["--quick", "--no-224", "--against", str(Path(hyenapixel.__file__).parents[1])])
    assert len(rows) == 4 and all(float(r[1]) > 0 and float(r[2]) > 0 and float(r[4]) > 0 for r in rows)
    assert "taps 31 x 47" in rows[0][0] and "ratio this / that" in capsys.readouterr().out
    # an older implicit_kernel without ``region`` is given the cropped embedding and distances
    seen: list[tuple[int, ...]] = []

    def older(z, dist, *args):  # noqa: ANN001, ANN202 - the older signature
        seen.append(tuple(z.shape))
        return implicit.implicit_kernel(z, dist, *args)

    filt, region, _ = b.stage_filters((64, 96), [47, 23, 11, 5])[0]
    b.kernel_call(types.SimpleNamespace(implicit_kernel=older), filt, region)()
    assert seen == [(32, 31, 47)] and filt.pos_emb.grad is None  # gradients dropped after each call
    with pytest.raises(FileNotFoundError, match="no "):
        b.load_implicit("/nonexistent")


@pytest.mark.parametrize(("change", "rows"), [("padding", 4), ("dft", 5)])
def test_bench_backward_maps_times_both_forms_and_restores_the_library(capsys, change: str, rows: int) -> None:
    from benchmarks import bench_backward_maps as b
    from hyenapixel.ops import depthwise, dft, pointwise

    def forms() -> tuple[object, ...]:
        return depthwise._weight_grad, pointwise._dot, dft.DFTConv2d

    before = forms()
    with b.previous_forms(change=change):
        if change == "padding":
            assert forms() == (b.weight_grad_padded_copy, b.dot_by_product_map, before[2])
        else:
            assert forms() == (*before[:2], b.DFTProducts)
    assert forms() == before
    out = b.main(["--quick", "--threads", "1", "--change", change])
    assert out["max_rel_diff"] < 1e-5  # the previous forms compute the same gradients (float32 rounding)
    assert len(out["rows"]) == rows and all(float(r[1]) > 0 and float(r[2]) > 0 for r in out["rows"])
    assert "library / previous" in capsys.readouterr().out
    assert forms() == before
