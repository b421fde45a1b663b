"""Never lose work: a run killed with SIGKILL right after a checkpoint, or stopped by SIGTERM (a scheduler's
preemption, which saves the current step first), and resumed with ``--resume auto`` ends, in ``--deterministic``
mode, with bitwise the same weights and optimizer state as an uninterrupted run. Ctrl-C prints the command that
continues the run."""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from train_helpers import TINY_FLAGS

from hyenapixel.models.weights import load_training_state

pytestmark = pytest.mark.slow

# 192 images / batch 16 = 12 steps per epoch, 36 in all
ARGS = [
    *TINY_FLAGS,
    *["--epochs", "3", "--warmup-epochs", "1", "--train-samples", "192", "--val-samples", "16", "--batch-size", "16"],
    *["--drop-path", "0.1", "--checkpoint-every-steps", "5", "--deterministic", "--progress", "log", "--seed", "7"],
]


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def _cmd(out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "hyenapixel", "train", *ARGS, "--output", str(out), *extra]


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The final training state of the uninterrupted run."""
    out = tmp_path_factory.mktemp("uninterrupted") / "run"
    subprocess.run(_cmd(out), check=True, env=_env(), capture_output=True, timeout=300)
    return load_training_state(out / "last.pt")


def _assert_same_state(a: dict, b: dict) -> None:
    assert a["step"] == b["step"] and a["epoch"] == b["epoch"]
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    for pa, pb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values()):
        assert torch.equal(pa["exp_avg"], pb["exp_avg"]) and torch.equal(pa["exp_avg_sq"], pb["exp_avg_sq"])


def _signal_after(proc: subprocess.Popen, progress: str, sig: signal.Signals) -> str:
    """Send ``sig`` once the progress line ``progress`` (e.g. ``epoch 1/3 [7/12]``) appears; return all stderr."""
    seen = []
    assert proc.stderr is not None
    for line in proc.stderr:
        seen.append(line)
        if progress in line:
            proc.send_signal(sig)
            break
    seen.append(proc.stderr.read())
    proc.wait(timeout=120)
    return "".join(seen)


def test_sigkill_then_resume_equals_uninterrupted_run(tmp_path: Path, reference: dict) -> None:
    cut = tmp_path / "interrupted"
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
    _assert_same_state(reference, load_training_state(cut / "last.pt"))


def test_sigterm_saves_the_current_step_and_the_printed_command_continues(tmp_path: Path, reference: dict) -> None:
    cut = tmp_path / "preempted"
    # no periodic checkpoints: whatever is saved mid-epoch is SIGTERM's doing
    cmd = _cmd(cut, "--checkpoint-every-steps", "0", "--log-interval", "1")
    proc = subprocess.Popen(cmd, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    err = _signal_after(proc, "epoch 2/3 [3/12]", signal.SIGTERM)
    assert proc.returncode == 143, err
    saved = re.search(r"SIGTERM: saved (\S+) at step (\d+)", err)
    assert saved and Path(saved.group(1)) == cut / "last.pt", err
    state = load_training_state(cut / "last.pt")
    assert state["step"] == int(saved.group(2)) >= 12 + 3  # the step of the signal, not the epoch-1 checkpoint
    assert state["epoch"] == 1 and 0 < state["batch_in_epoch"] < 12  # mid-epoch 2
    assert not (cut / "summary.json").exists()

    # the command printed after "continue with:" finishes the run exactly
    line = err.split("continue with:")[-1].strip().splitlines()[0]
    argv = shlex.split(line)
    assert argv[:3] == ["python", "-m", "hyenapixel"] and argv[-4:] == ["--output", str(cut), "--resume", "auto"]
    resumed = subprocess.run([sys.executable, *argv[1:]], env=_env(), capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    _assert_same_state(reference, load_training_state(cut / "last.pt"))


def test_ctrl_c_prints_the_resume_command(tmp_path: Path) -> None:
    cut = tmp_path / "stopped"
    proc = subprocess.Popen(
        _cmd(cut, "--log-interval", "1"),
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        # a shell without job control starts background jobs with SIGINT ignored, which the run would inherit
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    err = _signal_after(proc, "epoch 1/3 [7/12]", signal.SIGINT)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert f"interrupted (newest checkpoint {cut / 'last.pt'}); continue with:" in err
    command = shlex.split(err.split("continue with:")[-1].strip().splitlines()[0])
    assert command[-4:] == ["--output", str(cut), "--resume", "auto"] and command.count("--output") == 1
    assert load_training_state(cut / "last.pt")["step"] == 5  # the periodic checkpoint before Ctrl-C
