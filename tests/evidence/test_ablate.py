"""The ablation of `hyenapixel ablate`: which runs it plans, how it calls `hyenapixel train`, how it schedules and
resumes runs, the target check, and a tiny ablation end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hyenapixel.configio import ConfigError
from hyenapixel.errors import UserError
from hyenapixel.evidence.ablate import (
    ABLATION_LRS,
    AblationConfig,
    RunResult,
    RunSpec,
    best_lrs,
    check_targets,
    plan_runs,
    train_runs,
)
from hyenapixel.train.recipes import RECIPES


def test_default_plan_is_every_model_at_every_seed_then_the_kernel_sweep() -> None:
    cfg = AblationConfig()
    runs = plan_runs(cfg)
    main = [r for r in runs if r.kernel_size is None]
    assert [(r.model, r.seed) for r in main] == [(m, s) for m in cfg.model for s in cfg.seeds]
    assert all(r.lr == ABLATION_LRS[r.model] for r in runs)
    sweep = [r for r in runs if r.kernel_size is not None]
    assert {r.model for r in sweep} == {"hpx_iso1"} and [r.kernel_size for r in sweep] == list(cfg.kernel_sizes)
    assert len({r.name for r in runs}) == len(runs)  # one folder per run
    tuning = plan_runs(AblationConfig(tune_lr=(1e-3, 4e-3), tune_seeds=(5, 6)))
    assert [(r.model, r.lr, r.seed) for r in tuning] == [
        (m, lr, s) for m in cfg.model for lr in (1e-3, 4e-3) for s in (5, 6)
    ]
    assert plan_runs(AblationConfig(kernel_sizes=None, seeds=(0,))) == [
        RunSpec(m, 0, ABLATION_LRS[m]) for m in cfg.model
    ]


def test_bad_options_name_the_flag() -> None:
    with pytest.raises(ConfigError, match="--kernel-sizes"):
        AblationConfig(kernel_sizes=(0,))
    with pytest.raises(ConfigError, match="--tune-lr"):
        AblationConfig(tune_lr=(-1.0,))
    with pytest.raises(ConfigError, match="--seeds"):
        AblationConfig(seeds=())
    with pytest.raises(ConfigError, match="--progress"):
        AblationConfig(progress="loud")


def test_a_run_is_a_train_command_of_the_echo_recipe(tmp_path: Path) -> None:
    spec = RunSpec("hpx_iso1", 2, 3e-3, kernel_size=7)
    args = spec.arguments(AblationConfig(epochs=4, train_samples=256), tmp_path, threads=1)
    text = " ".join(args)
    assert args[:3] == ["train", "--recipe", "echo"]
    assert "--model hpx_iso1 --seed 2 --lr 0.003 --kernel-sizes 7" in text and "--train-samples 256" in text
    warmup = RECIPES["echo"]["warmup_epochs"] * 4 / RECIPES["echo"]["epochs"]  # the warmup keeps its share
    assert f"--epochs 4 --warmup-epochs {warmup:g}" in text
    assert f"--threads 1 --progress none --output {tmp_path}" in text and "--resume" not in text
    (tmp_path / "last.pt").write_bytes(b"")
    assert spec.arguments(AblationConfig(), tmp_path, threads=2)[-2:] == ["--resume", "auto"]


def _result(model: str, seed: int, test: float, kernel: int | None = None) -> RunResult:
    return RunResult(RunSpec(model, seed, 1e-3, kernel), test, test, 1000, kernel or 31, 1.0)


def test_targets_compare_the_worst_global_seed_with_the_best_twin_seed() -> None:
    results = [_result("g", s, v) for s, v in enumerate((99.0, 97.0, 98.0))]
    results += [_result("a", s, v) for s, v in enumerate((50.0, 91.0, 60.0))]  # best seed 91: 97 - 91 = 6
    results += [_result("b", s, v) for s, v in enumerate((93.0, 50.0, 50.0))]  # 97 - 93 = 4: not met
    results += [_result("g", 0, 10.0, kernel=3)]  # sweep runs do not count
    targets = check_targets(results, "g")
    assert targets["a"]["worst_global_minus_best_twin"] == pytest.approx(6.0) and targets["a"]["met"]
    assert targets["b"]["worst_global_minus_best_twin"] == pytest.approx(4.0) and not targets["b"]["met"]
    assert targets["a"]["mean_gap"] == pytest.approx(98.0 - 67.0)


def test_the_tuned_lr_has_the_best_mean_validation_accuracy_over_the_seeds() -> None:
    def run(model: str, lr: float, seed: int, val: float) -> RunResult:
        return RunResult(RunSpec(model, seed, lr), val, None, 1000, None, 1.0)

    results = [run("g", 6e-3, 0, 100.0), run("g", 6e-3, 1, 50.0)]  # best single run, bad mean
    results += [run("g", 1.5e-3, 0, 99.6), run("g", 1.5e-3, 1, 99.4)]
    results += [run("t", 3e-3, 0, 51.0), run("t", 1e-3, 0, 51.0), run("t", 2e-3, 0, 50.0)]  # a tie: the smaller
    assert best_lrs(results) == {"g": 1.5e-3, "t": 1e-3}


class _FakeRun:
    """A `hyenapixel train` process that writes its epochs at once (or fails)."""

    def __init__(self, args: list[str], folder: Path, epochs: int, fail: bool) -> None:
        self.args, self.code = args, 1 if fail else 0
        rows = ["epoch,val_top1"] + [f"{e},50" for e in range(1, epochs + 1)]
        (folder / "metrics.csv").write_text("\n".join(rows) + "\n")
        if fail:
            (folder / "stderr.log").write_text("hyenapixel train: error: something broke\n")
        else:
            (folder / "summary.json").write_text(json.dumps({"best_top1": 50.0}))

    def poll(self) -> int:
        return self.code

    def terminate(self) -> None:
        pass

    def wait(self) -> int:
        return self.code


def test_runs_are_scheduled_once_and_a_finished_one_is_kept(tmp_path: Path) -> None:
    cfg = AblationConfig(epochs=2, jobs=2, progress="none")
    specs = [RunSpec("hpx_iso1", s, 1e-3) for s in range(3)]
    (tmp_path / specs[0].name).mkdir()
    (tmp_path / specs[0].name / "summary.json").write_text("{}")  # finished before: not run again
    started: list[list[str]] = []

    def launch(args: list[str], env: dict, folder: Path) -> _FakeRun:
        started.append(args)
        assert env["OMP_WAIT_POLICY"]  # set, so that each child does not probe the (self-made) load
        return _FakeRun(args, folder, 2, fail=False)

    train_runs(cfg, specs, tmp_path, launch=launch, poll_s=0)
    assert sorted(a[a.index("--seed") + 1] for a in started) == ["1", "2"]
    assert all("--threads" in a for a in started)


def test_a_failed_run_stops_the_ablation_and_names_its_log(tmp_path: Path) -> None:
    cfg = AblationConfig(epochs=1, jobs=1, progress="none")
    spec = RunSpec("hpx_iso1", 0, 1e-3)
    with pytest.raises(UserError, match="something broke") as info:
        train_runs(cfg, [spec], tmp_path, launch=lambda a, e, f: _FakeRun(a, f, 0, fail=True), poll_s=0)
    assert spec.name in str(info.value) and "stderr.log" in str(info.value)


@pytest.mark.slow
def test_a_tiny_ablation_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from hyenapixel.cli.main import main

    out = tmp_path / "ablate"
    args = ["ablate", "--model", "hpx_iso1", "hpx_iso1_local", "--seeds", "0", "--kernel-sizes", "7", "--epochs", "1"]
    args += ["--train-samples", "128", "--val-samples", "64", "--test-samples", "64", "--output", str(out)]
    assert main([*args, "--progress", "none"]) == 0
    printed = capsys.readouterr().out
    assert "| hpx_iso1 | 31 |" in printed and "| hpx_iso1_local | 3 |" in printed and "| hpx_iso1 | 7 |" in printed
    record = json.loads((out / "results.json").read_text())
    assert {r["run"] for r in record["runs"]} == {d.name for d in out.iterdir() if (d / "summary.json").is_file()}
    assert set(record["targets"]) == {"hpx_iso1_local"}
    for name in ("table.md", "results.csv", "ablation.png", "analysis/erf.png", "analysis/kernel-size.png"):
        assert (out / name).is_file(), name
    # started again: every run is kept, nothing is retrained
    stamps = {p: p.stat().st_mtime_ns for p in out.glob("*/best.safetensors")}
    assert main([*args, "--progress", "none", "--no-analysis"]) == 0
    assert {p: p.stat().st_mtime_ns for p in out.glob("*/best.safetensors")} == stamps


def test_the_echo_recipe_is_the_ablation_setting() -> None:
    from hyenapixel.train import resolve_train_config

    cfg = resolve_train_config("echo")
    assert (cfg.model.model, cfg.data.builtin, cfg.data.input_size) == ("hpx_iso1", "echo", 64)
    assert (cfg.aug.mixup, cfg.aug.cutmix, cfg.aug.auto_augment, cfg.aug.re_prob) == (0.0, 0.0, None, 0.0)
    twin = resolve_train_config("echo", {"model": "sepconv_iso1"})
    assert twin.model.model == "sepconv_iso1" and twin.optim.lr == cfg.optim.lr and twin.sched == cfg.sched


def test_the_figure_shows_every_model_and_the_kernel_sweep(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    from hyenapixel.evidence.plots import draw_ablation, plot_ablation

    results = [_result("hpx_iso1", s, 99.0 + s / 10) for s in range(3)]
    results += [_result("hpx_iso1", 0, 52.0, kernel=7), _result("hpx_iso1", 0, 98.0, kernel=15)]
    results += [RunResult(RunSpec("sepconv_iso1", s, 1e-3), 50.0, 50.0 + s, 1000, None, 1.0) for s in range(3)]
    fig = draw_ablation(results, "hpx_iso1")
    left, right = fig.axes
    assert [t.get_text() for t in left.get_xticklabels()] == ["hpx_iso1", "sepconv_iso1"]
    assert list(right.get_xticks()) == [7, 15, 31]
    assert plot_ablation(results, "hpx_iso1", tmp_path / "a.png") == tmp_path / "a.png"
    assert (tmp_path / "a.png").read_bytes()[:4] == b"\x89PNG"
    assert plot_ablation([], "hpx_iso1", tmp_path / "b.png") is None
