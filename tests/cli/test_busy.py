"""The busy-machine check of ``hyenapixel train``: measured CPU use, and the OpenMP wait policy it sets."""

from __future__ import annotations

import subprocess
import sys

from hyenapixel.cli.busy import busy_cores, wait_passively_if_busy


def test_passive_waiting_only_on_a_busy_machine_and_never_over_the_users_choice() -> None:
    env: dict[str, str] = {}
    assert wait_passively_if_busy(env, busy=0.2) is None and env == {}
    note = wait_passively_if_busy(env, busy=1.9)
    assert env == {"OMP_WAIT_POLICY": "PASSIVE"}
    assert note is not None and "1.9 of" in note and "OMP_WAIT_POLICY=ACTIVE" in note and "--threads 1" in note
    chosen = {"OMP_WAIT_POLICY": "ACTIVE"}
    assert wait_passively_if_busy(chosen, busy=2.0) is None and chosen == {"OMP_WAIT_POLICY": "ACTIVE"}


def test_busy_cores_sees_a_spinning_process() -> None:
    """A pure-Python loop keeps one core busy: the measured use counts it (whatever else runs)."""
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        measured = busy_cores(interval=0.5)
    finally:
        spinner.kill()
        spinner.wait()
    assert measured is not None and measured >= 0.6
