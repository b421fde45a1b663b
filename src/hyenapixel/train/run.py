"""The training run (paper Section 4.1): :func:`build_run` checks the options and assembles data, model, optimizer,
schedule, loss, Mixup/CutMix and EMA into a :class:`Run`; :func:`restore` loads a saved training state into it.
:mod:`hyenapixel.train.fit` drives the run.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import torch
import torch.distributed as dist
from timm.data import Mixup
from timm.loss import LabelSmoothingCrossEntropy, SoftTargetCrossEntropy
from timm.utils import ModelEmaV3
from torch import nn
from torch.utils.data import Dataset

from hyenapixel.paths import numbered_folder, timestamp
from hyenapixel.train.checkpoint import capture_rng_state, find_resume_checkpoint, load_training_state
from hyenapixel.train.config import ConfigError, TrainConfig
from hyenapixel.train.datasets import DataSettings, build_data, default_workers
from hyenapixel.train.distributed import DistInfo, broadcast_object
from hyenapixel.train.errors import NonFiniteLossError
from hyenapixel.train.loaders import ResumableDistributedSampler, SeededSamples, batches_per_epoch, make_loader
from hyenapixel.train.loop import amp_dtype_for
from hyenapixel.train.model import check_model_name, create_model, load_initial_weights, model_spec
from hyenapixel.train.optim import build_optimizer
from hyenapixel.train.schedule import LRSchedule, peak_lr

__all__ = [
    "RUN_FILES",
    "Batching",
    "Best",
    "EpochMetrics",
    "Run",
    "build_run",
    "holds_run",
    "resolve_batching",
    "restore",
    "seed_all",
]

#: The files a run writes into its directory (besides ``epoch_<N>.pt``): what --overwrite removes.
RUN_FILES = (
    "config.yaml",
    "train.log",
    "metrics.csv",
    "curves.png",
    "last.pt",
    "best.pt",
    "best.safetensors",
    "summary.json",
)

log = logging.getLogger("hyenapixel")


class Batching(NamedTuple):
    """How the global batch is made: ``world_size`` processes x ``--batch-size`` x ``accum_steps`` micro-steps."""

    world_size: int
    global_batch: int
    accum_steps: int
    lr: float


@dataclass
class EpochMetrics:
    """The record of one finished epoch: a row of ``metrics.csv`` (plus ``val_count``), kept in checkpoints."""

    epoch: int
    step: int
    lr: float
    train_loss: float
    val_loss: float | None
    val_top1: float
    val_top5: float | None
    val_count: int
    ema_top1: float | None = None
    ema_top5: float | None = None
    epoch_time_s: float = 0.0
    images_per_s: float = 0.0

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> EpochMetrics | None:
        """Inverse of ``dataclasses.asdict`` for the record stored in a checkpoint (None if there is none)."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in names}) if values else None


@dataclass
class Best:
    """The best validation top-1 so far and its epoch (1-based; None before the first evaluation)."""

    top1: float = -math.inf
    epoch: int | None = None


def resolve_batching(cfg: TrainConfig, world_size: int) -> Batching:
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
    return Batching(world_size, global_batch, global_batch // per_step, lr)


def _dataset_label(cfg: TrainConfig) -> str:
    """The data part of a default run name: ``balance``, ``pathfinder-easy`` or the folder's name."""
    if cfg.data.data is not None:
        return Path(cfg.data.data).resolve().name or "data"
    return cfg.data.builtin + ("" if cfg.data.difficulty == "default" else f"-{cfg.data.difficulty}")


def _default_output(cfg: TrainConfig) -> Path:
    """``runs/<time>-<model>-<dataset>``; a suffix ``-2``, ``-3``, ... if that folder exists already."""
    return numbered_folder(Path("runs") / f"{timestamp()}-{cfg.model.model}-{_dataset_label(cfg)}")


def holds_run(path: Path) -> bool:
    """Whether a directory holds files of a training run (finished or not)."""
    return path.is_dir() and (any((path / f).exists() for f in RUN_FILES) or any(path.glob("epoch_*.pt")))


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


@dataclass
class Run:
    """The components of one training run, built by :func:`build_run`, and its progress counters."""

    cfg: TrainConfig
    info: DistInfo
    out_dir: Path
    settings: DataSettings
    train_ds: Dataset
    val_ds: Dataset
    spec: dict[str, Any]
    model: nn.Module
    ddp_model: nn.Module
    optimizer: torch.optim.Optimizer
    schedule: LRSchedule
    loss_fn: nn.Module
    mixup: Mixup | None
    scaler: torch.amp.GradScaler | None
    ema: ModelEmaV3 | None
    amp_dtype: torch.dtype | None
    batching: Batching
    num_batches: int
    updates_per_epoch: int
    workers: int
    config_dict: dict[str, Any] = field(default_factory=dict)
    resume_path: Path | None = None
    start_epoch: int = 0
    start_batch: int = 0
    best: Best = field(default_factory=Best)
    last_metrics: EpochMetrics | None = None
    rng_state: dict[str, Any] | None = None  # this rank's random state of the resumed checkpoint

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
            "accum_steps": self.batching.accum_steps,
            "best": {"top1": self.best.top1, "epoch": self.best.epoch},
            "rng": _gather_rng(self.info),
            "config": self.config_dict,
            "model_spec": self.spec,
            "class_names": list(self.settings.classes),
            "num_classes": self.settings.num_classes,
            "in_chans": self.settings.in_chans,
            "input_size": [self.settings.in_chans, self.settings.input_size, self.settings.input_size],
            "metrics": dataclasses.asdict(self.last_metrics) if self.last_metrics else {},
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


def _output_problem(cfg: TrainConfig, output: Path, resume_path: Path | None) -> str | None:
    """Why ``output`` must not be written by this run (a finished or unfinished run is there), or None."""
    if output.exists() and not output.is_dir():
        return f"{output} is a file; --output names the run folder"
    if cfg.run.overwrite or cfg.run.resume == "auto" or not holds_run(output):
        return None
    if resume_path is not None and resume_path.parent.resolve() == output.resolve():
        return None
    return (
        f"{output} already holds a run; continue it with --resume auto, or choose another --output "
        "(or pass --overwrite to replace it)"
    )


def _resolve_output(cfg: TrainConfig, info: DistInfo) -> tuple[Path, Path | None]:
    """Run directory (rank 0 picks the default name and checks it) and the checkpoint to resume from, if any."""
    resume_path: Path | None = None
    output = cfg.run.output
    if cfg.run.resume and cfg.run.resume != "auto":
        resume_path = Path(cfg.run.resume)
        if not resume_path.is_file():
            raise ConfigError("resume", f"checkpoint not found: {resume_path}")
        output = output or str(resume_path.parent)
    if cfg.run.resume == "auto" and output is None:
        raise ConfigError("resume", "'auto' needs --output (the run directory to continue)")
    problem = None
    if info.is_main:
        chosen = Path(output) if output else _default_output(cfg)
        problem = _output_problem(cfg, chosen, resume_path)
        output = str(chosen)
    output, problem = broadcast_object((output, problem), info)
    if problem:
        raise ConfigError("output", problem)
    out_dir = Path(output)
    if cfg.run.resume == "auto":
        resume_path = find_resume_checkpoint(out_dir)
        log.info("--resume auto: %s", f"continuing from {resume_path}" if resume_path else "no checkpoint, fresh run")
    return out_dir, resume_path


def build_run(cfg: TrainConfig, info: DistInfo) -> Run:
    """Everything a run needs, from its config: check the options, build data (errors before any training), model,
    optimizer, schedule, loss and EMA, and restore the saved state when resuming."""
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
    settings, train_ds = data.settings, data.train
    if cfg.run.deterministic:
        train_ds = SeededSamples(train_ds, cfg.run.seed)
    workers = cfg.data.workers if cfg.data.workers is not None else default_workers(cfg.data.data)
    num_batches = batches_per_epoch(len(train_ds), info.world_size, cfg.run.batch_size)
    num_batches -= num_batches % batching.accum_steps
    if num_batches == 0:
        raise ConfigError(
            "global_batch", f"{batching.global_batch} images per step exceed the {len(train_ds)} training images"
        )

    spec = model_spec(cfg.model)
    model = create_model(
        spec,
        num_classes=settings.num_classes,
        in_chans=settings.in_chans,
        drop_path=cfg.model.drop_path,
        head_dropout=cfg.model.head_dropout,
        pretrained=cfg.model.pretrained,
    )
    if cfg.model.initial_checkpoint:
        load_initial_weights(model, cfg.model.initial_checkpoint)
    if cfg.model.grad_checkpointing:
        model.set_grad_checkpointing(True)
    model.to(info.device)
    if cfg.run.channels_last:
        model.to(memory_format=torch.channels_last)

    optimizer = build_optimizer(
        model,
        opt=cfg.optim.opt,
        lr=batching.lr,
        weight_decay=cfg.optim.weight_decay,
        wd_filters=cfg.optim.wd_filters,
        eps=cfg.optim.opt_eps,
        betas=cfg.optim.betas,
    )
    updates_per_epoch = num_batches // batching.accum_steps
    if cfg.sched.min_lr > batching.lr:
        log.warning(
            "--min-lr %g is above the peak learning rate %g (scaled to the global batch): the schedule rises "
            "instead of decaying; lower --min-lr",
            cfg.sched.min_lr,
            batching.lr,
        )
    schedule = LRSchedule(
        batching.lr,
        cfg.sched.epochs,
        warmup_epochs=cfg.sched.warmup_epochs,
        warmup_lr=cfg.sched.warmup_lr,
        min_lr=cfg.sched.min_lr,
        cooldown_epochs=cfg.sched.cooldown_epochs,
        kind=cfg.sched.sched,
        updates_per_epoch=updates_per_epoch,
    )
    amp_dtype = amp_dtype_for(cfg.run.amp, cfg.run.amp_dtype, info.device)
    ema = ModelEmaV3(model, decay=cfg.run.ema_decay) if cfg.run.ema else None
    mixup = hdata.build_mixup(
        cfg.aug.mixup, cfg.aug.cutmix, cfg.aug.mixup_switch_prob, cfg.aug.smoothing, settings.num_classes
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
        val_ds=data.val,
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
    if resume_path is not None:
        run.rng_state = restore(run, resume_path)
    return run


def _config_record(run: Run) -> dict[str, Any]:
    """The resolved config plus the derived values (``resolved``) as saved in config.yaml and checkpoints."""
    record = run.cfg.to_dict()
    record["run"]["output"] = str(run.out_dir)
    if record["data"].get("data") is not None:  # so that validate finds the data from any working directory
        record["data"]["data"] = str(Path(record["data"]["data"]).resolve())
    record["resolved"] = {
        **run.batching._asdict(),
        "updates_per_epoch": run.updates_per_epoch,
        "device": str(run.info.device),
        "amp_dtype": str(run.amp_dtype).replace("torch.", "") if run.amp_dtype else None,
        "workers": run.workers,
        "num_params": run.num_params,
        **run.settings.record(),
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
    best = state.get("best") or {}
    run.best = Best(float(best.get("top1", -math.inf)), best.get("epoch"))
    run.last_metrics = EpochMetrics.from_dict(state.get("metrics") or {})
    same_layout = (
        state.get("world_size") == run.info.world_size
        and state.get("batch_size") == run.cfg.run.batch_size
        and state.get("accum_steps") == run.batching.accum_steps
    )
    if run.start_batch and not same_layout:
        log.warning("batch layout changed since the checkpoint: epoch %d restarts from its start", run.start_epoch + 1)
        run.start_batch = 0
    run.schedule.num_updates = run.start_epoch * run.updates_per_epoch + run.start_batch // run.batching.accum_steps
    log.info(
        "resumed from %s: epoch %d, micro-batch %d, step %d",
        path,
        run.start_epoch + 1,
        run.start_batch,
        run.schedule.num_updates,
    )
    rngs = state.get("rng") or []
    return rngs[run.info.rank] if len(rngs) == run.info.world_size else None
