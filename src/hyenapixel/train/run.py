"""The training run (paper Section 4.1): :func:`build_run` checks the options and assembles data, model, optimizer,
schedule, loss, Mixup/CutMix and EMA into a :class:`Run`; :func:`restore` loads a saved training state into it.
:mod:`hyenapixel.train.fit` drives the run.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from timm.loss import LabelSmoothingCrossEntropy, SoftTargetCrossEntropy
from torch import nn

from hyenapixel.train.checkpoint import (
    capture_rng_state,
    find_resume_checkpoint,
    load_model_weights,
    load_training_state,
)
from hyenapixel.train.config import ConfigError, TrainConfig
from hyenapixel.train.datasets import build_data
from hyenapixel.train.distributed import DistInfo, broadcast_object
from hyenapixel.train.loaders import ResumableDistributedSampler, SeededSamples, batches_per_epoch, make_loader
from hyenapixel.train.loop import NonFiniteLossError
from hyenapixel.train.model import check_model_name, create_model, model_spec
from hyenapixel.train.optim import build_optimizer
from hyenapixel.train.schedule import LRSchedule, peak_lr

__all__ = ["Run", "build_run", "resolve_batching", "restore", "seed_all"]

log = logging.getLogger("hyenapixel")


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


def seed_all(seed: int) -> None:
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


def _amp_dtype(cfg: TrainConfig, device: torch.device) -> torch.dtype | None:
    amp = cfg.run.amp if cfg.run.amp is not None else device.type == "cuda"
    if not amp:
        return None
    return torch.float16 if cfg.run.amp_dtype == "float16" else torch.bfloat16


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
    seed_all(cfg.run.seed)  # model initialisation is the same on every rank and for every world size
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
