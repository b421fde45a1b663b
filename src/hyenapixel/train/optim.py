"""Optimizer parameter groups with an explicit weight-decay rule for Hyena filters (paper Section 4.1).

Two rules, chosen by ``--wd-filters``:

* ``paper`` (default, exact reproduction): timm's rule, which the official code used through timm's
  ``create_optimizer_v2``: no weight decay for parameters with ``ndim <= 1``, names ending in ``.bias`` and the
  names of ``model.no_weight_decay()``; everything else, including the 4-D implicit-filter weights, is decayed.
* ``hyena``: the same plus no weight decay for ``model.hyena_no_weight_decay()`` (the filter positional
  embeddings, decays, shifts and filter biases), the convention of the Hyena code base.

The groups are built here, explicitly, and handed to ``timm.optim.create_optimizer_v2``; each group carries the
``param_names`` it holds so that the choice can be inspected (and is tested).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Collection
from typing import Any

import torch
from torch import nn

from hyenapixel.train.config import WD_FILTER_RULES

__all__ = ["build_optimizer", "param_groups", "WD_FILTER_RULES"]


def _matches(name: str, patterns: Collection[str]) -> bool:
    """timm's matching of ``no_weight_decay()`` entries: exact names or fnmatch wildcards."""
    return any(fnmatch.fnmatch(name, p) for p in patterns)


def param_groups(model: nn.Module, weight_decay: float, wd_filters: str = "paper") -> list[dict[str, Any]]:
    """Split trainable parameters into a decayed and an undecayed group.

    Args:
        model: The (unwrapped) model.
        weight_decay: Decay of the decayed group.
        wd_filters: ``"paper"`` or ``"hyena"`` (see module docstring).

    Returns:
        ``[{"params", "param_names", "weight_decay", "group"}, ...]`` with ``group`` in ``{"no_decay", "decay"}``;
        empty groups are left out.
    """
    if wd_filters not in WD_FILTER_RULES:
        raise ValueError(f"wd_filters must be one of {WD_FILTER_RULES}, got {wd_filters!r}")
    skip: set[str] = set(model.no_weight_decay()) if hasattr(model, "no_weight_decay") else set()
    hyena_skip: set[str] = set()
    if wd_filters == "hyena":
        if not hasattr(model, "hyena_no_weight_decay"):
            raise ValueError(
                f"--wd-filters hyena needs a model with hyena_no_weight_decay() (a HyenaPixel model); "
                f"{type(model).__name__} has none"
            )
        hyena_skip = set(model.hyena_no_weight_decay())
        known = {n for n, _ in model.named_parameters()}
        unknown = sorted(n for n in hyena_skip if n not in known)
        if unknown:
            raise ValueError(f"hyena_no_weight_decay() names unknown parameters: {unknown[:5]}")

    decay: list[tuple[str, nn.Parameter]] = []
    no_decay: list[tuple[str, nn.Parameter]] = []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        excluded = param.ndim <= 1 or name.endswith(".bias") or _matches(name, skip) or name in hyena_skip
        (no_decay if excluded or not weight_decay else decay).append((name, param))

    groups = []
    for label, items, wd in (("no_decay", no_decay, 0.0), ("decay", decay, weight_decay)):
        if items:
            groups.append(
                {
                    "params": [p for _, p in items],
                    "param_names": [n for n, _ in items],
                    "weight_decay": wd,
                    "group": label,
                }
            )
    return groups


def build_optimizer(
    model: nn.Module,
    *,
    opt: str,
    lr: float,
    weight_decay: float,
    wd_filters: str = "paper",
    eps: float = 1e-8,
    betas: tuple[float, float] = (0.9, 0.999),
) -> torch.optim.Optimizer:
    """timm optimizer over :func:`param_groups`."""
    from timm.optim import create_optimizer_v2

    groups = param_groups(model, weight_decay, wd_filters)
    kwargs: dict[str, Any] = {"eps": eps}
    if opt.lower() in ("adam", "adamw", "nadam", "nadamw", "radam", "lamb", "adamp"):
        kwargs["betas"] = tuple(betas)
    return create_optimizer_v2(groups, opt=opt, lr=lr, weight_decay=weight_decay, **kwargs)
