"""Progress display for long loops: training and evaluation (paper Section 4.1) and the analysis tools.

A tqdm bar on an interactive terminal, plain periodic log lines otherwise (batch jobs, CI, pipes, log files), or
nothing (non-zero ranks, ``--progress none``). Both show the step's metrics, the rate and the ETA of the whole run
(the bar's own remaining time covers the current loop only). Torch-free, importable from every layer.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from typing import Any

__all__ = ["PROGRESS_MODES", "Progress", "format_seconds", "progress_mode"]

#: The values of every command's ``--progress``: auto (a bar on a terminal, else log lines), bar, log, none.
PROGRESS_MODES = ("auto", "bar", "log", "none")

log = logging.getLogger("hyenapixel")


def format_seconds(seconds: float) -> str:
    """``3725`` -> ``1:02:05``."""
    seconds = max(int(seconds), 0)
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}"


def progress_mode(requested: str | bool, is_main: bool = True) -> str:
    """Resolve ``auto`` (or ``True``) to ``bar`` on a terminal and ``log`` otherwise; ``False`` is ``none``, and
    non-main ranks show nothing."""
    if not is_main or requested is False:
        return "none"
    if requested is True:
        requested = "auto"
    if requested == "auto":
        return "bar" if sys.stderr.isatty() else "log"
    return requested


class Progress:
    """Progress over ``total`` steps of one loop.

    Args:
        total: Steps in this loop.
        desc: Prefix (``"epoch 3/10"``).
        mode: ``bar``, ``log`` or ``none``.
        log_interval: Steps between log lines in ``log`` mode.
        initial: Steps already done (mid-epoch resume).
        run_remaining_steps: Steps left in the whole run after this loop: the ETA covers the run (None: this loop).
        clock: Seconds as a float (``time.perf_counter``).
        unit: What :meth:`update` counts, for the rate (``img/s``; the analysis tools count batches, iterations ...).
    """

    def __init__(
        self,
        total: int,
        desc: str,
        mode: str = "log",
        log_interval: int = 20,
        initial: int = 0,
        run_remaining_steps: int | None = None,
        clock: Callable[[], float] = time.perf_counter,
        unit: str = "img",
    ) -> None:
        self.total = total
        self.desc = desc
        self.mode = mode
        self.log_interval = max(1, log_interval)
        self.n = initial
        self.start_n = initial
        self.run_remaining_steps = run_remaining_steps
        self.clock = clock
        self.unit = unit
        self.t0 = clock()
        self.images = 0
        self.shown: dict[str, str] = {}  # what the bar's postfix (or the log line) shows after the latest step
        self._bar = None
        if mode == "bar":
            from tqdm import tqdm

            self._bar = tqdm(total=total, initial=initial, desc=desc, dynamic_ncols=True, leave=False, file=sys.stderr)

    @property
    def elapsed(self) -> float:
        return self.clock() - self.t0

    def images_per_s(self) -> float:
        return self.images / max(self.elapsed, 1e-9)

    def eta(self) -> float:
        """Seconds left in this loop (and in the run, if ``run_remaining_steps`` was given)."""
        done = self.n - self.start_n
        if done <= 0:
            return float("nan")
        per_step = self.elapsed / done
        return per_step * (self.total - self.n + (self.run_remaining_steps or 0))

    def update(self, images: int, **metrics: Any) -> None:
        """One step done with ``images`` images; ``metrics`` (loss=..., lr=...) are shown."""
        self.n += 1
        self.images += images
        if self.mode == "none":
            return
        shown = {k: (f"{v:.4g}" if isinstance(v, float) else str(v)) for k, v in metrics.items()}
        shown[f"{self.unit}/s"] = f"{self.images_per_s():.1f}"
        eta = self.eta()
        eta_text = format_seconds(eta) if eta == eta else "?"
        if self._bar is not None:
            if self.run_remaining_steps is not None:
                shown["run eta"] = eta_text
            self.shown = shown
            self._bar.set_postfix(shown, refresh=False)
            self._bar.update(1)
            return
        self.shown = {**shown, "eta": eta_text}
        if self.n % self.log_interval == 0 or self.n == self.total:
            parts = " ".join(f"{k} {v}" for k, v in shown.items())
            log.info("%s [%d/%d] %s eta %s", self.desc, self.n, self.total, parts, eta_text)

    def set_total(self, total: int) -> None:
        """Change the number of steps of this loop (a loop that learns as it goes that it ends early)."""
        self.total = total
        if self._bar is not None:
            self._bar.total = total
            self._bar.refresh()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
