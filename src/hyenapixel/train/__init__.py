"""Training and evaluation with the paper's recipes (Section 4.1): configs, recipes, loop, checkpoints, DDP.

The light parts (configs and recipes) import without torch; :func:`fit` and :func:`validate` are loaded on
first use.
"""

from __future__ import annotations

from typing import Any

from hyenapixel.train.config import ConfigError, TrainConfig, ValidateConfig
from hyenapixel.train.recipes import RECIPES, load_recipe, resolve_train_config

__all__ = [
    "RECIPES",
    "ConfigError",
    "TrainConfig",
    "ValidateConfig",
    "fit",
    "load_recipe",
    "resolve_train_config",
    "validate",
]


def __getattr__(name: str) -> Any:
    if name == "fit":
        from hyenapixel.train.fit import fit

        return fit
    if name == "validate":
        from hyenapixel.train.validate import validate

        return validate
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
