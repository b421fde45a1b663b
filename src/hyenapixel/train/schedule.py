"""Learning-rate schedule of the paper (Section 4.1): linear warmup, cosine decay, constant cooldown.

For the ``in1k`` recipe: 20 warmup epochs rising linearly from 1e-6 to the peak lr, a cosine decay over the next
280 epochs to 1e-5, then 10 cooldown epochs at 1e-5 (310 in all). Fine-tuning uses a constant lr. The lr is a
closed-form function of the fractional epoch and is set before every optimizer step, so a resumed run continues
on exactly the same curve; the only state is the number of steps taken.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from hyenapixel.train.config import SCHEDULES

__all__ = ["LRSchedule", "peak_lr"]


def peak_lr(lr: float | None, base_lr: float, base_batch: int, global_batch: int) -> float:
    """Absolute ``lr`` if given, else linear scaling ``base_lr * global_batch / base_batch``."""
    if lr is not None:
        return float(lr)
    return base_lr * global_batch / base_batch


class LRSchedule:
    """``lr(t)`` for a fractional epoch ``t`` in ``[0, epochs]``.

    * ``t < warmup``: ``warmup_lr + (peak - warmup_lr) * t / warmup``
    * cosine, ``warmup <= t < epochs - cooldown``:
      ``min_lr + (peak - min_lr) * (1 + cos(pi * (t - warmup) / (epochs - cooldown - warmup))) / 2``
    * constant, same interval: ``peak``
    * ``t >= epochs - cooldown``: ``min_lr``

    Args:
        peak: Peak learning rate (after warmup).
        epochs: Total epochs, cooldown included.
        warmup_epochs: Linear warmup length.
        warmup_lr: lr at ``t = 0``.
        min_lr: End of the cosine and the cooldown lr.
        cooldown_epochs: Epochs at ``min_lr`` at the end.
        kind: ``"cosine"`` or ``"constant"``.
        updates_per_epoch: Optimizer steps per epoch, to turn a step count into a fractional epoch.
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
