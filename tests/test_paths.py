"""hyenapixel.paths: numbered output folders and the check that a file can be written."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from hyenapixel.paths import file_target_problem, held_files, numbered_folder, timestamp


def test_numbered_folder_skips_what_is_taken(tmp_path: Path) -> None:
    base = tmp_path / "run"
    assert numbered_folder(base) == base
    base.mkdir()
    (tmp_path / "run-2").write_text("a file takes the name too")
    assert numbered_folder(base) == tmp_path / "run-3"
    assert not (tmp_path / "run-3").exists()  # nothing is created
    # a caller's own rule: only non-empty folders are taken
    assert numbered_folder(base, lambda p: p.is_dir() and any(p.iterdir())) == base


def test_timestamp_is_sortable_local_time() -> None:
    assert re.fullmatch(r"\d{8}-\d{6}", timestamp())


def test_file_target_problem(tmp_path: Path) -> None:
    assert file_target_problem(tmp_path / "out.json", "results.json") is None
    assert file_target_problem(tmp_path / "new" / "deeper" / "out.json", "results.json") is None  # created later
    assert file_target_problem(tmp_path, "results.json") == (
        f"{tmp_path} is a folder; give a file name such as {tmp_path / 'results.json'}"
    )
    (tmp_path / "a.txt").write_text("x")
    assert file_target_problem(tmp_path / "a.txt" / "b" / "out.json", "x") == (
        f"cannot write {tmp_path / 'a.txt' / 'b' / 'out.json'}: {tmp_path / 'a.txt'} is a file, not a folder"
    )


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="needs file permissions that bind the user")
def test_file_target_problem_read_only_folder(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        assert file_target_problem(locked / "sub" / "out.json", "x") == (
            f"cannot write {locked / 'sub' / 'out.json'}: the folder {locked} is not writable"
        )
    finally:
        locked.chmod(0o700)


def test_held_files_matches_names_and_patterns_in_order(tmp_path: Path) -> None:
    for name in ("epoch_2.pt", "epoch_10.pt", "config.yaml", "notes.txt"):
        (tmp_path / name).write_text("x")
    (tmp_path / "last.pt").mkdir()  # a folder of that name is not a run file
    held = held_files(tmp_path, ["config.yaml", "last.pt", "epoch_*.pt", "config.yaml"])
    assert [p.name for p in held] == ["config.yaml", "epoch_10.pt", "epoch_2.pt"]
    assert held_files(tmp_path / "config.yaml", ["*"]) == [] and held_files(tmp_path / "missing", ["*"]) == []
