"""The kernel-size ablation at laptop scale (paper Sections 4-5, Table 3): the global HyenaPixel model against
parameter-matched local twins on the built-in Echo task, several seeds each, and the global model's accuracy
against its kernel size. What ``hyenapixel ablate`` trains; docs/evidence.md shows a run.

Every run is one ``hyenapixel train --recipe echo`` process in its own folder under the ablation's output, so each
run is an ordinary training run (``train.log``, ``metrics.csv``, ``best.safetensors``) that ``validate``,
``erf`` or ``kernel-size`` read like any other. Runs go ``jobs`` at a time, with the CPU threads divided among
them. An interrupted ablation continues where it stopped when started again with the same ``--output``: finished
runs are kept and unfinished ones resume from their ``last.pt``.

The learning rate of each model was tuned on the validation split (``--tune-lr`` repeats that tuning); the table
reports top-1 on a separate test split that neither training nor tuning sees.
"""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from hyenapixel.configio import ConfigError, build_config, check_options, option, to_plain
from hyenapixel.errors import UserError
from hyenapixel.paths import atomic_write_text
from hyenapixel.progress import Progress, format_seconds, progress_mode
from hyenapixel.train.recipes import RECIPES

__all__ = [
    "ABLATION_LRS",
    "AblationConfig",
    "RunResult",
    "RunSpec",
    "best_lrs",
    "check_targets",
    "plan_runs",
    "run_ablation",
    "test_accuracy",
]

_ECHO = RECIPES["echo"]  # the recipe every run of the ablation trains with
GLOBAL_MODEL = "hpx_iso1"
TWINS = ("hpx_iso1_local", "sepconv_iso1", "attn_iso1")

#: Peak learning rate per model: the best mean validation top-1 of
#: ``hyenapixel ablate --tune-lr 7.5e-4 1.5e-3 3e-3 6e-3`` (seeds 0 and 1, :func:`best_lrs`; docs/evidence.md).
ABLATION_LRS: dict[str, float] = {
    "hpx_iso1": 3e-3,
    "hpx_iso1_local": 3e-3,
    "sepconv_iso1": 3e-3,
    "attn_iso1": 1.5e-3,
}


@dataclass
class AblationConfig:
    """What ``hyenapixel ablate`` trains and where it writes."""

    model: tuple[str, ...] = option((GLOBAL_MODEL, *TWINS), "Models to compare; the first is the global model.")
    seeds: tuple[int, ...] = option((0, 1, 2), "Training seeds of every model (also the seeds of the data).")
    kernel_sizes: tuple[int, ...] | None = option(
        (3, 7, 11, 15),
        "Kernel sizes of the global model's sweep (accuracy against kernel size), besides its own 31. none: no sweep.",
    )
    sweep_seeds: tuple[int, ...] = option((0,), "Seeds of the kernel-size sweep.")
    epochs: int | None = option(None, "Epochs per run. none: the echo recipe's.", bound=">= 1")
    train_samples: int | None = option(None, "Training images per run. none: the echo recipe's.", bound=">= 1")
    val_samples: int | None = option(None, "Validation images (model selection, lr tuning). none: the recipe's.")
    test_samples: int = option(2000, "Test images (the reported accuracy).", bound=">= 1")
    tune_lr: tuple[float, ...] | None = option(
        None,
        "Tune instead: train every model at each of these peak lrs and --tune-seeds, report validation top-1 and the "
        "lr of the best mean.",
    )
    tune_seeds: tuple[int, ...] = option((0, 1), "Seeds of the lr tuning (--tune-lr).")
    jobs: int | None = option(None, "Runs at a time, the CPU threads divided among them. none: one per core.")
    output: str = option("runs/ablate", "Folder of the ablation (one sub-folder per run); an existing one continues.")
    progress: str = option("auto", "Progress: auto, bar, log or none.", choices=("auto", "bar", "log", "none"))

    def __post_init__(self) -> None:
        check_options(self)
        if not self.model:
            raise ConfigError("model", "give at least one model")
        if not self.seeds:
            raise ConfigError("seeds", "give at least one seed")
        if not self.tune_seeds:
            raise ConfigError("tune_seeds", "give at least one seed")
        if any(s < 0 for s in (*self.seeds, *self.sweep_seeds, *self.tune_seeds)):
            raise ConfigError("seeds", "seeds must be >= 0")
        if any(k < 1 for k in self.kernel_sizes or ()):
            raise ConfigError("kernel_sizes", f"kernel sizes must be >= 1, got {list(self.kernel_sizes)}")
        if any(lr <= 0 for lr in self.tune_lr or ()):
            raise ConfigError("tune_lr", f"learning rates must be > 0, got {list(self.tune_lr)}")
        if self.jobs is not None and self.jobs < 1:
            raise ConfigError("jobs", f"must be >= 1, got {self.jobs}")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> AblationConfig:
        return build_config(cls, values)


class RunSpec(NamedTuple):
    """One training run of the ablation."""

    model: str
    seed: int
    lr: float
    kernel_size: int | None = None
    """The HyenaPixel kernel of a sweep run (``--kernel-sizes``); None: the model's own."""

    @property
    def name(self) -> str:
        kernel = f"-k{self.kernel_size}" if self.kernel_size is not None else ""
        return f"{self.model}{kernel}-lr{self.lr:g}-seed{self.seed}"

    def arguments(self, cfg: AblationConfig, folder: Path, threads: int) -> list[str]:
        """The ``hyenapixel train`` arguments of this run."""
        args = ["train", "--recipe", "echo", "--model", self.model, "--seed", str(self.seed), "--lr", f"{self.lr:g}"]
        if self.kernel_size is not None:
            args += ["--kernel-sizes", str(self.kernel_size)]
        for name in ("train_samples", "val_samples"):
            value = getattr(cfg, name)
            if value is not None:
                args += ["--" + name.replace("_", "-"), str(value)]
        if cfg.epochs is not None:  # the warmup keeps its share of the run
            warmup = _ECHO["warmup_epochs"] * cfg.epochs / _ECHO["epochs"]
            args += ["--epochs", str(cfg.epochs), "--warmup-epochs", f"{warmup:g}"]
        args += ["--threads", str(threads), "--progress", "none", "--output", str(folder)]
        if (folder / "last.pt").is_file():
            args += ["--resume", "auto"]
        return args


class RunResult(NamedTuple):
    """A finished run: its spec, validation top-1 (best epoch, the weights kept) and test top-1 in percent, its
    parameters, its HyenaPixel kernel size (None: no HyenaPixel mixer, or not measured while tuning) and time."""

    spec: RunSpec
    val_top1: float
    test_top1: float | None
    num_params: int
    kernel_size: int | None
    wall_time_s: float


def learning_rate(model: str) -> float:
    """The tuned peak lr of an ablation model (:data:`ABLATION_LRS`), else the echo recipe's."""
    return ABLATION_LRS.get(model, _ECHO["lr"])


def plan_runs(cfg: AblationConfig) -> list[RunSpec]:
    """The runs of an ablation: every model at every seed (or, with ``tune_lr``, every model at every lr and tuning
    seed), then the global model's kernel-size sweep."""
    if cfg.tune_lr:
        return [RunSpec(m, s, lr) for m in cfg.model for lr in cfg.tune_lr for s in cfg.tune_seeds]
    runs = [RunSpec(m, s, learning_rate(m)) for m in cfg.model for s in cfg.seeds]
    lr = learning_rate(cfg.model[0])
    runs += [RunSpec(cfg.model[0], s, lr, k) for k in cfg.kernel_sizes or () for s in cfg.sweep_seeds]
    return runs


def _finished(folder: Path) -> dict[str, Any] | None:
    try:
        return json.loads((folder / "summary.json").read_text())
    except (OSError, ValueError):
        return None


def _epochs_done(folder: Path) -> int:
    try:
        with open(folder / "metrics.csv", newline="") as f:
            return sum(1 for _ in csv.DictReader(f))
    except OSError:
        return 0


def _run_epochs(cfg: AblationConfig) -> int:
    return cfg.epochs or int(_ECHO["epochs"])


def train_runs(
    cfg: AblationConfig,
    specs: Sequence[RunSpec],
    out: Path,
    *,
    launch: Callable[[list[str], dict[str, str], Path], subprocess.Popen] | None = None,
    poll_s: float = 0.5,
) -> None:
    """Train every run of ``specs`` not finished yet under ``out``, ``cfg.jobs`` at a time, with a progress bar over
    the epochs of all runs and an ETA for the whole ablation.

    Raises:
        UserError: a run failed (its ``train.log`` and the last lines it printed are named).
    """
    cores = os.cpu_count() or 1
    jobs = max(1, min(cfg.jobs or cores, len(specs)))
    threads = max(1, cores // jobs)
    per_run = _run_epochs(cfg)
    todo = [s for s in specs if _finished(out / s.name) is None]
    total = per_run * len(todo)
    mode = progress_mode(cfg.progress)
    bar = Progress(total, f"ablation: {len(todo)} runs", mode=mode, log_interval=1, unit="epoch")
    env = {**os.environ, "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE")}
    start = launch or _launch
    running: dict[RunSpec, tuple[subprocess.Popen, int]] = {}
    queue = list(todo)
    try:
        while queue or running:
            while queue and len(running) < jobs:
                spec = queue.pop(0)
                folder = out / spec.name
                folder.mkdir(parents=True, exist_ok=True)
                running[spec] = (start(spec.arguments(cfg, folder, threads), env, folder), _epochs_done(folder))
            time.sleep(poll_s)
            for spec, (proc, seen) in list(running.items()):
                folder = out / spec.name
                done = min(_epochs_done(folder), per_run)
                for _ in range(max(done - seen, 0)):
                    bar.update(1, run=spec.name)
                running[spec] = (proc, max(done, seen))
                code = proc.poll()
                if code is None:
                    continue
                del running[spec]
                if code != 0 or _finished(folder) is None:
                    raise UserError(f"run {spec.name} failed (exit status {code}): {_tail(folder / 'stderr.log')}")
                for _ in range(per_run - max(done, seen)):
                    bar.update(1, run=spec.name)
    finally:
        for proc, _ in running.values():
            proc.terminate()
        for proc, _ in running.values():
            proc.wait()
        bar.close()


def _launch(args: list[str], env: dict[str, str], folder: Path) -> subprocess.Popen:
    """``python -m hyenapixel ARGS`` with its output in ``folder/stdout.log`` and ``folder/stderr.log``."""
    with open(folder / "stdout.log", "ab") as stdout, open(folder / "stderr.log", "ab") as stderr:
        return subprocess.Popen([sys.executable, "-m", "hyenapixel", *args], env=env, stdout=stdout, stderr=stderr)


def _tail(path: Path, lines: int = 5) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return f"no {path}"
    return f"see {path}: " + " | ".join(text[-lines:])


def test_accuracy(folder: Path, samples: int, *, batch_size: int = 250) -> tuple[float, int, int | None]:
    """Top-1 (percent) of a run's ``best.safetensors`` on the Echo test split
    (:meth:`~hyenapixel.data.EchoDataset.run_test_split`), the model's parameter count and its HyenaPixel kernel
    size (None without one)."""
    import torch

    from hyenapixel.data import EchoDataset
    from hyenapixel.data.settings import RunData
    from hyenapixel.models import evaluate, hyenapixel_kernel_sizes, load_model, read_checkpoint

    ckpt = read_checkpoint(folder / "best.safetensors")
    model = load_model(checkpoint=ckpt).eval()
    test = EchoDataset.run_test_split(RunData.from_meta(ckpt.meta), samples)
    metrics = evaluate(model, torch.utils.data.DataLoader(test, batch_size=batch_size))
    kernels = hyenapixel_kernel_sizes(model)
    return float(metrics.top1), sum(p.numel() for p in model.parameters()), kernels[0][0] if kernels else None


def collect(cfg: AblationConfig, specs: Sequence[RunSpec], out: Path) -> list[RunResult]:
    """The results of finished runs (test top-1 only when not tuning)."""
    results = []
    for spec in specs:
        folder = out / spec.name
        summary = _finished(folder)
        if summary is None:
            continue
        if cfg.tune_lr:
            test, params, kernel = None, int(summary["num_params"]), spec.kernel_size
        else:
            test, params, kernel = test_accuracy(folder, cfg.test_samples)
        val, seconds = float(summary["best_top1"]), float(summary["wall_time_s"])
        results.append(RunResult(spec, val, test, params, kernel, seconds))
    return results


def best_lrs(results: Sequence[RunResult]) -> dict[str, float]:
    """Per model, the lr of the best mean validation top-1 over its seeds (the smallest of equal best)."""
    means: dict[str, dict[float, list[float]]] = {}
    for r in results:
        means.setdefault(r.spec.model, {}).setdefault(r.spec.lr, []).append(r.val_top1)
    return {model: max(sorted(by_lr), key=lambda lr: sum(by_lr[lr]) / len(by_lr[lr])) for model, by_lr in means.items()}


def check_targets(results: Sequence[RunResult], global_model: str, margin: float = 5.0) -> dict[str, Any]:
    """Issue targets on the test split: every seed of the global model at least ``margin`` points above every seed
    of each twin (and the mean gap), per twin."""
    main = [r.test_top1 for r in results if r.spec.model == global_model and r.spec.kernel_size is None]
    out: dict[str, Any] = {}
    for twin in dict.fromkeys(r.spec.model for r in results if r.spec.model != global_model):
        other = [r.test_top1 for r in results if r.spec.model == twin and r.spec.kernel_size is None]
        if not main or not other or None in main or None in other:
            continue
        out[twin] = {
            "worst_global_minus_best_twin": min(main) - max(other),
            "mean_gap": sum(main) / len(main) - sum(other) / len(other),
            "met": min(main) - max(other) >= margin,
        }
    return out


def _table(results: Sequence[RunResult], tuning: bool) -> str:
    """Markdown table: one row per model (and sweep kernel), every seed's accuracy, the mean."""
    rows: dict[tuple[str, int | None, float], list[RunResult]] = {}
    for r in results:
        key = (r.spec.model, r.spec.kernel_size, r.spec.lr) if tuning else (r.spec.model, r.spec.kernel_size, 0.0)
        rows.setdefault(key, []).append(r)
    what = "val top-1 (%)" if tuning else "test top-1 (%) per seed"
    lines = [f"| model | kernel | lr | params | {what} | mean |", "|---|---|---|---|---|---|"]
    for (model, _, _), group in rows.items():
        values = [r.val_top1 if tuning else r.test_top1 for r in group]
        seeds = " / ".join(f"{v:.1f}" for v in values)
        r = group[0]
        lines.append(
            f"| {model} | {r.kernel_size or '-'} | {r.spec.lr:g} | {r.num_params / 1e3:.1f}k | {seeds} | "
            f"{sum(values) / len(values):.1f} |"
        )
    return "\n".join(lines) + "\n"


def write_results(cfg: AblationConfig, results: Sequence[RunResult], out: Path) -> dict[str, Any]:
    """``results.json``, ``results.csv`` and ``table.md`` (and ``ablation.png`` with matplotlib) in ``out``."""
    record: dict[str, Any] = {"config": to_plain(cfg)}
    if cfg.tune_lr:
        record["best_lr"] = best_lrs(results)
    else:
        record["targets"] = check_targets(results, cfg.model[0])
    record["runs"] = [_row(r) for r in results]
    atomic_write_text(out / "results.json", json.dumps(record, indent=2) + "\n")
    with open(out / "results.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(_row(results[0]).keys()) if results else ["model"])
        writer.writeheader()
        writer.writerows(_row(r) for r in results)
    atomic_write_text(out / "table.md", _table(results, bool(cfg.tune_lr)))
    if not cfg.tune_lr:
        from hyenapixel.evidence.plots import plot_ablation

        plot_ablation(results, cfg.model[0], out / "ablation.png")
    return record


def _row(r: RunResult) -> dict[str, Any]:
    return {
        "run": r.spec.name,
        "model": r.spec.model,
        "kernel_size": r.kernel_size,
        "seed": r.spec.seed,
        "lr": r.spec.lr,
        "params": r.num_params,
        "val_top1": round(r.val_top1, 2),
        "test_top1": None if r.test_top1 is None else round(r.test_top1, 2),
        "wall_time_s": round(r.wall_time_s, 1),
    }


def run_ablation(cfg: AblationConfig) -> tuple[list[RunResult], dict[str, Any], Path]:
    """Train what is missing, evaluate on the test split, write the table and the figure.

    Returns:
        The results, the record written to ``results.json``, and the output folder.
    """
    import timm

    import hyenapixel.models  # noqa: F401  (registers the models)

    unknown = [m for m in cfg.model if not timm.is_model(m)]
    if unknown:
        raise ConfigError("model", f"unknown model(s) {', '.join(unknown)}")
    out = Path(cfg.output)
    out.mkdir(parents=True, exist_ok=True)
    specs = plan_runs(cfg)
    t0 = time.perf_counter()
    train_runs(cfg, specs, out)
    results = collect(cfg, specs, out)
    record = write_results(cfg, results, out)
    record["wall_time_s"] = time.perf_counter() - t0
    return results, record, out


def describe(results: Sequence[RunResult], record: dict[str, Any], out: Path, tuning: bool) -> str:
    """The end-of-run text: the table, the targets and the files written."""
    lines = [_table(results, tuning)]
    for model, lr in record.get("best_lr", {}).items():
        lines.append(f"{model}: best mean validation top-1 at lr {lr:g}")
    for twin, t in record.get("targets", {}).items():
        verdict = "met" if t["met"] else "NOT met"
        lines.append(
            f"{twin}: worst global seed - best twin seed = {t['worst_global_minus_best_twin']:+.1f} points "
            f"(mean gap {t['mean_gap']:+.1f}); target >= +5: {verdict}"
        )
    seconds = record.get("wall_time_s")
    if seconds is not None and not math.isnan(seconds):
        lines.append(f"wall time {format_seconds(seconds)}")
    lines.append(f"written to {out}/ (table.md, results.csv, results.json{'' if tuning else ', ablation.png'})")
    return "\n".join(lines)
