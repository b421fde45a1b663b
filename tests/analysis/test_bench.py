"""Runtime scaling (Fig. 2): the timing loop, the memory probe, the mixers' configuration, the budgets that end a
series, the model mode and the bench subcommand. No assertion on absolute times: only on counted quantities and
on a cost ratio of over two orders of magnitude."""

from __future__ import annotations

import csv
import io
import json
import sys
import time

import pytest
import timm
import torch

import hyenapixel  # noqa: F401  (registers the models)
from hyenapixel.analysis import bench_mixers, bench_models
from hyenapixel.analysis.bench import BENCH_MIXERS, device_name
from hyenapixel.analysis.measure import device_clock, interleaved_times, peak_memory
from hyenapixel.cli.bench import MIXER_NAMES
from hyenapixel.cli.main import main
from hyenapixel.errors import UserError

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="CPU peak memory needs Linux /proc")


@linux_only
@pytest.mark.parametrize("mib", [64, 256])
def test_peak_memory_sees_a_known_allocation(mib):
    n = mib * 2**20 // 4

    def touch() -> None:
        torch.ones(n)  # allocated, written, freed

    measured = peak_memory(touch)
    # resident pages of the rest of the process (shared libraries) may be dropped meanwhile: a few % slack
    assert 0.97 * mib * 2**20 <= measured <= (mib + 48) * 2**20
    assert peak_memory(lambda: None) < 16 * 2**20  # nothing allocated: no growth beyond allocator noise


def test_times_are_interleaved_rounds_of_the_clock():
    now = [0.0]
    cost = {"a": 1.0, "b": 10.0, "c": 100.0}
    order = []

    def call(k: str) -> None:
        order.append(k)
        cost[k] += 1  # each call of an entry costs one more second than its last
        now[0] += cost[k]

    samples = interleaved_times({k: (lambda k=k: call(k)) for k in "abc"}, 1, 3, clock=lambda: now[0])
    assert order == list("abc") * 4  # one untimed round, then three timed ones, each entry once per round
    assert samples == {"a": [3.0, 4.0, 5.0], "b": [12.0, 13.0, 14.0], "c": [102.0, 103.0, 104.0]}
    assert device_clock("cpu") is time.perf_counter  # CPU work needs no device synchronisation


def test_mixers_are_the_global_stage1_configurations():
    assert tuple(BENCH_MIXERS) == MIXER_NAMES
    side = 12
    hpx = BENCH_MIXERS["H_px"](64, side)
    assert hpx.filter.kernel_size == (2 * side - 1,) * 2  # every token sees the whole map
    sc = BENCH_MIXERS["H_px SC"](64, side)
    k = sc.filter()
    assert k.shape == (64, 2 * side - 1, 2 * side - 1)
    assert torch.linalg.matrix_rank(k[0].detach().double(), rtol=1e-5) == 1  # separable: one outer product per channel
    hb = BENCH_MIXERS["H_b"](64, side)
    assert hb.kernel(side * side).shape == (64, 2 * side * side - 1)
    attn = BENCH_MIXERS["attention"](64, side)
    assert attn.num_heads * attn.head_dim == 64
    x = torch.randn(1, side, side, 64)
    for name, build in BENCH_MIXERS.items():
        assert build(64, side)(x).shape == x.shape, name


@pytest.fixture
def one_thread():
    """One intra-op thread: on a busy machine a tiny parallel op otherwise waits for a descheduled worker."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_attention_time_grows_with_resolution(one_thread):
    # 64 -> 256 px: 16x the tokens, 256x the query-key pairs; require only 4x the time of the fastest call
    result = bench_mixers(["attention"], (64, 256), modes=("forward",), repeats=3, time_budget_s=60)
    small, large = result.series("attention", "forward")
    assert (small.tokens, large.tokens) == (16 * 16, 64 * 64)
    assert large.min_seconds > 4 * small.min_seconds
    assert result.stopped == {"attention": {"forward": "all sizes within budget"}}
    assert "CPU" in result.device


def test_each_series_stops_at_its_first_size_over_budget():
    result = bench_mixers(["dwconv7x7", "H_px"], (32, 64, 128), repeats=1, time_budget_s=1e-9)
    for name in ("dwconv7x7", "H_px"):
        for mode in ("forward", "forward_backward"):
            pts = result.series(name, mode)
            assert [p.size for p in pts] == [32]
            assert pts[0].over_budget.startswith("time")
            assert result.stopped[name][mode].startswith("at 32 px: time")


class _Hog(torch.nn.Module):
    """Touches side^2 * 64 KiB of scratch memory per call (a known amount for the memory budget)."""

    def __init__(self, dim: int, side: int) -> None:
        super().__init__()
        self.scale = torch.nn.Parameter(torch.ones(()))
        self.numel = side * side * 16 * 1024

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale + torch.ones(self.numel).sum() * 0


@linux_only
def test_memory_budget_ends_only_the_series_over_it():
    builders = {"hog": _Hog, "dwconv7x7": BENCH_MIXERS["dwconv7x7"]}
    # hog at 32 / 64 / 128 px (sides 8, 16, 32): 4, 16, 64 MiB; budget 40 MiB
    result = bench_mixers(None, (32, 64, 128), repeats=1, memory_budget_gib=40 / 1024, builders=builders)
    for mode in ("forward", "forward_backward"):
        hog = result.series("hog", mode)
        assert [p.size for p in hog] == [32, 64, 128]
        assert [bool(p.over_budget) for p in hog] == [False, False, True]
        assert hog[-1].over_budget.startswith("memory") and hog[-1].memory_bytes >= 60 * 2**20
        assert result.stopped["hog"][mode].startswith("at 128 px: memory")
        assert result.stopped["dwconv7x7"][mode] == "all sizes within budget"


def test_csv_matches_points_and_names_the_device():
    result = bench_mixers(["dwconv7x7"], (32, 64), repeats=1)
    rows = list(csv.DictReader(io.StringIO(result.to_csv())))
    assert [(r["mode"], int(r["size"]), int(r["tokens"])) for r in rows] == [
        ("forward", 32, 64),
        ("forward", 64, 256),
        ("forward_backward", 32, 64),
        ("forward_backward", 64, 256),
    ]
    assert device_name("cpu").startswith("CPU: ")


def test_models_mode_reports_images_per_second():
    model = timm.create_model("hpx_former_s4", dims=(8, 8, 16, 16), num_classes=3)
    result = bench_models([("tiny", model)], (32, 64), batch_size=2, repeats=2)
    assert [(p.model, p.size) for p in result.points] == [("tiny", 32), ("tiny", 64)]
    for p in result.points:
        assert p.images_per_s == pytest.approx(2 / p.seconds)
    with pytest.raises(UserError, match="at least 32 px"):
        bench_models([("tiny", model)], (16,))


def test_bad_arguments():
    with pytest.raises(UserError, match="unknown mixer"):
        bench_mixers(["conv"])
    with pytest.raises(UserError, match="multiples of 4"):
        bench_mixers(["dwconv7x7"], (30,))
    with pytest.raises(UserError, match="unknown mode"):
        bench_mixers(["dwconv7x7"], (32,), modes=("backward",))
    with pytest.raises(UserError, match="repeats must be at least 1"):
        bench_mixers(["dwconv7x7"], (32,), repeats=0)


def test_cli_mixer_mode(tmp_path, capsys):
    out = tmp_path / "b"
    args = ["bench", "--mixer", "dwconv7x7", "--mixer", "attention", "--sizes", "32", "64", "--repeats", "1"]
    threads = torch.get_num_threads()
    other = 1 if threads > 1 else 2
    assert main(args + ["--modes", "forward", "--threads", str(other), "--output", str(out)]) == 0
    assert torch.get_num_threads() == threads  # --threads holds for the run only
    text = (out / "bench.csv").read_text().splitlines()
    assert text[0].startswith("# CPU")
    rows = list(csv.DictReader(text[1:]))
    numbers = json.loads((out / "bench.json").read_text())
    assert len(rows) == len(numbers["points"]) == 4
    assert {(r["mixer"], int(r["size"])) for r in rows} == {(p["mixer"], p["size"]) for p in numbers["points"]}
    assert numbers["device"].startswith("CPU") and f"({other} thread" in numbers["device"]
    assert (out / "bench.png").stat().st_size > 0
    assert "device: CPU" in capsys.readouterr().out


def test_cli_errors_are_one_line(tmp_path, capsys):
    assert main(["bench", "--sizes", "30", "--output", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "multiples of 4" in err and "Traceback" not in err
    if not torch.cuda.is_available():
        assert main(["bench", "--device", "cuda", "--output", str(tmp_path / "y")]) == 2
        assert "no CUDA device" in capsys.readouterr().err


def test_bench_figure_legend_explains_the_styles_and_covers_no_series() -> None:
    """The legend names every mixer and says what solid, dashed and hollow mean; it sits below the panels, so no
    series (the depthwise-conv one runs along the bottom) is hidden under it."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from hyenapixel.analysis.bench import MODES, MixerBench, MixerPoint, plot_bench

    result = MixerBench("cpu", 8, 1, 1.0, 1e9, "rss")
    for mixer in ("H_px", "dwconv7x7"):
        for mode in MODES:
            for size, t in ((64, 1e-3), (128, 4e-3)):
                over = "time" if (mixer, mode, size) == ("H_px", MODES[1], 128) else ""
                result.points.append(MixerPoint(mixer, mode, size, (size // 4) ** 2, t, t, 1e6, over))
    fig = plot_bench(result)
    renderer = FigureCanvasAgg(fig).get_renderer()
    (legend,) = fig.legends
    texts = [t.get_text() for t in legend.get_texts()]
    assert texts[:2] == ["H_px", "dwconv7x7"]
    assert any(t.startswith("solid: forward") for t in texts) and any(
        t.startswith("dashed: forward + backward") for t in texts
    )
    assert any(t.startswith("hollow: over the time or memory budget") for t in texts)
    box = legend.get_window_extent(renderer)
    assert all(box.y1 < ax.get_window_extent(renderer).y0 for ax in fig.axes)  # wholly below both panels
