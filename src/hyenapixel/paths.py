"""Where the tools write: numbered output folders, the checks that a file or folder can be written, and atomic file
writes (a crash never leaves half a file), shared by every layer.

Torch-free, like :mod:`hyenapixel.errors`. The helpers return a path or a problem; each layer words the error in
its own type (:class:`hyenapixel.errors.UserError` or a subclass).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterable
from datetime import datetime
from pathlib import Path
from typing import IO

__all__ = [
    "atomic_write",
    "atomic_write_text",
    "file_target_problem",
    "folder_target_problem",
    "held_files",
    "numbered_folder",
    "timestamp",
]


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


def held_files(folder: str | os.PathLike[str], patterns: Iterable[str]) -> list[Path]:
    """The files in ``folder`` that match ``patterns`` (file names or glob patterns such as ``epoch_*.pt``), in
    pattern order; none where ``folder`` is not a directory. What marks a folder as holding a run's output, and what
    replacing that output removes."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found: dict[Path, None] = {}
    for pattern in patterns:
        found.update(dict.fromkeys(sorted(folder.glob(pattern))))
    return [path for path in found if path.is_file()]


def _nearest_existing(path: Path) -> Path:
    """``path`` itself if it exists, else its nearest existing parent (what would hold the created folders)."""
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def folder_target_problem(path: str | os.PathLike[str]) -> str | None:
    """Why a folder cannot be used or created at ``path``, or None if it can: ``path`` is a file, or its nearest
    existing parent is a file or a folder without write permission. Nothing is created."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        return f"{path} is a file, not a folder"
    folder = _nearest_existing(path)
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
    folder = _nearest_existing(path.parent)
    if not folder.is_dir():
        return f"cannot write {path}: {folder} is a file, not a folder"
    if not os.access(folder, os.W_OK):
        return f"cannot write {path}: the folder {folder} is not writable"
    return None


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], None]) -> Path:
    """Write ``path`` atomically: ``write(fileobj)`` into a temp file in the same dir, fsync, ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; use the permissions of a normal file
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Atomic text file write (see :func:`atomic_write`)."""
    return atomic_write(path, lambda f: f.write(text.encode()))
