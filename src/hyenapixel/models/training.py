"""The training loop and the learning-rate schedule (paper Section 4.1), the one implementation that
``hyenapixel train`` and the dense run share; evaluation is :mod:`hyenapixel.models.evaluation`.

:func:`train_one_epoch` is a plain function with explicit arguments and no file side effects. Like
:func:`~hyenapixel.models.evaluate` it needs no process group: the distributed run hands it ``any_rank`` and
``reduce`` hooks. Gradient accumulation skips the DDP all-reduce on every micro-step but the last
(``model.no_sync()``). A non-finite loss on any rank stops all ranks before the optimizer step, so no checkpoint
ever holds weights from a diverged step. :class:`LRSchedule` is a closed form of the fractional epoch, so a resumed
run continues on exactly the same curve; its only state is the number of steps taken.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

import torch
from torch import nn

from hyenapixel.constants import SCHEDULES
from hyenapixel.errors import NonFiniteLossError
from hyenapixel.models.evaluation import autocast, batches

__all__ = ["LRSchedule", "TrainStats", "peak_lr", "train_one_epoch"]


def peak_lr(lr: float | None, base_lr: float, base_batch: int, global_batch: int) -> float:
    """Absolute ``lr`` if given, else linear scaling ``base_lr * global_batch / base_batch``."""
    if lr is not None:
        return float(lr)
    return base_lr * global_batch / base_batch


class LRSchedule:
    """``lr(t)`` for a fractional epoch ``t`` in ``[0, epochs]``: linear warmup, cosine decay, constant cooldown.

    * ``t < warmup``: ``warmup_lr + (peak - warmup_lr) * t / warmup``
    * cosine, ``warmup <= t < epochs - cooldown``:
      ``min_lr + (peak - min_lr) * (1 + cos(pi * (t - warmup) / (epochs - cooldown - warmup))) / 2``
    * constant, same interval: ``peak``
    * ``t >= epochs - cooldown``: ``min_lr``

    For the ``in1k`` recipe: 20 warmup epochs from 1e-6 to the peak, a cosine decay over the next 280 epochs to
    1e-5, then 10 cooldown epochs at 1e-5. Fine-tuning uses a constant lr.

    Args:
        peak: Peak learning rate (after warmup).
        epochs: Total epochs, cooldown included.
        warmup_epochs: Linear warmup length.
        warmup_lr: lr at ``t = 0``.
        min_lr: End of the cosine and the cooldown lr.
        cooldown_epochs: Epochs at ``min_lr`` at the end.
        kind: ``"cosine"`` or ``"constant"``.
        updates_per_epoch: Optimizer steps per epoch, to turn a step count into a fractional epoch (1: the
            lengths above count steps).
    """

    def __init__(
        self,
        peak: float,
        epochs: float,
        *,
        warmup_epochs: float = 0.0,
        warmup_lr: float = 0.0,
        min_lr: float = 0.0,
        cooldown_epochs: float = 0.0,
        kind: str = "cosine",
        updates_per_epoch: int = 1,
    ) -> None:
        if kind not in SCHEDULES:
            raise ValueError(f"unknown schedule {kind!r}")
        if updates_per_epoch < 1:
            raise ValueError("updates_per_epoch must be >= 1")
        self.peak = float(peak)
        self.epochs = float(epochs)
        self.warmup_epochs = float(warmup_epochs)
        self.warmup_lr = float(warmup_lr)
        self.min_lr = float(min_lr)
        self.cooldown_epochs = float(cooldown_epochs)
        self.kind = kind
        self.updates_per_epoch = int(updates_per_epoch)
        self.num_updates = 0

    def lr_at(self, t: float) -> float:
        """Learning rate at fractional epoch ``t``."""
        decay_end = self.epochs - self.cooldown_epochs
        if t < self.warmup_epochs:
            return self.warmup_lr + (self.peak - self.warmup_lr) * t / self.warmup_epochs
        if self.cooldown_epochs > 0 and t >= decay_end:
            return self.min_lr
        if self.kind == "constant":
            return self.peak
        span = decay_end - self.warmup_epochs
        if span <= 0:
            return self.min_lr
        progress = min(max((t - self.warmup_epochs) / span, 0.0), 1.0)
        return self.min_lr + 0.5 * (self.peak - self.min_lr) * (1.0 + math.cos(math.pi * progress))

    def epoch_of(self, num_updates: int) -> float:
        """Fractional epoch at which optimizer step ``num_updates`` (0-based) happens."""
        return num_updates / self.updates_per_epoch

    def apply(self, optimizer: torch.optim.Optimizer) -> float:
        """Set the lr of the next optimizer step in every param group (times its ``lr_scale``); return it."""
        lr = self.lr_at(self.epoch_of(self.num_updates))
        for group in optimizer.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)
        return lr

    def step(self) -> None:
        """Count one optimizer step."""
        self.num_updates += 1

    def state_dict(self) -> dict[str, Any]:
        return {"num_updates": self.num_updates, "updates_per_epoch": self.updates_per_epoch}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.num_updates = int(state["num_updates"])


class TrainStats(NamedTuple):
    """One epoch of training: mean loss over the micro-batches run (NaN if none) and images seen by all ranks."""

    train_loss: float
    images: float


def _to(batch: Any, device: torch.device) -> Any:
    """A tensor, or the tensors in a list, tuple or dict (a detector's images and targets), on ``device``."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, (list, tuple)):
        return type(batch)(_to(b, device) for b in batch)
    if isinstance(batch, dict):
        return {k: _to(v, device) for k, v in batch.items()}
    return batch


def train_one_epoch(
    model: nn.Module,
    loader: Iterable[tuple[Any, Any]],
    optimizer: torch.optim.Optimizer,
    loss_fn: Callable[[nn.Module, Any, Any], torch.Tensor],
    schedule: LRSchedule,
    *,
    device: torch.device,
    epoch: int,
    num_batches: int | None = None,
    accum_steps: int = 1,
    start_batch: int = 0,
    mixup: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]] | None = None,
    scaler: torch.amp.GradScaler | None = None,
    amp_dtype: torch.dtype | None = None,
    ema: Any | None = None,
    clip_grad: float | None = None,
    channels_last: bool = False,
    progress: Any | None = None,
    on_update: Callable[[int], None] | None = None,
    world_size: int = 1,
    any_rank: Callable[[bool], bool] | None = None,
    reduce: Callable[[torch.Tensor], Any] | None = None,
) -> TrainStats:
    """Train over the micro-batches ``start_batch .. num_batches - 1`` of one epoch.

    Args:
        model: The model, DDP-wrapped when distributed.
        loader: Yields this rank's ``(images, targets)`` starting at micro-batch ``start_batch``; either may be a
            tensor or a list / dict of tensors (a detector's).
        optimizer: Optimizer; its lr is set by ``schedule`` before every step.
        loss_fn: ``loss_fn(model, images, targets)``, the loss of one micro-batch (for a classifier
            ``criterion(model(images), targets)``; soft targets when ``mixup`` is on).
        schedule: Learning-rate schedule; counts optimizer steps.
        device: Where the batches go.
        epoch: Epoch index (for messages).
        num_batches: Micro-batches in the epoch, a multiple of ``accum_steps``; None: all the loader yields.
        accum_steps: Micro-batches per optimizer step.
        start_batch: First micro-batch (mid-epoch resume); a multiple of ``accum_steps``.
        mixup: timm ``Mixup`` or None.
        scaler: Grad scaler for float16 AMP, else None.
        amp_dtype: Autocast dtype or None.
        ema: ``timm.utils.ModelEmaV3`` or None, updated after every optimizer step.
        clip_grad: Max global gradient norm or None.
        channels_last: Convert inputs to channels-last.
        progress: Progress display (one update per optimizer step).
        on_update: Called with the number of micro-batches done after every optimizer step (checkpoints).
        world_size: Processes training together (1: no ``no_sync`` and images counted once).
        any_rank: Whether a flag is true on any rank (the distributed all-reduce); None for one process.
        reduce: Sums a tensor in place over processes; None for one process.

    Returns:
        :class:`TrainStats`.

    Shape:
        images: (B, C, H, W) (or a list of B images); targets: (B,) class indices (or what ``loss_fn`` takes).
    """
    model.train()
    unwrapped = model.module if hasattr(model, "module") else model
    loss_sum = torch.zeros((), device=device)
    seen = 0
    optimizer.zero_grad(set_to_none=True)
    batch_idx = start_batch
    for images, targets in batches(loader):
        if num_batches is not None and batch_idx >= num_batches:
            break
        images, targets = _to(images, device), _to(targets, device)
        if channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        if mixup is not None:
            images, targets = mixup(images, targets)
        last_micro = (batch_idx + 1) % accum_steps == 0
        sync = contextlib.nullcontext() if (last_micro or world_size == 1) else model.no_sync()
        with sync:
            with autocast(device, amp_dtype):
                loss = loss_fn(model, images, targets)
            diverged = not bool(torch.isfinite(loss.detach()))
            if any_rank(diverged) if any_rank is not None else diverged:
                raise NonFiniteLossError(
                    f"loss is {loss.item()} at epoch {epoch} micro-batch {batch_idx} (optimizer step "
                    f"{schedule.num_updates}, lr {optimizer.param_groups[0]['lr']:.3g}); the run stops before "
                    "this step, the last checkpoint is intact. Try a lower --lr, --clip-grad, or --no-amp."
                )
            scaled = loss / accum_steps
            (scaler.scale(scaled) if scaler is not None else scaled).backward()
        loss_sum += loss.detach()
        seen += len(images) * world_size
        batch_idx += 1
        if not last_micro:
            continue
        lr = schedule.apply(optimizer)
        if clip_grad is not None:
            if scaler is not None:
                scaler.unscale_(optimizer)
            nn.utils.clip_grad_norm_(model.parameters(), clip_grad)
        if scaler is not None:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        schedule.step()
        if ema is not None:
            ema.update(unwrapped, step=schedule.num_updates)
        if progress is not None:
            progress.update(len(images) * world_size * accum_steps, loss=loss.item(), lr=lr)
        if on_update is not None:
            on_update(batch_idx)
    run = batch_idx - start_batch
    if reduce is not None:
        reduce(loss_sum)
    mean = loss_sum.item() / max(run * world_size, 1)
    return TrainStats(mean if run else math.nan, float(seen))
