"""``scripts/setup.sh`` says what it does before each step (run against a stand-in python that records its calls)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

SETUP = Path(__file__).resolve().parents[2] / "scripts" / "setup.sh"

STUB = """#!/usr/bin/env bash
if [ "$1" = "-c" ]; then exit {import_status}; fi
echo "CALL $*"
"""


@pytest.mark.parametrize("torch_installed", [False, True])
def test_every_install_is_announced_first(tmp_path: Path, torch_installed: bool) -> None:
    (tmp_path / "scripts").mkdir()
    shutil.copy(SETUP, tmp_path / "scripts" / "setup.sh")
    python = tmp_path / ".venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text(STUB.format(import_status=0 if torch_installed else 1))
    python.chmod(0o755)
    proc = subprocess.run(["bash", str(tmp_path / "scripts" / "setup.sh")], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    calls = [i for i, line in enumerate(lines) if line.startswith("CALL ")]
    # (the end of the pip call, a word its announcement must hold)
    extras = "-e .[dev,analysis,dense,export]"  # every extra, so the README's set-up covers every test
    expected = [("--upgrade pip", "pip"), ("torch==2.14.1 torchvision==0.29.1", "torch"), (extras, "hyenapixel")]
    if torch_installed:
        expected.pop(1)
        assert "setup.sh: torch and torchvision are installed already" in lines
    assert len(calls) == len(expected)
    for i, (what, word) in zip(calls, expected):
        assert lines[i].startswith("CALL -m pip install") and lines[i].endswith(what), lines[i]
        assert lines[i - 1].startswith("setup.sh: ") and word in lines[i - 1], f"{lines[i]} is not announced"
    assert lines[0] == "setup.sh: reusing the virtual environment .venv" and lines[-1].startswith("setup.sh: done")


def test_failed_torch_install_stops_with_what_to_do(tmp_path: Path) -> None:
    (tmp_path / "scripts").mkdir()
    shutil.copy(SETUP, tmp_path / "scripts" / "setup.sh")
    python = tmp_path / ".venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    # torch is not importable, and its install fails as pip does on a full disk
    python.write_text(
        STUB.format(import_status=1).replace('echo "CALL', 'case "$*" in *torch==*) exit 1;; esac\necho "CALL')
    )
    python.chmod(0o755)
    proc = subprocess.run(["bash", str(tmp_path / "scripts" / "setup.sh")], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    lines = proc.stdout.splitlines()
    assert "setup.sh: error: installing torch failed" in proc.stdout and "free disk space" in proc.stdout
    assert not any("-e .[" in line for line in lines), "hyenapixel must not be installed after a failed torch install"
