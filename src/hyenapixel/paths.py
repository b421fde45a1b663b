"""Where the tools write: numbered output folders and the check that a file can be written, shared by every layer.

Torch-free, like :mod:`hyenapixel.errors`. The helpers return a path or a problem; each layer words the error in
its own type (:class:`hyenapixel.errors.UserError` or a subclass).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

__all__ = ["file_target_problem", "folder_target_problem", "numbered_folder", "timestamp"]


def timestamp() -> str:
    """The local time as ``YYYYmmdd-HHMMSS``, the start of every default output folder's name."""
    return datetime.now().strftime("%Y%m%d-%H%M%S")


def numbered_folder(base: Path, taken: Callable[[Path], bool] = Path.exists) -> Path:
    """``base``, else the first of ``base-2``, ``base-3``, ... that ``taken`` does not claim (by default: that does
    not exist), so that a new run never lands in an earlier one's folder. Nothing is created."""
    out, n = base, 1
    while taken(out):
        n += 1
        out = base.with_name(f"{base.name}-{n}")
    return out


def folder_target_problem(path: str | os.PathLike[str]) -> str | None:
    """Why a folder cannot be used or created at ``path``, or None if it can: ``path`` is a file, or its nearest
    existing parent is a file or a folder without write permission. Nothing is created."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        return f"{path} is a file, not a folder"
    folder = path
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        return f"cannot create the folder {path}: {folder} is a file, not a folder"
    if not os.access(folder, os.W_OK | os.X_OK):
        return f"cannot write to the folder {path}: {folder} is not writable"
    return None


def file_target_problem(path: str | os.PathLike[str], example: str) -> str | None:
    """Why a file cannot be written at ``path``, or None if it can: ``path`` is a folder (the message suggests
    ``path / example``), or its nearest existing parent is a file or a folder without write permission. Missing
    parent folders are no problem: the writers create them."""
    path = Path(path)
    if path.is_dir():
        return f"{path} is a folder; give a file name such as {path / example}"
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        return f"cannot write {path}: {folder} is a file, not a folder"
    if not os.access(folder, os.W_OK):
        return f"cannot write {path}: the folder {folder} is not writable"
    return None
