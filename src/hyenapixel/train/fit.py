"""``fit(cfg)``: a complete, resumable, optionally distributed training run (paper Section 4.1).

``fit`` builds the run with :func:`hyenapixel.train.run.build_run` (datasets, model, optimizer, closed-form schedule,
timm's losses, Mixup/CutMix and EMA; restored from its checkpoint when resuming), and drives the loop
functions of :mod:`hyenapixel.train.loop` epoch by epoch. Only rank 0 writes files:

``config.yaml`` (the resolved config plus derived values), ``train.log`` (the log, ending with the summary block),
``metrics.csv`` (one row per epoch, drawn as ``curves.png`` when matplotlib is installed), ``last.pt`` (every
epoch, and every ``--checkpoint-every-steps`` steps), ``best.pt`` and ``best.safetensors`` (best validation top-1;
the safetensors metadata names the model), ``epoch_<N>.pt`` (every ``--checkpoint-every`` epochs) and
``summary.json``.

A run never loses work: a SIGTERM (a scheduler's preemption) saves ``last.pt`` at the current optimizer step and
stops with :class:`~hyenapixel.train.errors.RunTerminatedError`; Ctrl-C stops with
:class:`~hyenapixel.train.errors.RunInterrupted`; both name the run directory, so ``--resume auto`` continues.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import io
import json
import logging
import math
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import yaml

from hyenapixel.train.checkpoint import (
    atomic_write_text,
    find_resume_checkpoint,
    restore_rng_state,
    save_safetensors,
    save_training_state,
)
from hyenapixel.train.config import TrainConfig
from hyenapixel.train.distributed import (
    DistInfo,
    any_rank,
    assert_replicas_in_sync,
    cleanup_distributed,
    setup_distributed,
)
from hyenapixel.train.errors import ConfigError, RunInterrupted, RunTerminatedError
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
from hyenapixel.train.run import RUN_FILES, Best, EpochMetrics, Run, build_run, seed_all
from hyenapixel.train.summary import format_summary

__all__ = ["EMA_FIELDS", "METRIC_FIELDS", "MetricsCSV", "StopRequest", "fit", "metric_fields"]

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

#: Columns that exist only when the run keeps an EMA of the weights.
EMA_FIELDS = ("ema_top1", "ema_top5")

#: How each column is written: decimals to round to (None: 6 significant digits, for the learning rate).
_DECIMALS: dict[str, int | None] = {
    "lr": None,
    "train_loss": 5,
    "val_loss": 5,
    "val_top1": 3,
    "val_top5": 3,
    "ema_top1": 3,
    "ema_top5": 3,
    "epoch_time_s": 2,
    "images_per_s": 1,
}


def metric_fields(ema: bool) -> tuple[str, ...]:
    """The columns of ``metrics.csv`` (EMA columns only with ``--ema``)."""
    return METRIC_FIELDS if ema else tuple(f for f in METRIC_FIELDS if f not in EMA_FIELDS)


def _cell(name: str, value: Any) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return ""
    if not isinstance(value, float) or name not in _DECIMALS:
        return str(value)
    decimals = _DECIMALS[name]
    return f"{value:.6g}" if decimals is None else repr(round(value, decimals))


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
    """``metrics.csv`` with one row per epoch, rounded; on resume, rows of epochs that will be re-run are dropped."""

    def __init__(self, path: Path, keep_before_epoch: int | None = None, fields: Sequence[str] = METRIC_FIELDS):
        self.path = path
        self.fields = tuple(fields)
        rows: list[dict[str, str]] = []
        if keep_before_epoch is not None and path.exists():
            with open(path, newline="") as f:
                rows = [r for r in csv.DictReader(f) if int(r["epoch"]) <= keep_before_epoch]
        self.rows = rows
        self._write()

    def append(self, row: dict[str, Any]) -> None:
        self.rows.append({k: _cell(k, row.get(k)) for k in self.fields})
        self._write()

    def _write(self) -> None:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=self.fields, extrasaction="ignore", restval="")
        writer.writeheader()
        writer.writerows(self.rows)
        atomic_write_text(self.path, buf.getvalue())


def _banner(run: Run) -> list[str]:
    """The few lines that open a run: model, data, batching, lr, output (the full config is in config.yaml)."""
    cfg, s, b = run.cfg, run.settings, run.batching
    arch = ", ".join(
        f"{k} {' '.join(map(str, v))}" for k, v in run.spec["kwargs"].items() if k != "res_scale_init_values"
    )
    sched = cfg.sched
    lr_source = "--lr" if cfg.optim.lr else f"--base-lr {cfg.optim.base_lr:g} at {cfg.optim.base_batch}, scaled"
    return [
        f"model    {cfg.model.model} ({arch + ', ' if arch else ''}{run.num_params / 1e6:.2f}M parameters)",
        f"data     {s.dataset}: {s.train_size} train / {s.val_size} val images, {s.num_classes} classes, "
        f"{s.input_size} px",
        f"batching {b.world_size} process(es) x batch {cfg.run.batch_size} x accum {b.accum_steps} = global batch "
        f"{b.global_batch}; {run.updates_per_epoch} steps/epoch x {sched.epochs} epochs on {run.info.device}",
        f"lr       peak {b.lr:.3g} ({lr_source}), {sched.warmup_epochs:g} warmup epoch(s), {sched.sched} to "
        f"{sched.min_lr:g}; {cfg.optim.opt}, weight decay {cfg.optim.weight_decay:g}",
        f"output   {run.out_dir} (full config: config.yaml there; --print-config shows it without training)",
    ]


class _RunFiles:
    """Rank 0's files of a running run: ``train.log`` (a log handler), ``config.yaml`` and ``metrics.csv``."""

    def __init__(self, run: Run) -> None:
        out = run.out_dir
        out.mkdir(parents=True, exist_ok=True)
        if run.cfg.run.overwrite and run.resume_path is None:
            for path in [*(out / f for f in RUN_FILES), *out.glob("epoch_*.pt")]:
                path.unlink(missing_ok=True)
        self.handler = logging.FileHandler(out / "train.log")
        self.handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        log.addHandler(self.handler)
        atomic_write_text(out / "config.yaml", yaml.safe_dump(run.config_dict, sort_keys=False))
        for line in _banner(run):
            log.info("%s", line)
        self.metrics = MetricsCSV(
            out / "metrics.csv",
            keep_before_epoch=run.start_epoch if run.resume_path else None,
            fields=metric_fields(run.ema is not None),
        )

    def log_to_file(self, text: str) -> None:
        """Append ``text`` to train.log only (the terminal shows it through the command's own output)."""
        record = logging.makeLogRecord({"name": log.name, "levelno": logging.INFO, "levelname": "INFO", "msg": text})
        self.handler.handle(record)

    def close(self) -> None:
        log.removeHandler(self.handler)
        self.handler.close()


@contextlib.contextmanager
def _run_files(run: Run) -> Iterator[_RunFiles | None]:
    """Rank 0: run directory, train.log, config.yaml and metrics.csv for the duration of the run."""
    if not run.info.is_main:
        yield None
        return
    files = _RunFiles(run)
    try:
        yield files
    finally:
        files.close()


class StopRequest:
    """Set by SIGTERM; the training loop saves a checkpoint at the next optimizer step and stops."""

    def __init__(self) -> None:
        self.signal_name: str | None = None

    def __call__(self, signum: int, frame: Any) -> None:
        self.signal_name = signal.Signals(signum).name

    @property
    def requested(self) -> bool:
        return self.signal_name is not None


@contextlib.contextmanager
def _stop_on_sigterm() -> Iterator[StopRequest]:
    """Catch SIGTERM for the duration of the run (main thread only; the previous handler is restored)."""
    request = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield request
        return
    previous = signal.signal(signal.SIGTERM, request)
    try:
        yield request
    finally:
        signal.signal(signal.SIGTERM, previous)


# ----------------------------------------------------------------------------------------------------------------
# fit
# ----------------------------------------------------------------------------------------------------------------


def fit(cfg: TrainConfig) -> dict[str, Any]:
    """Train (evaluating every epoch) as configured; return the summary (also ``summary.json`` on rank 0).

    Raises:
        ConfigError: nonsense options (before any work), including an --output that holds another run.
        hyenapixel.data.DataError: bad datasets (before any training).
        NonFiniteLossError: the loss diverged (the last checkpoint is left intact).
        RunTerminatedError: SIGTERM; ``last.pt`` holds the state at the current optimizer step.
        RunInterrupted: Ctrl-C; the newest checkpoint is where ``--resume auto`` continues.
    """
    t_start = time.time()
    info = setup_distributed(cfg.run.device)
    try:
        with _process_settings(cfg.run.threads, cfg.run.deterministic), _stop_on_sigterm() as stop:
            return _fit(cfg, info, t_start, stop)
    finally:
        cleanup_distributed()


def _fit(cfg: TrainConfig, info: DistInfo, t_start: float, stop: StopRequest) -> dict[str, Any]:
    """Build, resume, train every remaining epoch, summarise."""
    run = build_run(cfg, info)
    if run.resume_path is not None and run.start_epoch >= cfg.sched.epochs and run.start_batch == 0:
        summary = _already_complete(run)
        if summary is not None:
            return summary
    with _run_files(run) as files:
        try:
            _train(run, files, stop)
        except KeyboardInterrupt:
            newest = find_resume_checkpoint(run.out_dir) if info.is_main else None
            raise RunInterrupted(run.out_dir, newest, run.schedule.num_updates) from None
        summary = _summarize(run, time.time() - t_start)
        if files is not None:
            files.log_to_file("\n" + format_summary(summary))
    return summary


def _already_complete(run: Run) -> dict[str, Any] | None:
    """A resumed run whose checkpoint has trained every epoch: nothing is trained or written; the summary it
    saved is returned (None if it has none: the run then only writes its summary). A checkpoint past ``--epochs``
    is refused."""
    done, epochs = run.start_epoch, run.cfg.sched.epochs
    if done > epochs:
        raise ConfigError(
            "epochs",
            f"{run.resume_path} has trained {done} epochs already, more than --epochs {epochs}; give --epochs "
            f"{done} or more to continue it, or start a new run",
        )
    path = run.out_dir / "summary.json"
    if not path.is_file():
        return None
    log.info("%s has trained all %d epochs already: nothing to do (raise --epochs to train further)", run.out_dir, done)
    return json.loads(path.read_text())


def _train(run: Run, files: _RunFiles | None, stop: StopRequest) -> None:
    """Every remaining epoch of the run (stops early on a SIGTERM, after saving)."""
    cfg, info = run.cfg, run.info
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
    if run.rng_state is not None:
        restore_rng_state(run.rng_state)
    else:
        seed_all(cfg.run.seed + info.rank)  # dropout and drop path differ per rank
    for epoch in range(run.start_epoch, cfg.sched.epochs):
        _train_and_evaluate_epoch(run, epoch, sampler, val_loader, files, stop)
        if epoch + 1 < cfg.sched.epochs and any_rank(stop.requested, info):
            _stopped(run, stop, f"end of epoch {epoch + 1}")


def _stopped(run: Run, stop: StopRequest, where: str) -> None:
    """Report the stop after the checkpoint of the current step was saved, and end the run."""
    step = run.schedule.num_updates
    signal_name = stop.signal_name or "SIGTERM"
    last = run.out_dir / "last.pt"
    log.warning("%s: saved %s at step %d (%s); continue with --resume auto", signal_name, last, step, where)
    raise RunTerminatedError(run.out_dir, run.out_dir / "last.pt", step, signal_name)


def _step_hook(run: Run, epoch: int, stop: StopRequest) -> Callable[[int], None]:
    """After every optimizer step: optional replica check, mid-epoch checkpoint, and the stop on SIGTERM."""

    def hook(batch_done: int) -> None:
        step = run.schedule.num_updates
        if run.cfg.run.check_sync_every and step % run.cfg.run.check_sync_every == 0:
            assert_replicas_in_sync(run.model, run.info, step)
        every = run.cfg.run.checkpoint_every_steps
        stopping = any_rank(stop.requested, run.info)
        if stopping or (every and step % every == 0 and batch_done < run.num_batches):
            state = run.state(epoch, batch_done)
            if run.info.is_main:
                save_training_state(run.out_dir / "last.pt", state)
        if stopping:
            _stopped(run, stop, f"epoch {epoch + 1}, micro-batch {batch_done} of {run.num_batches}")

    return hook


def _train_and_evaluate_epoch(
    run: Run,
    epoch: int,
    sampler: ResumableDistributedSampler,
    val_loader: Any,
    files: _RunFiles | None,
    stop: StopRequest,
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
        initial=run.start_batch // run.batching.accum_steps,
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
            accum_steps=run.batching.accum_steps,
            start_batch=run.start_batch,
            mixup=run.mixup,
            scaler=run.scaler,
            amp_dtype=run.amp_dtype,
            ema=run.ema,
            clip_grad=cfg.optim.clip_grad,
            channels_last=cfg.run.channels_last,
            progress=progress,
            on_update=_step_hook(run, epoch, stop),
        )
    finally:
        progress.close()
    train_time = time.time() - t0
    run.start_batch = 0

    kw = {"info": info, "amp_dtype": run.amp_dtype, "channels_last": cfg.run.channels_last}
    val = evaluate(run.model, val_loader, **kw)
    ema = evaluate(run.ema.module, val_loader, **kw) if run.ema is not None else None
    reported = ema if ema is not None else val  # the EMA weights are the deliverable when EMA is on
    is_best = reported.top1 > run.best.top1
    if is_best:
        run.best = Best(reported.top1, epoch + 1)
    run.last_metrics = metrics = EpochMetrics(
        epoch=epoch + 1,
        step=run.schedule.num_updates,
        lr=run.schedule.lr_at(run.schedule.epoch_of(max(run.schedule.num_updates - 1, 0))),
        train_loss=train.train_loss,
        val_loss=val.loss,
        val_top1=val.top1,
        val_top5=val.top5,
        val_count=val.count,
        ema_top1=ema.top1 if ema else None,
        ema_top5=ema.top5 if ema else None,
        epoch_time_s=round(time.time() - t0, 3),
        images_per_s=round(train.images / max(train_time, 1e-9), 1),
    )
    state = run.state(epoch + 1, 0)
    if not info.is_main:
        return
    out = run.out_dir
    save_training_state(out / "last.pt", state)
    if is_best:
        save_training_state(out / "best.pt", state)
        weights = state["ema"] if state["ema"] is not None else state["model"]
        save_safetensors(out / "best.safetensors", weights, _safetensors_metadata(state))
    if cfg.run.checkpoint_every and (epoch + 1) % cfg.run.checkpoint_every == 0:
        save_training_state(out / f"epoch_{epoch + 1:04d}.pt", state)
    assert files is not None
    files.metrics.append(dataclasses.asdict(metrics))
    log.info(
        "%s: train loss %.4f | val loss %.4f top-1 %.2f%s%s | %s, %.0f img/s%s",
        desc,
        train.train_loss,
        val.loss,
        val.top1,
        "" if val.top5 is None else f" top-5 {val.top5:.2f}",
        f" | ema top-1 {ema.top1:.2f}" if ema else "",
        format_seconds(time.time() - t0),
        metrics.images_per_s,
        " (best)" if is_best else "",
    )


def _safetensors_metadata(state: dict[str, Any]) -> dict[str, str]:
    """What ``best.safetensors`` says about itself (JSON strings), so that it loads and validates on its own."""
    keys = ("model_spec", "num_classes", "in_chans", "input_size", "class_names", "config", "epoch")
    return {k: json.dumps(state[k]) for k in keys}


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
    use_ema = run.ema is not None and final is not None and final.ema_top1 is not None
    corrupt = sorted(_skipped_files(run))
    curves = None
    if run.info.is_main:
        try:
            curves = plot_training_curves(
                run.out_dir / "metrics.csv",
                run.out_dir / "curves.png",
                title=f"{run.cfg.model.model} on {s.dataset}",
                chance=100.0 / s.num_classes,
            )
        except Exception as e:  # a picture must never cost the results of a finished run
            log.warning("could not draw curves.png: %s", e)
    summary = {
        "model": run.cfg.model.model,
        "model_spec": run.spec,
        "dataset": s.dataset,
        "num_classes": s.num_classes,
        "chance_top1": 100.0 / s.num_classes,
        "train_size": s.train_size,
        "val_size": s.val_size,
        "input_size": s.input_size,
        "epochs": run.cfg.sched.epochs,
        "steps": run.schedule.num_updates,
        "global_batch": run.batching.global_batch,
        "lr": run.batching.lr,
        "world_size": run.info.world_size,
        "device": str(run.info.device),
        "num_params": run.num_params,
        "evaluated": "ema" if use_ema else "model",
        "val_top1": (final.ema_top1 if use_ema else final.val_top1) if final else None,
        "val_top5": (final.ema_top5 if use_ema else final.val_top5) if final else None,
        "val_loss": final.val_loss if final else None,
        "val_count": final.val_count if final else None,
        "best_top1": run.best.top1 if run.best.epoch is not None else None,
        "best_epoch": run.best.epoch,
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
