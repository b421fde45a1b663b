"""Evaluation and prediction of a classifier over a loader: top-1 / top-5 accuracy and loss (paper Section 4.1,
Table 1), the one implementation that training, analysis and the dense tools share.

Nothing here needs a process group: :func:`evaluate` sums its counts in one tensor and hands it to an optional
``reduce`` hook (training passes the distributed all-reduce), so the same function serves one process and many.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator
from typing import Any, NamedTuple, Protocol

import torch
from timm.utils import accuracy
from torch import nn

from hyenapixel.errors import UserError

__all__ = [
    "TOP5_MIN_CLASSES",
    "EvalMetrics",
    "amp_dtype_for",
    "autocast",
    "batches",
    "evaluate",
    "format_accuracy",
    "model_device",
    "predict",
    "topk_from_probs",
]

#: Top-5 accuracy is reported for models with at least this many classes (with five or fewer every image is in
#: the top five, so it would always be 100 %).
TOP5_MIN_CLASSES = 6

EMPTY = "the evaluation data is empty: there is no image to evaluate"


class ProgressLike(Protocol):
    """Anything that counts done work: ``update(n)`` is called with the images of every batch."""

    def update(self, n: int) -> Any: ...


class EvalMetrics(NamedTuple):
    """Top-1 / top-5 accuracy (percent) over ``count`` images, and the mean loss where known. ``top5`` is None for
    models with at most five classes, where every image is in the top five."""

    top1: float
    top5: float | None
    count: int
    loss: float | None = None


def format_accuracy(value: float | None) -> str:
    """An accuracy in percent with two decimals, ``n/a`` where it is not reported (top-5 of five classes or
    fewer), as in the run summary."""
    return "n/a" if value is None else f"{value:.2f}"


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter (or buffer); CPU for a model without either."""
    for tensor in (*model.parameters(), *model.buffers()):
        return tensor.device
    return torch.device("cpu")


def amp_dtype_for(amp: bool | None, dtype: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of ``--amp`` / ``--amp-dtype`` (``"float16"`` or ``"bfloat16"``), training and evaluation
    alike; None: full precision. ``amp=None`` means on for CUDA and off for CPU."""
    if not (amp if amp is not None else device.type == "cuda"):
        return None
    return {"float16": torch.float16, "bfloat16": torch.bfloat16}[dtype]


def autocast(device: torch.device, amp_dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """``torch.autocast`` on ``device`` in ``amp_dtype``; full precision (no context) for None."""
    if amp_dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=amp_dtype)


def batches(loader: Iterable[Any]) -> Iterator[Any]:
    """Iterate ``loader``; its DataLoader workers are shut down as soon as the iteration ends, also when a batch
    raises (a worker's error re-raised with a traceback that references the iterator).

    Without this the workers live until the iterator is garbage collected; workers that ignore SIGTERM (training
    workers do, so that a preempted run can save) could then hold up the end of the process.
    """
    it = iter(loader)
    try:
        yield from it
    finally:
        shutdown = getattr(it, "_shutdown_workers", None)  # torch's multi-process iterator
        if shutdown is not None:
            shutdown()


@contextlib.contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: Iterable[tuple[torch.Tensor, torch.Tensor]],
    *,
    device: torch.device | None = None,
    amp_dtype: torch.dtype | None = None,
    channels_last: bool = False,
    progress: ProgressLike | None = None,
    reduce: Callable[[torch.Tensor], Any] | None = None,
) -> EvalMetrics:
    """Mean cross-entropy, top-1 and top-5 accuracy (percent) of ``model`` in eval mode over ``loader``.

    Args:
        model: A classifier; evaluated in eval mode, its own mode is restored afterwards.
        loader: Yields ``(images, targets)``.
        device: Where the batches go. None: the device of the model's parameters.
        amp_dtype: Autocast dtype, None: full precision.
        channels_last: Convert the images to channels-last.
        progress: ``progress.update(n)`` after every batch of ``n`` images.
        reduce: Sums the float64 tensor of counts in place over processes (the distributed all-reduce); None for
            one process. Hits are counted exactly, so a sharded evaluation gives the single-process numbers.

    Returns:
        :class:`EvalMetrics`; ``top5`` is None for models with at most five classes.

    Raises:
        UserError: the loader (all processes' loaders together) yielded no image.

    Shape:
        images: (B, C, H, W) -> logits (B, num_classes); targets: (B,) class indices.
    """
    device = model_device(model) if device is None else device
    # loss sum, top-1 hits, top-5 hits, count, images scored by a model with more than five classes
    totals = torch.zeros(5, dtype=torch.float64, device=device)
    with _eval_mode(model):
        for images, targets in batches(loader):
            images = images.to(device, non_blocking=True)
            targets = targets.to(device, non_blocking=True)
            if channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            with autocast(device, amp_dtype):
                logits = model(images)
            logits = logits.float()
            n = targets.shape[0]
            top1, top5 = accuracy(logits, targets, topk=(1, min(5, logits.shape[1])))
            scored5 = float(n * (logits.shape[1] >= TOP5_MIN_CLASSES))
            totals += torch.stack(
                [
                    nn.functional.cross_entropy(logits, targets, reduction="sum").double(),
                    top1.double() * n / 100.0,
                    top5.double() * n / 100.0,
                    torch.tensor(float(n), dtype=torch.float64, device=device),
                    torch.tensor(scored5, dtype=torch.float64, device=device),
                ]
            )
            if progress is not None:
                progress.update(n)
    if reduce is not None:
        reduce(totals)
    loss_sum, hits1, hits5, count, scored5 = totals.tolist()
    if not count:
        raise UserError(EMPTY)
    top5 = 100.0 * round(hits5) / count if scored5 else None
    return EvalMetrics(100.0 * round(hits1) / count, top5, int(count), loss_sum / count)


@torch.no_grad()
def predict(
    model: nn.Module,
    loader: Iterable[tuple[torch.Tensor, torch.Tensor]],
    *,
    device: torch.device | None = None,
    amp_dtype: torch.dtype | None = None,
    progress: ProgressLike | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Softmax probabilities and targets over a loader, in loader order (for ensembles: average, then
    :func:`topk_from_probs`). ``device`` None: the device of the model's parameters.

    Shape:
        -> probs (N, num_classes) float32 on CPU, targets (N,) int64 on CPU.
    """
    device = model_device(model) if device is None else device
    probs, labels = [], []
    with _eval_mode(model):
        for images, targets in batches(loader):
            with autocast(device, amp_dtype):
                logits = model(images.to(device, non_blocking=True))
            probs.append(logits.float().softmax(dim=-1).cpu())
            labels.append(targets.cpu())
            if progress is not None:
                progress.update(targets.shape[0])
    if not labels:
        raise UserError(EMPTY)
    return torch.cat(probs), torch.cat(labels)


def topk_from_probs(probs: torch.Tensor, targets: torch.Tensor) -> EvalMetrics:
    """Top-1 / top-5 (percent) of probabilities, e.g. an ensemble average; top-5 None for at most five classes.

    Shape:
        probs: (N, num_classes); targets: (N,).
    """
    top1, top5 = accuracy(probs, targets, topk=(1, min(5, probs.shape[1])))
    return EvalMetrics(float(top1), float(top5) if probs.shape[1] >= TOP5_MIN_CLASSES else None, int(targets.shape[0]))
