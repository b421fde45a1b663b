"""``fit(cfg)``: a complete, resumable, optionally distributed training run (paper Section 4.1).

``fit`` composes the pieces: datasets and transforms from :mod:`hyenapixel.data`, the model from timm, the
optimizer from :mod:`hyenapixel.train.optim`, the closed-form schedule, timm's losses, Mixup/CutMix and EMA, and
the loop functions of :mod:`hyenapixel.train.loop`. Only rank 0 writes files:

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
import math
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import yaml
from timm.loss import LabelSmoothingCrossEntropy, SoftTargetCrossEntropy
from torch import nn

from hyenapixel.train.checkpoint import (
    atomic_write_text,
    capture_rng_state,
    find_resume_checkpoint,
    load_model_weights,
    load_training_state,
    restore_rng_state,
    save_safetensors,
    save_training_state,
)
from hyenapixel.train.config import ConfigError, TrainConfig
from hyenapixel.train.datasets import build_data
from hyenapixel.train.distributed import (
    DistInfo,
    assert_replicas_in_sync,
    broadcast_object,
    cleanup_distributed,
    setup_distributed,
)
from hyenapixel.train.loaders import (
    CorruptFileReporter,
    ResumableDistributedSampler,
    SeededSamples,
    ShardSampler,
    batches_per_epoch,
    make_loader,
)
from hyenapixel.train.loop import NonFiniteLossError, evaluate, train_one_epoch
from hyenapixel.train.model import check_model_name, create_model, model_spec
from hyenapixel.train.optim import build_optimizer
from hyenapixel.train.plots import plot_training_curves
from hyenapixel.train.progress import Progress, format_seconds, progress_mode
from hyenapixel.train.schedule import LRSchedule, peak_lr

__all__ = ["METRIC_FIELDS", "Run", "build_run", "fit", "resolve_batching", "restore"]

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
# Set-up helpers
# ----------------------------------------------------------------------------------------------------------------


def resolve_batching(cfg: TrainConfig, world_size: int) -> dict[str, Any]:
    """Global batch, gradient-accumulation steps and peak lr for ``world_size`` processes.

    ``accum = global_batch / (batch_size * world_size)`` must be a whole number. The peak lr is ``--lr`` if given,
    else ``--base-lr`` scaled linearly from ``--base-batch`` to the global batch.
    """
    per_step = cfg.run.batch_size * world_size
    global_batch = cfg.run.global_batch or per_step
    if global_batch % per_step:
        raise ConfigError(
            "global_batch",
            f"{global_batch} is not divisible by --batch-size {cfg.run.batch_size} x {world_size} processes "
            f"= {per_step}; choose a --batch-size that divides {global_batch // world_size}",
        )
    lr = peak_lr(cfg.optim.lr, cfg.optim.base_lr, cfg.optim.base_batch, global_batch)
    return {"world_size": world_size, "global_batch": global_batch, "accum_steps": global_batch // per_step, "lr": lr}


def _default_output(model: str) -> str:
    return os.path.join("runs", f"{datetime.now().strftime('%Y%m%d-%H%M%S')}-{model}")


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


def _seed_all(seed: int) -> None:
    import random

    import numpy as np

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _gather_rng(info: DistInfo) -> list[dict[str, Any]]:
    state = capture_rng_state()
    if not info.distributed:
        return [state]
    states: list[Any] = [None] * info.world_size
    dist.all_gather_object(states, state)
    return states


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


def _amp_dtype(cfg: TrainConfig, device: torch.device) -> torch.dtype | None:
    amp = cfg.run.amp if cfg.run.amp is not None else device.type == "cuda"
    if not amp:
        return None
    return torch.float16 if cfg.run.amp_dtype == "float16" else torch.bfloat16


# ----------------------------------------------------------------------------------------------------------------
# The run: everything fit() composes
# ----------------------------------------------------------------------------------------------------------------


@dataclass
class Run:
    """The components of one training run, built by :func:`build_run`, and its progress counters."""

    cfg: TrainConfig
    info: DistInfo
    out_dir: Path
    settings: dict[str, Any]
    train_ds: Any
    val_ds: Any
    spec: dict[str, Any]
    model: nn.Module
    ddp_model: nn.Module
    optimizer: torch.optim.Optimizer
    schedule: LRSchedule
    loss_fn: nn.Module
    mixup: Any
    scaler: torch.amp.GradScaler | None
    ema: Any
    amp_dtype: torch.dtype | None
    batching: dict[str, Any]
    num_batches: int
    updates_per_epoch: int
    workers: int
    config_dict: dict[str, Any] = field(default_factory=dict)
    resume_path: Path | None = None
    start_epoch: int = 0
    start_batch: int = 0
    best: dict[str, Any] = field(default_factory=lambda: {"top1": -math.inf, "epoch": None})
    last_metrics: dict[str, Any] = field(default_factory=dict)

    @property
    def num_params(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    def state(self, epoch: int, batch_in_epoch: int) -> dict[str, Any]:
        """The training state after ``batch_in_epoch`` micro-batches of ``epoch`` (collective: call on all ranks).

        Raises NonFiniteLossError instead if a weight is NaN or infinite, so that no such state is ever saved.
        """
        bad = [n for n, p in self.model.named_parameters() if not bool(torch.isfinite(p).all())]
        if bad:
            raise NonFiniteLossError(
                f"weights became non-finite ({bad[0]}, ...) at step {self.schedule.num_updates}; the run stops "
                "without saving, the last checkpoint is intact. Try a lower --lr or --clip-grad."
            )
        return {
            "model": self.model.state_dict(),
            "ema": self.ema.module.state_dict() if self.ema is not None else None,
            "optimizer": self.optimizer.state_dict(),
            "schedule": self.schedule.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "epoch": epoch,
            "batch_in_epoch": batch_in_epoch,
            "step": self.schedule.num_updates,
            "world_size": self.info.world_size,
            "batch_size": self.cfg.run.batch_size,
            "accum_steps": self.batching["accum_steps"],
            "best": dict(self.best),
            "rng": _gather_rng(self.info),
            "config": self.config_dict,
            "model_spec": self.spec,
            "class_names": self.settings["classes"],
            "num_classes": self.settings["num_classes"],
            "in_chans": self.settings["in_chans"],
            "input_size": self.settings["input_size"],
            "metrics": dict(self.last_metrics),
        }

    def loader(self, epoch: int, sampler: ResumableDistributedSampler) -> Any:
        """This rank's training loader for ``epoch``, starting at ``self.start_batch``."""
        sampler.set_epoch(epoch)
        sampler.set_start(self.start_batch * self.cfg.run.batch_size)
        if isinstance(self.train_ds, SeededSamples):
            self.train_ds.set_epoch(epoch)
        return make_loader(
            self.train_ds,
            sampler,
            batch_size=self.cfg.run.batch_size,
            workers=self.workers,
            drop_last=True,
            pin_memory=self.info.device.type == "cuda",
            seed=self.cfg.run.seed * 100_003 + epoch,
        )


def _resolve_output(cfg: TrainConfig, info: DistInfo) -> tuple[Path, Path | None]:
    """Run directory (rank 0 picks the default name) and the checkpoint to resume from, if any."""
    resume_path: Path | None = None
    output = cfg.run.output
    if cfg.run.resume and cfg.run.resume != "auto":
        resume_path = Path(cfg.run.resume)
        if not resume_path.is_file():
            raise ConfigError("resume", f"checkpoint not found: {resume_path}")
        output = output or str(resume_path.parent)
    if cfg.run.resume == "auto" and output is None:
        raise ConfigError("resume", "'auto' needs --output (the run directory to continue)")
    out_dir = Path(broadcast_object(output or _default_output(cfg.model.model), info))
    if cfg.run.resume == "auto":
        resume_path = find_resume_checkpoint(out_dir)
        log.info("--resume auto: %s", f"continuing from {resume_path}" if resume_path else "no checkpoint, fresh run")
    return out_dir, resume_path


def build_run(cfg: TrainConfig, info: DistInfo) -> Run:
    """Check the options, build data (errors before any training), model, optimizer, schedule, loss and EMA."""
    import hyenapixel.data as hdata

    check_model_name(cfg.model.model)
    batching = resolve_batching(cfg, info.world_size)
    _seed_all(cfg.run.seed)  # model initialisation is the same on every rank and for every world size
    out_dir, resume_path = _resolve_output(cfg, info)

    data = build_data(
        cfg.data.data,
        model_name=cfg.model.model,
        input_size=cfg.data.input_size,
        crop_pct=cfg.data.crop_pct,
        interpolation=cfg.data.interpolation,
        mean=cfg.data.mean,
        std=cfg.data.std,
        train_samples=cfg.data.train_samples,
        val_samples=cfg.data.val_samples,
        seed=cfg.run.seed,
        skip_corrupt=cfg.data.skip_corrupt,
        aug=cfg.aug,
        builtin=cfg.data.builtin,
        difficulty=cfg.data.difficulty,
    )
    settings, train_ds = data["settings"], data["train"]
    if cfg.run.deterministic:
        train_ds = SeededSamples(train_ds, cfg.run.seed)
    workers = cfg.data.workers
    if workers is None:
        workers = 0 if cfg.data.data is None else min(8, os.cpu_count() or 1)
    num_batches = batches_per_epoch(len(train_ds), info.world_size, cfg.run.batch_size)
    num_batches -= num_batches % batching["accum_steps"]
    if num_batches == 0:
        raise ConfigError(
            "global_batch", f"{batching['global_batch']} images per step exceed the {len(train_ds)} training images"
        )

    spec = model_spec(cfg.model)
    model = create_model(
        spec,
        num_classes=settings["num_classes"],
        in_chans=settings["in_chans"],
        drop_path=cfg.model.drop_path,
        head_dropout=cfg.model.head_dropout,
        pretrained=cfg.model.pretrained,
    )
    if cfg.model.initial_checkpoint:
        try:
            load_model_weights(model, cfg.model.initial_checkpoint, new_classifier_ok=True)
        except (ValueError, RuntimeError) as exc:
            raise ConfigError("initial_checkpoint", str(exc)) from None
    if cfg.model.grad_checkpointing:
        model.set_grad_checkpointing(True)
    model.to(info.device)
    if cfg.run.channels_last:
        model.to(memory_format=torch.channels_last)

    optimizer = build_optimizer(
        model,
        opt=cfg.optim.opt,
        lr=batching["lr"],
        weight_decay=cfg.optim.weight_decay,
        wd_filters=cfg.optim.wd_filters,
        eps=cfg.optim.opt_eps,
        betas=cfg.optim.betas,
    )
    updates_per_epoch = num_batches // batching["accum_steps"]
    schedule = LRSchedule(
        batching["lr"],
        cfg.sched.epochs,
        warmup_epochs=cfg.sched.warmup_epochs,
        warmup_lr=cfg.sched.warmup_lr,
        min_lr=cfg.sched.min_lr,
        cooldown_epochs=cfg.sched.cooldown_epochs,
        kind=cfg.sched.sched,
        updates_per_epoch=updates_per_epoch,
    )
    amp_dtype = _amp_dtype(cfg, info.device)
    ema = None
    if cfg.run.ema:
        from timm.utils import ModelEmaV3

        ema = ModelEmaV3(model, decay=cfg.run.ema_decay)
    mixup = hdata.build_mixup(
        cfg.aug.mixup, cfg.aug.cutmix, cfg.aug.mixup_switch_prob, cfg.aug.smoothing, settings["num_classes"]
    )
    if mixup is not None:
        loss_fn: nn.Module = SoftTargetCrossEntropy()  # Mixup/CutMix make soft, label-smoothed targets
    elif cfg.aug.smoothing > 0:
        loss_fn = LabelSmoothingCrossEntropy(cfg.aug.smoothing)
    else:
        loss_fn = nn.CrossEntropyLoss()
    ddp_model: nn.Module = model
    if info.distributed:
        ddp_model = nn.parallel.DistributedDataParallel(
            model, device_ids=[info.device.index] if info.device.type == "cuda" else None
        )
    run = Run(
        cfg=cfg,
        info=info,
        out_dir=out_dir,
        settings=settings,
        train_ds=train_ds,
        val_ds=data["val"],
        spec=spec,
        model=model,
        ddp_model=ddp_model,
        optimizer=optimizer,
        schedule=schedule,
        loss_fn=loss_fn,
        mixup=mixup,
        scaler=torch.amp.GradScaler(info.device.type) if amp_dtype == torch.float16 else None,
        ema=ema,
        amp_dtype=amp_dtype,
        batching=batching,
        num_batches=num_batches,
        updates_per_epoch=updates_per_epoch,
        workers=workers,
        resume_path=resume_path,
    )
    run.config_dict = _config_record(run)
    return run


def _config_record(run: Run) -> dict[str, Any]:
    """The resolved config plus the derived values (``resolved``) as saved in config.yaml and checkpoints."""
    record = run.cfg.to_dict()
    record["run"]["output"] = str(run.out_dir)
    record["resolved"] = {
        **run.batching,
        "updates_per_epoch": run.updates_per_epoch,
        "device": str(run.info.device),
        "amp_dtype": str(run.amp_dtype).replace("torch.", "") if run.amp_dtype else None,
        "workers": run.workers,
        "num_params": run.num_params,
        **{k: (list(v) if isinstance(v, tuple) else v) for k, v in run.settings.items() if k != "classes"},
        "model_spec": run.spec,
    }
    return record


def restore(run: Run, path: Path) -> dict[str, Any] | None:
    """Load a training state into ``run``; return this rank's random state to restore just before training."""
    state = load_training_state(path)
    try:
        run.model.load_state_dict(state["model"])
        run.optimizer.load_state_dict(state["optimizer"])
    except (ValueError, RuntimeError) as exc:
        raise ConfigError("resume", f"{path} does not fit this run's model or optimizer: {exc}") from None
    if run.scaler is not None and state.get("scaler"):
        run.scaler.load_state_dict(state["scaler"])
    if run.ema is not None:
        if state.get("ema") is not None:
            run.ema.module.load_state_dict(state["ema"])
        else:
            log.warning("checkpoint has no EMA weights; EMA restarts from the current weights")
    run.start_epoch, run.start_batch = int(state["epoch"]), int(state["batch_in_epoch"])
    run.best = dict(state.get("best") or run.best)
    run.last_metrics = dict(state.get("metrics") or {})
    same_layout = (
        state.get("world_size") == run.info.world_size
        and state.get("batch_size") == run.cfg.run.batch_size
        and state.get("accum_steps") == run.batching["accum_steps"]
    )
    if run.start_batch and not same_layout:
        log.warning("batch layout changed since the checkpoint: epoch %d restarts from its start", run.start_epoch + 1)
        run.start_batch = 0
    run.schedule.num_updates = run.start_epoch * run.updates_per_epoch + run.start_batch // run.batching["accum_steps"]
    log.info(
        "resumed from %s: epoch %d, micro-batch %d, step %d",
        path,
        run.start_epoch + 1,
        run.start_batch,
        run.schedule.num_updates,
    )
    rngs = state.get("rng") or []
    return rngs[run.info.rank] if len(rngs) == run.info.world_size else None


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
            _seed_all(cfg.run.seed + info.rank)  # dropout and drop path differ per rank
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
