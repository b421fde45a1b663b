"""``fit(cfg)``: a complete, resumable, optionally distributed training run (paper Section 4.1).

``fit`` builds the run with :func:`hyenapixel.train.run.build_run` (datasets, model, optimizer, closed-form schedule,
timm's losses, Mixup/CutMix and EMA), resumes it with :func:`~hyenapixel.train.run.restore`, and drives the loop
functions of :mod:`hyenapixel.train.loop` epoch by epoch. Only rank 0 writes files:

``config.yaml`` (the resolved config plus derived values), ``train.log``, ``metrics.csv`` (one row per epoch,
drawn as ``curves.png`` when matplotlib is installed),
``last.pt`` (every epoch, and every ``--checkpoint-every-steps`` steps), ``best.pt`` and ``best.safetensors``
(best validation top-1), ``epoch_<N>.pt`` (every ``--checkpoint-every`` epochs) and ``summary.json``.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import logging
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import yaml

from hyenapixel.train.checkpoint import atomic_write_text, restore_rng_state, save_safetensors, save_training_state
from hyenapixel.train.config import TrainConfig
from hyenapixel.train.distributed import DistInfo, assert_replicas_in_sync, cleanup_distributed, setup_distributed
from hyenapixel.train.loaders import (
    CorruptFileReporter,
    ResumableDistributedSampler,
    SeededSamples,
    ShardSampler,
    make_loader,
)
from hyenapixel.train.loop import evaluate, train_one_epoch
from hyenapixel.train.plots import plot_training_curves
from hyenapixel.train.progress import Progress, format_seconds, progress_mode
from hyenapixel.train.run import Run, build_run, restore, seed_all

__all__ = ["METRIC_FIELDS", "MetricsCSV", "fit"]

log = logging.getLogger("hyenapixel")

METRIC_FIELDS = (
    "epoch",
    "step",
    "lr",
    "train_loss",
    "val_loss",
    "val_top1",
    "val_top5",
    "ema_top1",
    "ema_top5",
    "epoch_time_s",
    "images_per_s",
)


# ----------------------------------------------------------------------------------------------------------------
# Process settings and run files
# ----------------------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _process_settings(threads: int | None, deterministic: bool) -> Iterator[None]:
    """CPU threads and (non-)deterministic algorithms for the run; the previous settings are restored after."""
    saved = (
        torch.get_num_threads(),
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
        torch.backends.cudnn.benchmark,
        torch.backends.cudnn.deterministic,
    )
    if threads is not None:
        torch.set_num_threads(threads)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
    else:
        torch.backends.cudnn.benchmark = True
    try:
        yield
    finally:
        torch.set_num_threads(saved[0])
        torch.use_deterministic_algorithms(saved[1], warn_only=saved[2])
        torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = saved[3], saved[4]


class MetricsCSV:
    """``metrics.csv`` with one row per epoch; on resume, rows of epochs that will be re-run are dropped."""

    def __init__(self, path: Path, keep_before_epoch: int | None = None) -> None:
        self.path = path
        rows: list[dict[str, str]] = []
        if keep_before_epoch is not None and path.exists():
            with open(path, newline="") as f:
                rows = [r for r in csv.DictReader(f) if int(r["epoch"]) <= keep_before_epoch]
        self.rows = rows
        self._write()

    def append(self, row: dict[str, Any]) -> None:
        self.rows.append({k: ("" if row.get(k) is None else row.get(k)) for k in METRIC_FIELDS})
        self._write()

    def _write(self) -> None:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=METRIC_FIELDS)
        writer.writeheader()
        writer.writerows(self.rows)
        atomic_write_text(self.path, buf.getvalue())


@contextlib.contextmanager
def _run_files(run: Run) -> Iterator[MetricsCSV | None]:
    """Rank 0: run directory, train.log, config.yaml and metrics.csv for the duration of the run."""
    if not run.info.is_main:
        yield None
        return
    run.out_dir.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(run.out_dir / "train.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    log.addHandler(handler)
    try:
        text = yaml.safe_dump(run.config_dict, sort_keys=False)
        atomic_write_text(run.out_dir / "config.yaml", text)
        log.info("resolved config (%s):\n%s", run.out_dir / "config.yaml", text.rstrip())
        s, b = run.settings, run.batching
        log.info(
            "model %s: %.2fM parameters; dataset %s: %d train / %d val images, %d classes; %d process(es) x "
            "batch %d x accum %d = global batch %d, peak lr %.3g, %d steps/epoch",
            run.cfg.model.model,
            run.num_params / 1e6,
            s["dataset"],
            s["train_size"],
            s["val_size"],
            s["num_classes"],
            run.info.world_size,
            run.cfg.run.batch_size,
            b["accum_steps"],
            b["global_batch"],
            b["lr"],
            run.updates_per_epoch,
        )
        yield MetricsCSV(run.out_dir / "metrics.csv", keep_before_epoch=run.start_epoch if run.resume_path else None)
    finally:
        log.removeHandler(handler)
        handler.close()


# ----------------------------------------------------------------------------------------------------------------
# fit
# ----------------------------------------------------------------------------------------------------------------


def fit(cfg: TrainConfig) -> dict[str, Any]:
    """Train (evaluating every epoch) as configured; return the summary (also ``summary.json`` on rank 0).

    Raises:
        ConfigError: nonsense options (before any work).
        hyenapixel.data.DataError: bad datasets (before any training).
        NonFiniteLossError: the loss diverged (the last checkpoint is left intact).
    """
    t_start = time.time()
    info = setup_distributed(cfg.run.device)
    try:
        with _process_settings(cfg.run.threads, cfg.run.deterministic):
            return _fit(cfg, info, t_start)
    finally:
        cleanup_distributed()


def _fit(cfg: TrainConfig, info: DistInfo, t_start: float) -> dict[str, Any]:
    """Build, resume, train every remaining epoch, summarise."""
    run = build_run(cfg, info)
    rng = restore(run, run.resume_path) if run.resume_path else None
    with _run_files(run) as metrics_csv:
        val_loader = make_loader(
            run.val_ds,
            ShardSampler(len(run.val_ds), info.world_size, info.rank),
            batch_size=cfg.run.batch_size,
            workers=run.workers,
            drop_last=False,
            pin_memory=info.device.type == "cuda",
            seed=cfg.run.seed,
        )
        sampler = ResumableDistributedSampler(run.train_ds, info.world_size, info.rank, seed=cfg.run.seed)
        if rng is not None:
            restore_rng_state(rng)
        else:
            seed_all(cfg.run.seed + info.rank)  # dropout and drop path differ per rank
        for epoch in range(run.start_epoch, cfg.sched.epochs):
            _train_and_evaluate_epoch(run, epoch, sampler, val_loader, metrics_csv)
    return _summarize(run, time.time() - t_start)


def _step_hook(run: Run, epoch: int) -> Callable[[int], None]:
    """After every optimizer step: optional replica check and mid-epoch checkpoint."""

    def hook(batch_done: int) -> None:
        step = run.schedule.num_updates
        if run.cfg.run.check_sync_every and step % run.cfg.run.check_sync_every == 0:
            assert_replicas_in_sync(run.model, run.info, step)
        every = run.cfg.run.checkpoint_every_steps
        if every and step % every == 0 and batch_done < run.num_batches:
            state = run.state(epoch, batch_done)
            if run.info.is_main:
                save_training_state(run.out_dir / "last.pt", state)

    return hook


def _train_and_evaluate_epoch(
    run: Run, epoch: int, sampler: ResumableDistributedSampler, val_loader: Any, metrics_csv: MetricsCSV | None
) -> None:
    """One epoch: train, evaluate (model and EMA), checkpoint and log on rank 0."""
    cfg, info = run.cfg, run.info
    t0 = time.time()
    desc = f"epoch {epoch + 1}/{cfg.sched.epochs}"
    progress = Progress(
        run.updates_per_epoch,
        desc,
        progress_mode(cfg.run.progress, info.is_main),
        cfg.run.log_interval,
        initial=run.start_batch // run.batching["accum_steps"],
        run_remaining_steps=(cfg.sched.epochs - epoch - 1) * run.updates_per_epoch,
    )
    try:
        train = train_one_epoch(
            run.ddp_model,
            run.loader(epoch, sampler),
            run.optimizer,
            run.loss_fn,
            run.schedule,
            info=info,
            epoch=epoch + 1,
            num_batches=run.num_batches,
            accum_steps=run.batching["accum_steps"],
            start_batch=run.start_batch,
            mixup=run.mixup,
            scaler=run.scaler,
            amp_dtype=run.amp_dtype,
            ema=run.ema,
            clip_grad=cfg.optim.clip_grad,
            channels_last=cfg.run.channels_last,
            progress=progress,
            on_update=_step_hook(run, epoch),
        )
    finally:
        progress.close()
    train_time = time.time() - t0
    run.start_batch = 0

    kw = {"info": info, "amp_dtype": run.amp_dtype, "channels_last": cfg.run.channels_last}
    val = evaluate(run.model, val_loader, **kw)
    ema = evaluate(run.ema.module, val_loader, **kw) if run.ema is not None else None
    reported = ema if ema is not None else val  # the EMA weights are the deliverable when EMA is on
    is_best = reported["top1"] > run.best["top1"]
    if is_best:
        run.best = {"top1": reported["top1"], "epoch": epoch + 1}
    run.last_metrics = {
        "epoch": epoch + 1,
        "step": run.schedule.num_updates,
        "lr": run.schedule.lr_at(run.schedule.epoch_of(max(run.schedule.num_updates - 1, 0))),
        "train_loss": train["train_loss"],
        "val_loss": val["loss"],
        "val_top1": val["top1"],
        "val_top5": val["top5"],
        "val_count": val["count"],
        "ema_top1": ema["top1"] if ema else None,
        "ema_top5": ema["top5"] if ema else None,
        "epoch_time_s": round(time.time() - t0, 3),
        "images_per_s": round(train["images"] / max(train_time, 1e-9), 1),
    }
    state = run.state(epoch + 1, 0)
    if not info.is_main:
        return
    out = run.out_dir
    save_training_state(out / "last.pt", state)
    if is_best:
        save_training_state(out / "best.pt", state)
        weights = state["ema"] if state["ema"] is not None else state["model"]
        meta = {"model_spec": json.dumps(run.spec), "epoch": str(epoch + 1)}
        save_safetensors(out / "best.safetensors", weights, meta)
    if cfg.run.checkpoint_every and (epoch + 1) % cfg.run.checkpoint_every == 0:
        save_training_state(out / f"epoch_{epoch + 1:04d}.pt", state)
    assert metrics_csv is not None
    metrics_csv.append(run.last_metrics)
    log.info(
        "%s: train loss %.4f | val loss %.4f top-1 %.2f top-5 %.2f%s | %s, %.0f img/s%s",
        desc,
        train["train_loss"],
        val["loss"],
        val["top1"],
        val["top5"],
        f" | ema top-1 {ema['top1']:.2f}" if ema else "",
        format_seconds(time.time() - t0),
        run.last_metrics["images_per_s"],
        " (best)" if is_best else "",
    )


def _skipped_files(run: Run) -> set[str]:
    """Corrupt files skipped by any worker of any rank (collective when distributed)."""
    found: set[str] = set()
    for ds in (run.train_ds, run.val_ds):
        while isinstance(ds, SeededSamples):
            ds = ds.dataset
        if isinstance(ds, CorruptFileReporter):
            found |= ds.collect()
    if run.info.distributed:
        everyone: list[Any] = [None] * run.info.world_size
        dist.all_gather_object(everyone, found)
        found = set().union(*everyone)
    return found


def _summarize(run: Run, wall_time_s: float) -> dict[str, Any]:
    """The run's summary; rank 0 writes it to summary.json."""
    final, s = run.last_metrics, run.settings
    use_ema = run.ema is not None and final.get("ema_top1") is not None
    corrupt = sorted(_skipped_files(run))
    curves = None
    if run.info.is_main:
        try:
            curves = plot_training_curves(run.out_dir / "metrics.csv", run.out_dir / "curves.png")
        except Exception as e:  # a picture must never cost the results of a finished run
            log.warning("could not draw curves.png: %s", e)
    summary = {
        "model": run.cfg.model.model,
        "model_spec": run.spec,
        "dataset": s["dataset"],
        "num_classes": s["num_classes"],
        "chance_top1": 100.0 / s["num_classes"],
        "train_size": s["train_size"],
        "val_size": s["val_size"],
        "input_size": s["input_size"],
        "epochs": run.cfg.sched.epochs,
        "steps": run.schedule.num_updates,
        "global_batch": run.batching["global_batch"],
        "lr": run.batching["lr"],
        "world_size": run.info.world_size,
        "device": str(run.info.device),
        "num_params": run.num_params,
        "evaluated": "ema" if use_ema else "model",
        "val_top1": final.get("ema_top1") if use_ema else final.get("val_top1"),
        "val_top5": final.get("ema_top5") if use_ema else final.get("val_top5"),
        "val_loss": final.get("val_loss"),
        "val_count": final.get("val_count"),
        "best_top1": run.best["top1"] if run.best["epoch"] is not None else None,
        "best_epoch": run.best["epoch"],
        "corrupt_files_skipped": len(corrupt),
        "wall_time_s": round(wall_time_s, 2),
        "output": str(run.out_dir),
        "checkpoints": {
            "last": str(run.out_dir / "last.pt"),
            "best": str(run.out_dir / "best.pt"),
            "best_weights": str(run.out_dir / "best.safetensors"),
        },
        "curves": str(curves) if curves else None,
    }
    if run.info.is_main:
        atomic_write_text(run.out_dir / "summary.json", json.dumps(summary, indent=2) + "\n")
        if corrupt:
            shown = ", ".join(corrupt[:10]) + (f", ... ({len(corrupt) - 10} more)" if len(corrupt) > 10 else "")
            log.warning("skipped %d corrupt image file(s) (--skip-corrupt): %s", len(corrupt), shown)
    return summary
