"""Errors of training and evaluation (paper Section 4.1 recipes): a nonsense option, and how a run ends early (a
diverged loss, Ctrl-C, a scheduler's SIGTERM).

Kept free of torch so that the command line can name these outcomes without importing the training stack.
"""

from __future__ import annotations

from pathlib import Path

from hyenapixel.configio import ConfigError, flag_name
from hyenapixel.errors import NonFiniteLossError

__all__ = ["ConfigError", "NonFiniteLossError", "RunInterrupted", "RunTerminatedError", "flag_name"]


class _StoppedRun:
    """Where an early-stopped run lives and the newest checkpoint that ``--resume auto`` will continue from."""

    out_dir: Path
    checkpoint: Path | None
    step: int | None

    def _set(self, out_dir: Path, checkpoint: Path | None, step: int | None) -> None:
        self.out_dir, self.checkpoint, self.step = Path(out_dir), checkpoint, step


class RunInterrupted(KeyboardInterrupt, _StoppedRun):
    """Ctrl-C during a run: nothing extra is saved; the run continues from its newest checkpoint."""

    def __init__(self, out_dir: Path, checkpoint: Path | None, step: int | None) -> None:
        super().__init__(f"interrupted; newest checkpoint: {checkpoint or 'none yet'}")
        self._set(out_dir, checkpoint, step)


class RunTerminatedError(Exception, _StoppedRun):
    """SIGTERM (e.g. Slurm preemption): the run saved ``last.pt`` at the current optimizer step and stopped."""

    def __init__(self, out_dir: Path, checkpoint: Path | None, step: int | None, signal_name: str = "SIGTERM") -> None:
        super().__init__(f"{signal_name}: saved {checkpoint} at step {step}")
        self.signal_name = signal_name
        self._set(out_dir, checkpoint, step)
