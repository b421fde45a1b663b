"""The paper's training recipes as data (paper Section 4.1), and how a config is resolved from them.

Resolution order: dataclass defaults (the built-in CPU job) < recipe (a name below or a YAML file, flat or nested
like a run's ``config.yaml``) < command-line flags.

* ``in1k`` (S4/S12/S18 on ImageNet-1k): AdamW, lr 4e-3 at global batch 4096, weight decay 0.05, 310 epochs =
  20 linear warmup epochs from 1e-6 + 280 cosine epochs to 1e-5 + 10 cooldown epochs; stochastic depth 0.2,
  label smoothing 0.1, res-scale in the last two stages; Mixup 0.8, CutMix 1.0, switch prob 0.5, RandAugment
  ``rand-m9-mstd0.5-inc1``, random erasing 0.25 in pixel mode; AMP on GPU.
* ``in1k-b36``: the same with stochastic depth 0.6.
* ``echo``: the kernel-size ablation of ``hyenapixel ablate`` (not a paper recipe): one isotropic block
  (``hpx_iso1`` or a twin) on the built-in Echo task at 64 px, batch 128, AdamW lr 3e-3, 6 epochs of 8000 images
  (372 steps) with 1.5 warmup epochs, no augmentation (a crop or flip would change the relation the label depends on).
* ``ft384`` / ``ft512``: fine-tuning of HpxFormer-S18 at 384 / 512 pixels for 30 epochs with AdamW lr 5e-5 at
  batch 1024, EMA, head dropout 0.4; no Mixup/CutMix and a constant learning rate. Values the paper does not
  state follow the MetaFormer fine-tuning procedure it cites (drop path 0.3, EMA decay 0.9999, no warmup).
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from hyenapixel.configio import flatten
from hyenapixel.errors import error_lines
from hyenapixel.train.config import ARCH_FIELDS, DEFAULT_MODEL, SECTIONS, ConfigError, TrainConfig

__all__ = ["PLACEMENT_FIELDS", "RECIPES", "load_recipe", "resolve_train_config"]

log = logging.getLogger(__name__)

_IN1K: dict[str, Any] = {
    # model: res-scale in the last two stages; full-size architecture (no built-in-run overrides)
    "model": "hpx_former_s18",
    "dims": None,
    "depths": None,
    "kernel_sizes": None,
    "res_scale_stages": (2, 3),
    "drop_path": 0.2,
    "head_dropout": 0.0,
    # data: ImageNet-style folders at the model's resolution
    "input_size": None,
    "crop_pct": None,
    "interpolation": "bicubic",
    # augmentation
    "auto_augment": "rand-m9-mstd0.5-inc1",
    "re_prob": 0.25,
    "re_mode": "pixel",
    "mixup": 0.8,
    "cutmix": 1.0,
    "mixup_switch_prob": 0.5,
    "smoothing": 0.1,
    # optimizer
    "opt": "adamw",
    "lr": None,
    "base_lr": 4e-3,
    "base_batch": 4096,
    "global_batch": 4096,
    "weight_decay": 0.05,
    "wd_filters": "paper",
    # schedule: 20 warmup + 280 cosine + 10 cooldown = 310
    "epochs": 310,
    "sched": "cosine",
    "warmup_epochs": 20,
    "warmup_lr": 1e-6,
    "min_lr": 1e-5,
    "cooldown_epochs": 10,
    # run
    "batch_size": 128,
    "amp": None,  # auto: on for GPU
    "ema": False,
    "checkpoint_every": 10,
}

_FT: dict[str, Any] = {
    **_IN1K,
    "drop_path": 0.3,
    "head_dropout": 0.4,
    "mixup": 0.0,
    "cutmix": 0.0,
    "lr": None,
    "base_lr": 5e-5,
    "base_batch": 1024,
    "global_batch": 1024,
    "epochs": 30,
    "sched": "constant",
    "warmup_epochs": 0,
    "cooldown_epochs": 0,
    "ema": True,
    "ema_decay": 0.9999,
    "batch_size": 64,
    "checkpoint_every": 5,
}

_ECHO: dict[str, Any] = {
    # the kernel-size ablation at laptop scale (docs/evidence.md): one isotropic block on the built-in Echo task
    "model": "hpx_iso1",
    "dims": None,
    "depths": None,
    "kernel_sizes": None,
    "res_scale_stages": None,
    "drop_path": 0.0,
    "head_dropout": 0.0,
    "data": None,
    "builtin": "echo",
    "difficulty": "default",
    "input_size": 64,
    "train_samples": 8000,
    "val_samples": 500,
    "auto_augment": None,
    "re_prob": 0.0,
    "mixup": 0.0,
    "cutmix": 0.0,
    "smoothing": 0.0,
    "opt": "adamw",
    "lr": 3e-3,
    "weight_decay": 0.05,
    "wd_filters": "paper",
    "epochs": 6,
    "sched": "cosine",
    "warmup_epochs": 1.5,
    "warmup_lr": 1e-6,
    "min_lr": 1e-5,
    "cooldown_epochs": 0,
    "batch_size": 128,
    "global_batch": None,
    "ema": False,
    "checkpoint_every": 0,
}

#: Named presets (flat dicts of config fields).
RECIPES: dict[str, dict[str, Any]] = {
    "in1k": _IN1K,
    "in1k-b36": {**_IN1K, "model": "hpx_former_b36", "drop_path": 0.6},
    "ft384": {**_FT, "model": "hpx_former_s18_384", "input_size": 384},
    "ft512": {**_FT, "model": "hpx_former_s18", "input_size": 512},
    "echo": _ECHO,
}


#: Options a recipe file never sets: they place a run (a run's config.yaml records them).
PLACEMENT_FIELDS = ("output", "resume", "overwrite")


def load_recipe(name_or_path: str) -> dict[str, Any]:
    """Flat dict of a named recipe or of a YAML file (flat, or nested like ``config.yaml``).

    A file's :data:`PLACEMENT_FIELDS` (where a run writes, whether it resumes or replaces) are dropped: passing a
    run's ``config.yaml`` back starts a new run with its settings, it never writes into or continues that run.
    """
    if name_or_path in RECIPES:
        return copy.deepcopy(RECIPES[name_or_path])
    path = Path(name_or_path)
    if path.suffix.lower() in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise ConfigError("recipe", f"file not found: {path}")
        try:
            with open(path, encoding="utf-8") as f:
                values = yaml.safe_load(f) or {}
        except (UnicodeDecodeError, yaml.YAMLError) as exc:
            raise ConfigError("recipe", f"{path} is not a YAML file of options ({error_lines(exc)})") from None
        if not isinstance(values, Mapping):
            raise ConfigError("recipe", f"{path} must hold a mapping of options")
        flat = flatten(values, SECTIONS)
        return {k: v for k, v in flat.items() if k not in PLACEMENT_FIELDS}
    raise ConfigError("recipe", f"unknown recipe {name_or_path!r}; choose from {', '.join(RECIPES)} or a YAML file")


def resolve_train_config(recipe: str | None = None, overrides: Mapping[str, Any] | None = None) -> TrainConfig:
    """Defaults < recipe < overrides (flat field names), with the architecture-reset rule for ``--model``.

    The architecture overrides (:data:`~hyenapixel.train.config.ARCH_FIELDS`) of the defaults or the recipe belong
    to their model. If ``overrides`` switch to another model, those not overridden too are reset to ``None`` (the
    new model's own values). The caller checks the model name first (it needs timm), so that this note is never
    printed for a name that does not exist.
    """
    overrides = dict(overrides or {})
    values: dict[str, Any] = load_recipe(recipe) if recipe else {}
    base_model = values.get("model", DEFAULT_MODEL)
    if "model" in overrides and overrides["model"] != base_model:
        reset = [k for k in ARCH_FIELDS if k not in overrides]
        for key in reset:
            values[key] = None
        if reset:
            log.info("--model %s replaces %s: using its own %s", overrides["model"], base_model, ", ".join(reset))
    values.update(overrides)
    return TrainConfig.from_dict(values, recipe=recipe)
