"""One training epoch and one evaluation pass (the recipes of paper Section 4.1).

Both are plain functions with explicit arguments and no file side effects; :func:`hyenapixel.train.fit.fit`
composes them and does the writing (on rank 0). Gradient accumulation skips the DDP all-reduce on every
micro-step but the last (``model.no_sync()``). A non-finite loss on any rank stops all ranks before the
optimizer step, so no checkpoint ever holds weights from a diverged step.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

import torch
from timm.utils import accuracy
from torch import nn

from hyenapixel.train.distributed import DistInfo, all_reduce_sum, any_rank
from hyenapixel.train.errors import NonFiniteLossError
from hyenapixel.train.loaders import batches
from hyenapixel.train.progress import Progress
from hyenapixel.train.schedule import LRSchedule

__all__ = [
    "EvalMetrics",
    "NonFiniteLossError",
    "TrainStats",
    "amp_dtype_for",
    "evaluate",
    "format_accuracy",
    "predict",
    "topk_from_probs",
    "train_one_epoch",
]

#: Top-5 accuracy is reported for models with at least this many classes (with five or fewer every image is in
#: the top five, so it would always be 100 %).
TOP5_MIN_CLASSES = 6


def format_accuracy(value: float | None) -> str:
    """An accuracy in percent with two decimals, ``n/a`` where it is not reported (top-5 of five classes or
    fewer), as in the run summary."""
    return "n/a" if value is None else f"{value:.2f}"


class TrainStats(NamedTuple):
    """One epoch of training: mean loss over the micro-batches run (NaN if none) and images seen by all ranks."""

    train_loss: float
    images: float


class EvalMetrics(NamedTuple):
    """Top-1 / top-5 accuracy (percent) over ``count`` images, and the mean loss where known. ``top5`` is None for
    models with at most five classes, where every image is in the top five."""

    top1: float
    top5: float | None
    count: int
    loss: float | None = None


def amp_dtype_for(amp: bool | None, dtype: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of ``--amp`` / ``--amp-dtype`` (training and evaluation alike); None: full precision.

    ``amp=None`` means on for CUDA and off for CPU.
    """
    if not (amp if amp is not None else device.type == "cuda"):
        return None
    return {"float16": torch.float16, "bfloat16": torch.bfloat16}[dtype]


def _autocast(device: torch.device, amp_dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    if amp_dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=amp_dtype)


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
            with _autocast(device, amp_dtype):
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


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: Iterable[tuple[torch.Tensor, torch.Tensor]],
    *,
    info: DistInfo,
    amp_dtype: torch.dtype | None = None,
    channels_last: bool = False,
    progress: Progress | None = None,
) -> EvalMetrics:
    """Loss, top-1 and top-5 accuracy (percent) summed exactly over all ranks' shards; top-5 is None for models
    with at most five classes.

    Shape:
        images: (B, C, H, W) -> logits (B, num_classes); targets: (B,).
    """
    model.eval()
    device = info.device
    # loss sum, top-1 hits, top-5 hits, count, images scored by a model with more than five classes
    totals = torch.zeros(5, dtype=torch.float64, device=device)
    for images, targets in batches(loader):
        images = images.to(device, non_blocking=True)
        targets = targets.to(device, non_blocking=True)
        if channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        with _autocast(device, amp_dtype):
            logits = model(images)
        logits = logits.float()
        n = targets.shape[0]
        top1, top5 = accuracy(logits, targets, topk=(1, min(5, logits.shape[1])))
        totals += torch.stack(
            [
                nn.functional.cross_entropy(logits, targets, reduction="sum").double(),
                top1.double() * n / 100.0,
                top5.double() * n / 100.0,
                torch.tensor(float(n), dtype=torch.float64, device=device),
                torch.tensor(float(n * (logits.shape[1] >= TOP5_MIN_CLASSES)), dtype=torch.float64, device=device),
            ]
        )
        if progress is not None:
            progress.update(n * info.world_size)
    all_reduce_sum(totals, info)
    loss_sum, hits1, hits5, count, scored5 = totals.tolist()
    count = max(count, 1.0)
    top5 = 100.0 * round(hits5) / count if scored5 else None
    return EvalMetrics(100.0 * round(hits1) / count, top5, int(count), loss_sum / count)


@torch.no_grad()
def predict(
    model: nn.Module,
    loader: Iterable[tuple[torch.Tensor, torch.Tensor]],
    *,
    device: torch.device,
    amp_dtype: torch.dtype | None = None,
    progress: Progress | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Softmax probabilities and targets over a loader, in loader order (single process; for ensembles).

    Shape:
        -> probs (N, num_classes) float32 on CPU, targets (N,) int64 on CPU.
    """
    model.eval()
    probs, labels = [], []
    for images, targets in batches(loader):
        with _autocast(device, amp_dtype):
            logits = model(images.to(device, non_blocking=True))
        probs.append(logits.float().softmax(dim=-1).cpu())
        labels.append(targets.cpu())
        if progress is not None:
            progress.update(targets.shape[0])
    return torch.cat(probs), torch.cat(labels)


def topk_from_probs(probs: torch.Tensor, targets: torch.Tensor) -> EvalMetrics:
    """Top-1 / top-5 (percent) of probabilities, e.g. an ensemble average; top-5 None for at most five classes.

    Shape:
        probs: (N, num_classes); targets: (N,).
    """
    top1, top5 = accuracy(probs, targets, topk=(1, min(5, probs.shape[1])))
    return EvalMetrics(float(top1), float(top5) if probs.shape[1] >= TOP5_MIN_CLASSES else None, int(targets.shape[0]))
