"""Where a training run stands (paper Section 4.1 runs are long and get preempted): epoch, position in the epoch,
best score and the last epoch's metrics. :class:`RunState` saves itself, together with the built parts' own
states (model, optimizer, schedule, scaler, EMA), as one training-state checkpoint, and restores itself from one.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hyenapixel.errors import error_lines
from hyenapixel.models.weights import is_training_state, load_training_state
from hyenapixel.train.build import Components
from hyenapixel.train.config import ConfigError
from hyenapixel.train.distributed import gather_objects
from hyenapixel.train.errors import NonFiniteLossError

__all__ = ["Best", "EpochMetrics", "RunState", "capture_rng_state", "find_resume_checkpoint", "restore_rng_state"]

log = logging.getLogger("hyenapixel")


# ----------------------------------------------------------------------------------------------------------------
# Random states as plain data
# ----------------------------------------------------------------------------------------------------------------


def capture_rng_state() -> dict[str, Any]:
    """Python, numpy, torch and (if initialised) cuda random states, as weights_only-safe plain data."""
    py_version, py_state, py_gauss = random.getstate()
    np_kind, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    state: dict[str, Any] = {
        "python": [py_version, torch.tensor(py_state, dtype=torch.int64), py_gauss],
        "numpy": [np_kind, torch.from_numpy(np_keys.astype(np.int64)), int(np_pos), int(np_has_gauss), float(np_gauss)],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng_state`."""
    py_version, py_state, py_gauss = state["python"]
    random.setstate((int(py_version), tuple(int(v) for v in py_state.tolist()), py_gauss))
    np_kind, np_keys, np_pos, np_has_gauss, np_gauss = state["numpy"]
    np.random.set_state((np_kind, np_keys.numpy().astype(np.uint32), np_pos, np_has_gauss, np_gauss))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        cuda_states = state["cuda"]
        if len(cuda_states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda_states)


# ----------------------------------------------------------------------------------------------------------------
# The checkpoint to resume from
# ----------------------------------------------------------------------------------------------------------------


def find_resume_checkpoint(output_dir: str | os.PathLike) -> Path | None:
    """The newest training state in a run directory (by the step stored inside, then mtime), or None.

    Candidates are only peeked at (memory-mapped), not read in full. Unreadable files (a ``last.pt`` cut short by a
    full disk or a killed copy) are no candidates; each one is named in a warning, so that continuing from an older
    checkpoint is never silent.
    """
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        return None
    best: tuple[int, float, Path] | None = None
    for path in output_dir.glob("*.pt"):
        try:
            state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except Exception as exc:  # unreadable: not a candidate, but said
            log.warning("--resume auto: skipping %s, which cannot be read (%s)", path, error_lines(exc, limit=120))
            continue
        if not is_training_state(state):
            continue
        key = (int(state.get("step", 0)), path.stat().st_mtime, path)
        if best is None or key[:2] > best[:2]:
            best = key
    return best[2] if best else None


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


@dataclass
class RunState:
    """Progress of a run: ``epoch`` epochs done and ``batch`` micro-batches of the next one (the optimizer step
    count lives in the schedule). ``rng`` is this rank's random state of a resumed checkpoint, to restore just
    before training continues."""

    epoch: int = 0
    batch: int = 0
    best: Best = field(default_factory=Best)
    last_metrics: EpochMetrics | None = None
    rng: dict[str, Any] | None = None
    resumed_from: Path | None = None

    def checkpoint(self, parts: Components) -> dict[str, Any]:
        """The training state at this position (collective: call on all ranks).

        Raises NonFiniteLossError instead if a weight is NaN or infinite, so that no such state is ever saved.
        """
        bad = [n for n, p in parts.model.named_parameters() if not bool(torch.isfinite(p).all())]
        if bad:
            raise NonFiniteLossError(
                f"weights became non-finite ({bad[0]}, ...) at step {parts.schedule.num_updates}; the run stops "
                "without saving, the last checkpoint is intact. Try a lower --lr or --clip-grad."
            )
        s = parts.settings
        return {
            "model": parts.model.state_dict(),
            "ema": parts.ema.module.state_dict() if parts.ema is not None else None,
            "optimizer": parts.optimizer.state_dict(),
            "schedule": parts.schedule.state_dict(),
            "scaler": parts.scaler.state_dict() if parts.scaler is not None else None,
            "epoch": self.epoch,
            "batch_in_epoch": self.batch,
            "step": parts.schedule.num_updates,
            "world_size": parts.info.world_size,
            "batch_size": parts.cfg.run.batch_size,
            "accum_steps": parts.batching.accum_steps,
            "best": {"top1": self.best.top1, "epoch": self.best.epoch},
            "rng": gather_objects(capture_rng_state(), parts.info),
            "config": parts.record,
            "model_spec": parts.spec,
            "class_names": list(s.classes),
            "num_classes": s.num_classes,
            "in_chans": s.in_chans,
            "input_size": [s.in_chans, s.input_size, s.input_size],
            "metrics": dataclasses.asdict(self.last_metrics) if self.last_metrics else {},
        }

    @classmethod
    def restore(cls, parts: Components, path: Path) -> RunState:
        """Load the training state of ``path`` into ``parts`` and return the position it holds."""
        state = load_training_state(path)
        try:
            parts.model.load_state_dict(state["model"])
            parts.optimizer.load_state_dict(state["optimizer"])
        except (ValueError, RuntimeError) as exc:
            raise ConfigError("resume", f"{path} does not fit this run's model or optimizer: {exc}") from None
        if parts.scaler is not None and state.get("scaler"):
            parts.scaler.load_state_dict(state["scaler"])
        if parts.ema is not None:
            if state.get("ema") is not None:
                parts.ema.module.load_state_dict(state["ema"])
            else:
                log.warning("checkpoint has no EMA weights; EMA restarts from the current weights")
        epoch, batch = int(state["epoch"]), int(state["batch_in_epoch"])
        same_layout = (
            state.get("world_size") == parts.info.world_size
            and state.get("batch_size") == parts.cfg.run.batch_size
            and state.get("accum_steps") == parts.batching.accum_steps
        )
        if batch and not same_layout:
            log.warning("batch layout changed since the checkpoint: epoch %d restarts from its start", epoch + 1)
            batch = 0
        parts.schedule.num_updates = epoch * parts.updates_per_epoch + batch // parts.batching.accum_steps
        log.info(
            "resumed from %s: epoch %d, micro-batch %d, step %d", path, epoch + 1, batch, parts.schedule.num_updates
        )
        best = state.get("best") or {}
        rngs = state.get("rng") or []
        return cls(
            epoch=epoch,
            batch=batch,
            best=Best(float(best.get("top1", -math.inf)), best.get("epoch")),
            last_metrics=EpochMetrics.from_dict(state.get("metrics") or {}),
            rng=rngs[parts.info.rank] if len(rngs) == parts.info.world_size else None,
            resumed_from=path,
        )
