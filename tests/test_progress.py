"""Progress display: a tqdm bar on a terminal, plain log lines (loss, lr, images/s, ETA) otherwise."""

from __future__ import annotations

import io
import logging

import pytest

from hyenapixel import progress as progress_module
from hyenapixel.progress import Progress, format_seconds, progress_mode


def test_mode_resolution(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(progress_module.sys.stderr, "isatty", lambda: True, raising=False)
    assert progress_mode("auto", is_main=True) == "bar"
    monkeypatch.setattr(progress_module.sys.stderr, "isatty", lambda: False, raising=False)
    assert progress_mode("auto", is_main=True) == "log"
    assert progress_mode("bar", is_main=False) == "none"  # only rank 0 shows progress


def test_log_lines_show_loss_lr_speed_and_eta(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="hyenapixel")
    p = Progress(4, "epoch 1/3", mode="log", log_interval=2, run_remaining_steps=8)
    for _ in range(4):
        p.update(32, loss=0.5, lr=1e-3)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2
    assert all("epoch 1/3" in line and "loss 0.5" in line and "lr 0.001" in line for line in lines)
    assert all("img/s" in line and "eta" in line for line in lines)
    assert p.images == 128


def test_bar_uses_tqdm(monkeypatch: pytest.MonkeyPatch) -> None:
    stream = io.StringIO()
    monkeypatch.setattr(progress_module.sys, "stderr", stream)
    p = Progress(3, "epoch 2/3", mode="bar")
    for _ in range(3):
        p.update(8, loss=1.25, lr=2e-3)
    assert p.n == 3 and p.shown["loss"] == "1.25" and p.shown["lr"] == "0.002" and "img/s" in p.shown
    p.close()
    assert "epoch 2/3" in stream.getvalue() and "0/3" in stream.getvalue()  # tqdm drew the bar


def test_format_seconds() -> None:
    assert format_seconds(3725) == "1:02:05"
    assert format_seconds(-1) == "0:00:00"


def test_progress_mode_takes_the_analysis_functions_booleans(monkeypatch) -> None:
    """``progress=True`` / ``False`` of the analysis functions mean ``auto`` and ``none``."""
    monkeypatch.setattr(progress_module.sys.stderr, "isatty", lambda: False, raising=False)
    assert progress_mode(True) == progress_mode("auto") == "log"
    assert progress_mode(False) == "none" and progress_mode(True, is_main=False) == "none"
