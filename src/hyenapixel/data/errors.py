"""The one exception type of the data layer: :class:`DataError`."""

from __future__ import annotations

from hyenapixel.errors import UserError

__all__ = ["DataError"]


class DataError(UserError, ValueError):
    """Bad training data: a missing folder, an empty class, mismatched splits, an unreadable image.

    The message always names the offending path, so that the trainer can print it as is and stop before (or
    while) training.
    """
