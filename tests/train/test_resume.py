"""Never lose work: a run killed with SIGKILL right after a checkpoint and resumed with ``--resume auto`` ends,
in ``--deterministic`` mode, with bitwise the same weights and optimizer state as an uninterrupted run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from train_helpers import TINY_FLAGS

from hyenapixel.train.checkpoint import load_training_state

pytestmark = pytest.mark.slow

ARGS = [
    *TINY_FLAGS,
    "--epochs",
    "3",
    "--warmup-epochs",
    "1",
    "--train-samples",
    "192",
    "--val-samples",
    "16",
    "--batch-size",
    "16",
    "--drop-path",
    "0.1",
    "--checkpoint-every-steps",
    "5",
    "--deterministic",
    "--progress",
    "log",
    "--seed",
    "7",
]


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def _cmd(out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "hyenapixel", "train", *ARGS, "--output", str(out), *extra]


def _assert_same_state(a: dict, b: dict) -> None:
    assert a["step"] == b["step"] and a["epoch"] == b["epoch"]
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    for pa, pb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values()):
        assert torch.equal(pa["exp_avg"], pb["exp_avg"]) and torch.equal(pa["exp_avg_sq"], pb["exp_avg_sq"])


def test_sigkill_then_resume_equals_uninterrupted_run(tmp_path: Path) -> None:
    ref, cut = tmp_path / "uninterrupted", tmp_path / "interrupted"
    subprocess.run(_cmd(ref), check=True, env=_env(), capture_output=True, timeout=300)

    proc = subprocess.Popen(_cmd(cut), env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 240
    while not (cut / "last.pt").exists():  # the first checkpoint: step 5 of 36
        assert proc.poll() is None, proc.stderr.read().decode()
        assert time.monotonic() < deadline
        time.sleep(0.005)
    still_running = proc.poll() is None
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert still_running and proc.returncode == -signal.SIGKILL
    assert not (cut / "summary.json").exists()
    killed_at = load_training_state(cut / "last.pt")["step"]
    assert 0 < killed_at < 36

    resumed = subprocess.run(_cmd(cut, "--resume", "auto"), env=_env(), capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed from" in resumed.stderr and "step" in resumed.stderr
    _assert_same_state(load_training_state(ref / "last.pt"), load_training_state(cut / "last.pt"))
