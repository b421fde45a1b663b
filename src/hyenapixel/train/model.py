"""Build the network of a run through timm (paper Sections 3 and 4.1).

Importing :mod:`hyenapixel.models` registers the HyenaPixel families in timm. A model is described by a plain
*spec* (name + keyword overrides) that is stored in every checkpoint, so that ``hyenapixel validate`` can rebuild
the exact network of a run (including reduced ``dims`` or ``kernel_sizes``) from the checkpoint alone.
"""

from __future__ import annotations

import difflib
from typing import Any

import timm
from torch import nn

import hyenapixel.models  # noqa: F401  (registers the HyenaPixel models in timm)
from hyenapixel.train.config import ConfigError, ModelConfig

__all__ = ["check_model_name", "create_model", "model_spec"]


def check_model_name(name: str, flag: str = "model") -> None:
    """Raise :class:`ConfigError` naming ``--model`` and close matches if timm does not know ``name``."""
    if timm.is_model(name):
        return
    candidates = timm.list_models("*former*")
    close = difflib.get_close_matches(name, candidates, n=5, cutoff=0.5)
    if not close:
        close = difflib.get_close_matches(name, timm.list_models(), n=5, cutoff=0.6)
    hint = f"; close matches: {', '.join(close)}" if close else f"; HyenaPixel models: {', '.join(_hpx_models())}"
    raise ConfigError(flag, f"unknown model {name!r}{hint}")


def _hpx_models() -> list[str]:
    return list(getattr(hyenapixel.models, "REGISTERED_MODELS", []))


def _is_hyenapixel_model(name: str) -> bool:
    try:
        return timm.models.model_entrypoint(name).__module__.startswith("hyenapixel")
    except (RuntimeError, AttributeError):  # pragma: no cover - unknown models are rejected earlier
        return False


def model_spec(cfg: ModelConfig) -> dict[str, Any]:
    """The architecture part of a model config as plain data: ``{"name": ..., "kwargs": {...}}``."""
    kwargs: dict[str, Any] = {}
    for key in ("dims", "depths", "kernel_sizes"):
        value = getattr(cfg, key)
        if value is not None:
            kwargs[key] = list(value)
    if cfg.res_scale_stages is not None:
        num_stages = len(cfg.depths or cfg.dims or ()) or 4
        kwargs["res_scale_init_values"] = [1.0 if i in cfg.res_scale_stages else None for i in range(num_stages)]
    return {"name": cfg.model, "kwargs": kwargs}


def create_model(
    spec: dict[str, Any],
    *,
    num_classes: int,
    in_chans: int = 3,
    drop_path: float = 0.0,
    head_dropout: float = 0.0,
    pretrained: bool = False,
) -> nn.Module:
    """``timm.create_model`` from a spec; head dropout is ``head_dropout`` for HyenaPixel models, else ``drop_rate``.

    Shape:
        the model maps (B, in_chans, H, W) images to (B, num_classes) logits.
    """
    name = spec["name"]
    check_model_name(name)
    kwargs: dict[str, Any] = dict(spec.get("kwargs", {}))
    for key in ("dims", "depths", "kernel_sizes", "res_scale_init_values"):
        if key in kwargs and kwargs[key] is not None:
            kwargs[key] = tuple(kwargs[key])
    if drop_path:
        kwargs["drop_path_rate"] = drop_path
    if head_dropout:
        kwargs["head_dropout" if _is_hyenapixel_model(name) else "drop_rate"] = head_dropout
    try:
        return timm.create_model(name, pretrained=pretrained, num_classes=num_classes, in_chans=in_chans, **kwargs)
    except TypeError as exc:
        raise ConfigError("model", f"{name} does not accept these options ({exc})") from None
