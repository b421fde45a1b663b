"""Errors that a user's input causes, shared by every layer of the package.

The console script prints the message of a :class:`UserError` as one line and exits with status 2; the message
therefore names what is wrong (a path, a flag, a shape) and, where it can, what to change.
"""

from __future__ import annotations

__all__ = ["UserError"]


class UserError(Exception):
    """Bad input (an option, a file, a model name, a tensor shape) rather than a bug; the message says what to fix."""
