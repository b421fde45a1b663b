"""The built parts of a training run (paper Section 4.1): data, model, optimizer, schedule, loss, Mixup/CutMix, EMA.

:func:`build` turns a config into :class:`Components`, checking the options on the way (errors before any
training). The parts never change identity during a run; what moves (epoch, position, best score) is
:class:`hyenapixel.train.state.RunState`.

A model is described by a plain *spec* (name + keyword overrides) that is stored in every checkpoint and in the
metadata of ``best.safetensors``, so that ``hyenapixel validate`` (through :func:`hyenapixel.models.load_model`)
rebuilds the exact network of a run, including reduced ``dims`` or ``kernel_sizes``, from the file alone.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from timm.data import Mixup
from timm.loss import LabelSmoothingCrossEntropy, SoftTargetCrossEntropy
from timm.utils import ModelEmaV3
from torch import nn
from torch.utils.data import Dataset

from hyenapixel.configio import format_default
from hyenapixel.data.loaders import ResumableDistributedSampler, SeededSamples, batches_per_epoch, make_loader
from hyenapixel.data.settings import DataSettings, build_data, default_workers
from hyenapixel.errors import UserError
from hyenapixel.models import data_config, load_initial_weights, load_model
from hyenapixel.models.evaluation import amp_dtype_for
from hyenapixel.models.training import LRSchedule, peak_lr
from hyenapixel.models.weights import check_model_name
from hyenapixel.train.config import ARCH_FIELDS, ConfigError, ModelConfig, TrainConfig
from hyenapixel.train.distributed import DistInfo
from hyenapixel.train.errors import flag_name
from hyenapixel.train.optim import build_optimizer

__all__ = [
    "Batching",
    "Components",
    "build",
    "build_model",
    "check_model_flag",
    "model_spec",
    "resolve_batching",
    "seed_all",
]

log = logging.getLogger("hyenapixel")


class Batching(NamedTuple):
    """How the global batch is made: ``world_size`` processes x ``--batch-size`` x ``accum_steps`` micro-steps."""

    world_size: int
    global_batch: int
    accum_steps: int
    lr: float


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


def seed_all(seed: int) -> None:
    """Seed python, numpy and torch."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


# ----------------------------------------------------------------------------------------------------------------
# The model
# ----------------------------------------------------------------------------------------------------------------


def check_model_flag(name: str, flag: str = "model") -> None:
    """Raise :class:`ConfigError` naming ``--model`` and close matches if timm does not know ``name``."""
    try:
        check_model_name(name)
    except UserError as exc:
        raise ConfigError(flag, str(exc)) from None


def model_spec(cfg: ModelConfig) -> dict[str, Any]:
    """The architecture part of a model config as plain data: ``{"name": ..., "kwargs": {...}}``."""
    kwargs: dict[str, Any] = {key: list(getattr(cfg, key)) for key in ARCH_FIELDS if getattr(cfg, key) is not None}
    if cfg.res_scale_stages is not None:
        num_stages = len(cfg.depths or cfg.dims or ()) or 4
        kwargs["res_scale_init_values"] = [1.0 if i in cfg.res_scale_stages else None for i in range(num_stages)]
    return {"name": cfg.model, "kwargs": kwargs}


def build_model(
    spec: dict[str, Any],
    *,
    num_classes: int,
    in_chans: int = 3,
    drop_path: float = 0.0,
    head_dropout: float = 0.0,
    pretrained: bool = False,
) -> nn.Module:
    """The network of ``spec`` through :func:`hyenapixel.models.load_model` (hub weights with ``pretrained``);
    options it rejects become a :class:`ConfigError` naming the flags.

    ``head_dropout`` is timm's ``drop_rate``, which HyenaPixel models take as the dropout before the classifier.

    Shape:
        the model maps (B, in_chans, H, W) images to (B, num_classes) logits.
    """
    name = spec["name"]
    check_model_flag(name)
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in (spec.get("kwargs") or {}).items()}
    if drop_path:
        kwargs["drop_path_rate"] = drop_path
    if head_dropout:
        kwargs["drop_rate"] = head_dropout
    try:
        return load_model(name, pretrained=pretrained, num_classes=num_classes, in_chans=in_chans, **kwargs)
    except TypeError as exc:
        raise ConfigError("model", f"{name} does not accept these options ({exc})") from None
    except ValueError as exc:  # the architecture rejects the options (e.g. dims and depths of unequal length)
        if isinstance(exc, UserError):
            raise
        given = ", ".join(f"{flag_name(k)} {format_default(v)}" for k, v in (spec.get("kwargs") or {}).items())
        given = given or "its defaults"
        raise ConfigError("model", f"{name} cannot be built with {given}: {exc}") from None


# ----------------------------------------------------------------------------------------------------------------
# All parts of a run
# ----------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Components:
    """The parts of one training run, built once by :func:`build` from its config."""

    cfg: TrainConfig
    info: DistInfo
    out_dir: Path
    batching: Batching
    settings: DataSettings
    train_ds: Dataset
    val_ds: Dataset
    workers: int
    num_batches: int  # micro-batches per epoch and rank, a multiple of accum_steps
    spec: dict[str, Any]
    model: nn.Module
    ddp_model: nn.Module  # the model, wrapped in DistributedDataParallel when distributed
    optimizer: torch.optim.Optimizer
    schedule: LRSchedule
    loss_fn: nn.Module
    mixup: Mixup | None
    scaler: torch.amp.GradScaler | None
    ema: ModelEmaV3 | None
    amp_dtype: torch.dtype | None

    @property
    def updates_per_epoch(self) -> int:
        return self.num_batches // self.batching.accum_steps

    @property
    def num_params(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    def train_loader(self, epoch: int, sampler: ResumableDistributedSampler, start_batch: int) -> Any:
        """This rank's training loader for ``epoch``, starting at micro-batch ``start_batch``."""
        sampler.set_epoch(epoch)
        sampler.set_start(start_batch * self.cfg.run.batch_size)
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

    @cached_property
    def record(self) -> dict[str, Any]:
        """The resolved config plus the derived values (``resolved``), as saved in config.yaml and checkpoints."""
        record = self.cfg.to_dict()
        record["run"]["output"] = str(self.out_dir)
        if record["data"].get("data") is not None:  # so that validate finds the data from any working directory
            record["data"]["data"] = str(Path(record["data"]["data"]).resolve())
        record["resolved"] = {
            **self.batching._asdict(),
            "updates_per_epoch": self.updates_per_epoch,
            "device": str(self.info.device),
            "amp_dtype": str(self.amp_dtype).replace("torch.", "") if self.amp_dtype else None,
            "workers": self.workers,
            "num_params": self.num_params,
            **self.settings.record(),
            "model_spec": self.spec,
        }
        return record


def _loss(cfg: TrainConfig, mixup: Mixup | None) -> nn.Module:
    if mixup is not None:
        return SoftTargetCrossEntropy()  # Mixup/CutMix make soft, label-smoothed targets
    if cfg.aug.smoothing > 0:
        return LabelSmoothingCrossEntropy(cfg.aug.smoothing)
    return nn.CrossEntropyLoss()


def build(cfg: TrainConfig, info: DistInfo, batching: Batching, out_dir: Path) -> Components:
    """Every part of a run from its config: data first (bad data fails before any work), then model (initialised
    from ``--seed``, the same on every rank), optimizer, schedule, loss, Mixup/CutMix and EMA."""
    import hyenapixel.data as hdata

    seed_all(cfg.run.seed)  # model initialisation is the same on every rank and for every world size
    data = build_data(
        cfg.data.data,
        defaults=data_config(cfg.model.model),
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
    num_batches = batches_per_epoch(len(train_ds), info.world_size, cfg.run.batch_size)
    num_batches -= num_batches % batching.accum_steps
    if num_batches == 0:
        raise ConfigError(
            "global_batch", f"{batching.global_batch} images per step exceed the {len(train_ds)} training images"
        )

    spec = model_spec(cfg.model)
    model = build_model(
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
        updates_per_epoch=num_batches // batching.accum_steps,
    )
    amp_dtype = amp_dtype_for(cfg.run.amp, cfg.run.amp_dtype, info.device)
    ema = ModelEmaV3(model, decay=cfg.run.ema_decay) if cfg.run.ema else None
    mixup = hdata.build_mixup(
        cfg.aug.mixup, cfg.aug.cutmix, cfg.aug.mixup_switch_prob, cfg.aug.smoothing, settings.num_classes
    )
    ddp_model: nn.Module = model
    if info.distributed:
        ddp_model = nn.parallel.DistributedDataParallel(
            model, device_ids=[info.device.index] if info.device.type == "cuda" else None
        )
    return Components(
        cfg=cfg,
        info=info,
        out_dir=out_dir,
        batching=batching,
        settings=settings,
        train_ds=train_ds,
        val_ds=data.val,
        workers=cfg.data.workers if cfg.data.workers is not None else default_workers(cfg.data.data),
        num_batches=num_batches,
        spec=spec,
        model=model,
        ddp_model=ddp_model,
        optimizer=optimizer,
        schedule=schedule,
        loss_fn=_loss(cfg, mixup),
        mixup=mixup,
        scaler=torch.amp.GradScaler(info.device.type) if amp_dtype == torch.float16 else None,
        ema=ema,
        amp_dtype=amp_dtype,
    )
