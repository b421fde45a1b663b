"""Training and evaluation with the paper's recipes (Section 4.1): configs, recipes, loop, checkpoints, DDP.

The light parts (configs and recipes) import without torch; :func:`fit` and :func:`validate` are loaded on
first use.
"""

from __future__ import annotations

from hyenapixel.lazy import lazy_attributes
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

__getattr__, __dir__ = lazy_attributes(
    __name__, {"fit": "hyenapixel.train.fit", "validate": "hyenapixel.train.validate"}
)
