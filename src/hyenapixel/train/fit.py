"""``fit(cfg)``: a complete, resumable, optionally distributed training run (paper Section 4.1).

The run flows config -> parts -> loop -> summary: :func:`hyenapixel.train.rundir.place_run` picks the folder,
:func:`hyenapixel.train.build.build` makes the parts, :class:`hyenapixel.train.state.RunState` holds (and
restores) the position, every epoch is :func:`hyenapixel.models.training.train_one_epoch` then
:func:`hyenapixel.models.evaluate`, and rank 0 writes the folder's files through
:class:`hyenapixel.train.rundir.RunFolder`.

A run never loses work: a SIGTERM (a scheduler's preemption) saves ``last.pt`` at the current optimizer step and
stops with :class:`~hyenapixel.train.errors.RunTerminatedError`; Ctrl-C stops with
:class:`~hyenapixel.train.errors.RunInterrupted`; both name the run directory, so ``--resume auto`` continues.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import torch

from hyenapixel.data.loaders import ResumableDistributedSampler, ShardSampler, make_loader, skipped_files
from hyenapixel.models.evaluation import evaluate
from hyenapixel.models.training import TrainStats, train_one_epoch
from hyenapixel.ops.parallel import intra_op_threads
from hyenapixel.progress import Progress, format_seconds, progress_mode
from hyenapixel.train.build import Components, build, check_model_flag, resolve_batching, seed_all
from hyenapixel.train.config import TrainConfig
from hyenapixel.train.distributed import (
    all_reduce_sum,
    any_rank,
    assert_replicas_in_sync,
    cleanup_distributed,
    gather_objects,
    setup_distributed,
)
from hyenapixel.train.errors import ConfigError, RunInterrupted, RunTerminatedError
from hyenapixel.train.rundir import RunFolder, place_run
from hyenapixel.train.state import Best, EpochMetrics, RunState, restore_rng_state
from hyenapixel.train.summary import banner, summarize

__all__ = ["StopRequest", "fit"]

log = logging.getLogger("hyenapixel")


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
            check_model_flag(cfg.model.model)
            batching = resolve_batching(cfg, info.world_size)
            out_dir, resume_path = place_run(cfg, info)
            parts = build(cfg, info, batching, out_dir)
            state = RunState.restore(parts, resume_path) if resume_path else RunState()
            if resume_path and state.epoch >= cfg.sched.epochs and state.batch == 0:
                summary = _already_complete(parts, state)
                if summary is not None:
                    return summary
            folder = _open_folder(parts, state)
            with folder or contextlib.nullcontext():
                try:
                    _train(parts, state, folder, stop)
                except KeyboardInterrupt:
                    newest = folder.newest_checkpoint() if folder else None
                    raise RunInterrupted(out_dir, newest, parts.schedule.num_updates) from None
                return _finish(parts, state, folder, time.time() - t_start)
    finally:
        cleanup_distributed()


def _open_folder(parts: Components, state: RunState) -> RunFolder | None:
    """Rank 0's run folder: a fresh run with --overwrite first removes the old run's files, a resumed one keeps
    the rows of metrics.csv up to its epoch. None on the other ranks."""
    if not parts.info.is_main:
        return None
    resumed = state.resumed_from is not None
    return RunFolder(
        parts.out_dir,
        parts.record,
        banner(parts),
        replace=parts.cfg.run.overwrite and not resumed,
        resumed_epoch=state.epoch if resumed else None,
        ema=parts.ema is not None,
    )


def _finish(parts: Components, state: RunState, folder: RunFolder | None, wall_time_s: float) -> dict[str, Any]:
    """The summary of the finished run; rank 0 draws curves.png and writes summary.json and the log's last block."""
    corrupt = set().union(*gather_objects(skipped_files(parts.train_ds, parts.val_ds), parts.info))  # all ranks
    s = parts.settings
    curves = folder.draw_curves(f"{parts.cfg.model.model} on {s.dataset}", 100.0 / s.num_classes) if folder else None
    summary = summarize(parts, state, wall_time_s=wall_time_s, corrupt=len(corrupt), curves=curves)
    if folder:
        _warn_corrupt(corrupt)
        folder.write_summary(summary)
    return summary


def _train(parts: Components, state: RunState, folder: RunFolder | None, stop: StopRequest) -> None:
    """Every remaining epoch: train, evaluate (model and EMA), checkpoint and log on rank 0."""
    cfg, info = parts.cfg, parts.info
    val_loader = make_loader(
        parts.val_ds,
        ShardSampler(len(parts.val_ds), info.world_size, info.rank),
        batch_size=cfg.run.batch_size,
        workers=parts.workers,
        drop_last=False,
        pin_memory=info.device.type == "cuda",
        seed=cfg.run.seed,
    )
    sampler = ResumableDistributedSampler(parts.train_ds, info.world_size, info.rank, seed=cfg.run.seed)
    if state.rng is not None:
        restore_rng_state(state.rng)
    else:
        seed_all(cfg.run.seed + info.rank)  # dropout and drop path differ per rank
    evaluate_kw = dict(
        device=info.device,
        amp_dtype=parts.amp_dtype,
        channels_last=cfg.run.channels_last,
        reduce=functools.partial(all_reduce_sum, info=info),
    )
    while state.epoch < cfg.sched.epochs:
        epoch, t0 = state.epoch, time.time()
        train = _train_epoch(parts, state, sampler, _after_step(parts, state, folder, stop))
        train_time = time.time() - t0
        val = evaluate(parts.model, val_loader, **evaluate_kw)
        ema = evaluate(parts.ema.module, val_loader, **evaluate_kw) if parts.ema is not None else None
        reported = ema if ema is not None else val  # the EMA weights are the deliverable when EMA is on
        is_best = reported.top1 > state.best.top1
        if is_best:
            state.best = Best(reported.top1, epoch + 1)
        step = parts.schedule.num_updates
        state.last_metrics = metrics = EpochMetrics(
            epoch=epoch + 1,
            step=step,
            lr=parts.schedule.lr_at(parts.schedule.epoch_of(max(step - 1, 0))),
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
        state.epoch, state.batch = epoch + 1, 0
        checkpoint = state.checkpoint(parts)
        if folder is not None:
            keep = bool(cfg.run.checkpoint_every) and state.epoch % cfg.run.checkpoint_every == 0
            folder.save_epoch(checkpoint, dataclasses.asdict(metrics), is_best=is_best, keep=keep)
            log.info(
                "epoch %d/%d: train loss %.4f | val loss %.4f top-1 %.2f%s%s | %s, %.0f img/s%s",
                epoch + 1,
                cfg.sched.epochs,
                train.train_loss,
                val.loss,
                val.top1,
                "" if val.top5 is None else f" top-5 {val.top5:.2f}",
                f" | ema top-1 {ema.top1:.2f}" if ema else "",
                format_seconds(time.time() - t0),
                metrics.images_per_s,
                " (best)" if is_best else "",
            )
        if state.epoch < cfg.sched.epochs and any_rank(stop.requested, info):
            _stopped(parts, stop, f"end of epoch {state.epoch}")


def _train_epoch(
    parts: Components, state: RunState, sampler: ResumableDistributedSampler, on_update: Callable[[int], None]
) -> TrainStats:
    """The training part of epoch ``state.epoch``, from micro-batch ``state.batch`` on."""
    cfg, epoch, accum = parts.cfg, state.epoch, parts.batching.accum_steps
    progress = Progress(
        parts.updates_per_epoch,
        f"epoch {epoch + 1}/{cfg.sched.epochs}",
        progress_mode(cfg.run.progress, parts.info.is_main),
        cfg.run.log_interval,
        initial=state.batch // accum,
        run_remaining_steps=(cfg.sched.epochs - epoch - 1) * parts.updates_per_epoch,
    )
    try:
        return train_one_epoch(
            parts.ddp_model,
            parts.train_loader(epoch, sampler, state.batch),
            parts.optimizer,
            lambda model, images, targets: parts.loss_fn(model(images), targets),
            parts.schedule,
            device=parts.info.device,
            epoch=epoch + 1,
            num_batches=parts.num_batches,
            accum_steps=accum,
            start_batch=state.batch,
            mixup=parts.mixup,
            scaler=parts.scaler,
            amp_dtype=parts.amp_dtype,
            ema=parts.ema,
            clip_grad=cfg.optim.clip_grad,
            channels_last=cfg.run.channels_last,
            progress=progress,
            on_update=on_update,
            world_size=parts.info.world_size,
            any_rank=functools.partial(any_rank, info=parts.info),
            reduce=functools.partial(all_reduce_sum, info=parts.info),
        )
    finally:
        progress.close()


def _after_step(
    parts: Components, state: RunState, folder: RunFolder | None, stop: StopRequest
) -> Callable[[int], None]:
    """After every optimizer step: optional replica check, mid-epoch checkpoint, and the stop on SIGTERM."""
    run = parts.cfg.run

    def hook(batch_done: int) -> None:
        state.batch = batch_done
        step = parts.schedule.num_updates
        if run.check_sync_every and step % run.check_sync_every == 0:
            assert_replicas_in_sync(parts.model, parts.info, step)
        stopping = any_rank(stop.requested, parts.info)
        every = run.checkpoint_every_steps
        if stopping or (every and step % every == 0 and batch_done < parts.num_batches):
            checkpoint = state.checkpoint(parts)
            if folder is not None:
                folder.save_step(checkpoint)
        if stopping:
            _stopped(parts, stop, f"epoch {state.epoch + 1}, micro-batch {batch_done} of {parts.num_batches}")

    return hook


def _stopped(parts: Components, stop: StopRequest, where: str) -> None:
    """Report the stop after the checkpoint of the current step was saved, and end the run."""
    step, signal_name, last = parts.schedule.num_updates, stop.signal_name or "SIGTERM", parts.out_dir / "last.pt"
    log.warning("%s: saved %s at step %d (%s); continue with --resume auto", signal_name, last, step, where)
    raise RunTerminatedError(parts.out_dir, last, step, signal_name)


def _already_complete(parts: Components, state: RunState) -> dict[str, Any] | None:
    """A resumed run whose checkpoint has trained every epoch: nothing is trained or written; the summary it
    saved is returned (None if it has none: the run then only writes its summary). A checkpoint past ``--epochs``
    is refused."""
    done, epochs = state.epoch, parts.cfg.sched.epochs
    if done > epochs:
        raise ConfigError(
            "epochs",
            f"{state.resumed_from} has trained {done} epochs already, more than --epochs {epochs}; give --epochs "
            f"{done} or more to continue it, or start a new run",
        )
    path = parts.out_dir / "summary.json"
    if not path.is_file():
        return None
    log.info("%s has trained all %d epochs already: nothing to do (raise --epochs to train further)", path.parent, done)
    return json.loads(path.read_text())


def _warn_corrupt(corrupt: set[str]) -> None:
    if corrupt:
        shown = sorted(corrupt)
        listed = ", ".join(shown[:10]) + (f", ... ({len(shown) - 10} more)" if len(shown) > 10 else "")
        log.warning("skipped %d corrupt image file(s) (--skip-corrupt): %s", len(shown), listed)


# ----------------------------------------------------------------------------------------------------------------
# Process settings for the duration of a run
# ----------------------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _process_settings(threads: int | None, deterministic: bool) -> Iterator[None]:
    """CPU threads, (non-)deterministic algorithms and cuBLAS's workspace setting for the run; the previous
    settings (and environment) are restored after."""
    saved = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
        torch.backends.cudnn.benchmark,
        torch.backends.cudnn.deterministic,
    )
    set_workspace = deterministic and "CUBLAS_WORKSPACE_CONFIG" not in os.environ
    if set_workspace:
        os.environ["CUBLAS_WORKSPACE_CONFIG"] = ":4096:8"  # deterministic cuBLAS needs it (read at its first call)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = not deterministic
    torch.backends.cudnn.deterministic = deterministic or saved[3]
    try:
        with intra_op_threads(threads):
            yield
    finally:
        if set_workspace:
            os.environ.pop("CUBLAS_WORKSPACE_CONFIG", None)
        torch.use_deterministic_algorithms(saved[0], warn_only=saved[1])
        torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = saved[2], saved[3]


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
