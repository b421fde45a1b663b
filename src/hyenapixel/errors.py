"""Errors that a user's input causes, shared by every layer of the package.

The console script prints the message of a :class:`UserError` as one line and exits with status 2; the message
therefore names what is wrong (a path, a flag, a shape) and, where it can, what to change.
"""

from __future__ import annotations

__all__ = ["NonFiniteLossError", "UserError", "error_lines", "shorten"]


class UserError(Exception):
    """Bad input (an option, a file, a model name, a tensor shape) rather than a bug; the message says what to fix."""


class NonFiniteLossError(RuntimeError):
    """The training loss (or a weight) became NaN or infinite; the last checkpoint is left intact."""


def error_lines(exc: BaseException, count: int = 1, limit: int = 200) -> str:
    """The first ``count`` non-empty lines of another library's error, joined with "; " and :func:`shorten`-ed to
    ``limit`` characters, for a one-line message (its type's name if it has no text)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return shorten("; ".join(lines[:count]), limit) if lines else type(exc).__name__


def shorten(line: str, limit: int = 200) -> str:
    """``line`` up to ``limit`` characters: whole sentences where they fit, else cut with an ellipsis."""
    if len(line) <= limit:
        return line
    end = line.rfind(". ", 0, limit)
    return line[: end + 1] if end > 0 else line[: limit - 3] + "..."
