"""One training epoch (the recipes of paper Section 4.1); evaluation is :func:`hyenapixel.models.evaluate`.

A plain function with explicit arguments and no file side effects; :func:`hyenapixel.train.fit.fit` calls it
and does the writing (on rank 0). Gradient accumulation skips the DDP all-reduce on every
micro-step but the last (``model.no_sync()``). A non-finite loss on any rank stops all ranks before the
optimizer step, so no checkpoint ever holds weights from a diverged step.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

import torch
from torch import nn

from hyenapixel.models.evaluation import autocast, batches
from hyenapixel.progress import Progress
from hyenapixel.train.distributed import DistInfo, all_reduce_sum, any_rank
from hyenapixel.train.errors import NonFiniteLossError
from hyenapixel.train.schedule import LRSchedule

__all__ = ["TrainStats", "amp_dtype_for", "train_one_epoch"]


class TrainStats(NamedTuple):
    """One epoch of training: mean loss over the micro-batches run (NaN if none) and images seen by all ranks."""

    train_loss: float
    images: float


def amp_dtype_for(amp: bool | None, dtype: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of ``--amp`` / ``--amp-dtype`` (training and evaluation alike); None: full precision.

    ``amp=None`` means on for CUDA and off for CPU.
    """
    if not (amp if amp is not None else device.type == "cuda"):
        return None
    return {"float16": torch.float16, "bfloat16": torch.bfloat16}[dtype]


def train_one_epoch(
    model: nn.Module,
    loader: Iterable[tuple[torch.Tensor, torch.Tensor]],
    optimizer: torch.optim.Optimizer,
    loss_fn: nn.Module,
    schedule: LRSchedule,
    *,
    info: DistInfo,
    epoch: int,
    num_batches: int,
    accum_steps: int = 1,
    start_batch: int = 0,
    mixup: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]] | None = None,
    scaler: torch.amp.GradScaler | None = None,
    amp_dtype: torch.dtype | None = None,
    ema: Any | None = None,
    clip_grad: float | None = None,
    channels_last: bool = False,
    progress: Progress | None = None,
    on_update: Callable[[int], None] | None = None,
) -> TrainStats:
    """Train over the micro-batches ``start_batch .. num_batches - 1`` of one epoch.

    Args:
        model: The model, DDP-wrapped when distributed.
        loader: Yields this rank's ``(images, targets)`` starting at micro-batch ``start_batch``.
        optimizer: Optimizer; its lr is set by ``schedule`` before every step.
        loss_fn: Training loss (soft targets when ``mixup`` is on).
        schedule: Learning-rate schedule; counts optimizer steps.
        info: This process's rank, world size and device.
        epoch: Epoch index (for messages).
        num_batches: Micro-batches in the epoch, a multiple of ``accum_steps``.
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

    Returns:
        :class:`TrainStats`.

    Shape:
        images: (B, C, H, W); targets: (B,) class indices.
    """
    model.train()
    unwrapped = model.module if hasattr(model, "module") else model
    device = info.device
    loss_sum = torch.zeros((), device=device)
    seen = 0
    optimizer.zero_grad(set_to_none=True)
    batch_idx = start_batch
    for images, targets in batches(loader):
        if batch_idx >= num_batches:
            break
        images = images.to(device, non_blocking=True)
        targets = targets.to(device, non_blocking=True)
        if channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        if mixup is not None:
            images, targets = mixup(images, targets)
        last_micro = (batch_idx + 1) % accum_steps == 0
        sync = contextlib.nullcontext() if (last_micro or not info.distributed) else model.no_sync()
        with sync:
            with autocast(device, amp_dtype):
                loss = loss_fn(model(images), targets)
            if any_rank(not bool(torch.isfinite(loss.detach())), info):
                raise NonFiniteLossError(
                    f"loss is {loss.item()} at epoch {epoch} micro-batch {batch_idx} (optimizer step "
                    f"{schedule.num_updates}, lr {optimizer.param_groups[0]['lr']:.3g}); the run stops before "
                    "this step, the last checkpoint is intact. Try a lower --lr, --clip-grad, or --no-amp."
                )
            scaled = loss / accum_steps
            (scaler.scale(scaled) if scaler is not None else scaled).backward()
        loss_sum += loss.detach()
        seen += images.shape[0] * info.world_size
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
            progress.update(images.shape[0] * info.world_size * accum_steps, loss=loss.item(), lr=lr)
        if on_update is not None:
            on_update(batch_idx)
    run = batch_idx - start_batch
    all_reduce_sum(loss_sum, info)
    mean = loss_sum.item() / max(run * info.world_size, 1)
    return TrainStats(mean if run else math.nan, float(seen))
