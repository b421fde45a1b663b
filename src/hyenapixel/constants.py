"""Constants that every layer of the package shares, torch-free like :mod:`hyenapixel.errors`, so that the
command-line configs can check options before torch is imported.
"""

from __future__ import annotations

__all__ = ["DEFAULT_BUILTIN", "INPUT_SIZE_ALIASES", "MIN_INPUT_SIZE", "SCHEDULES"]

#: Smallest image height and width a MetaFormer takes: its total stride (stem 4, then three 2x downsamplings).
MIN_INPUT_SIZE = 32

#: The built-in generated dataset that ``hyenapixel train`` uses when no ``--data`` folder is given.
DEFAULT_BUILTIN = "balance"

#: Other spellings of every command's ``--input-size`` option, accepted as aliases (timm's scripts say --img-size).
INPUT_SIZE_ALIASES = ("--img-size", "--image-size")

#: Learning-rate schedules after the warmup (``--sched``; :class:`hyenapixel.models.training.LRSchedule`).
SCHEDULES = ("cosine", "constant")
