"""Build the network of a run through timm (paper Sections 3 and 4.1).

A model is described by a plain *spec* (name + keyword overrides) that is stored in every checkpoint and in the
metadata of ``best.safetensors``, so that ``hyenapixel validate`` (through :func:`hyenapixel.models.load_model`)
rebuilds the exact network of a run, including reduced ``dims`` or ``kernel_sizes``, from the file alone.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from torch import nn

from hyenapixel.errors import UserError
from hyenapixel.models import WeightsError, checkpoint_filter_fn, load_model, read_checkpoint
from hyenapixel.models.convert import adapt_first_conv
from hyenapixel.models.weights import check_model_name as _check_name
from hyenapixel.train.config import ARCH_FIELDS, ConfigError, ModelConfig
from hyenapixel.train.configio import format_default
from hyenapixel.train.errors import flag_name

__all__ = ["check_model_name", "create_model", "load_initial_weights", "model_spec"]

log = logging.getLogger("hyenapixel")


def check_model_name(name: str, flag: str = "model") -> None:
    """Raise :class:`ConfigError` naming ``--model`` and close matches if timm does not know ``name``."""
    try:
        _check_name(name)
    except UserError as exc:
        raise ConfigError(flag, str(exc)) from None


def model_spec(cfg: ModelConfig) -> dict[str, Any]:
    """The architecture part of a model config as plain data: ``{"name": ..., "kwargs": {...}}``."""
    kwargs: dict[str, Any] = {key: list(getattr(cfg, key)) for key in ARCH_FIELDS if getattr(cfg, key) is not None}
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
    """The network of ``spec`` through :func:`hyenapixel.models.load_model` (hub weights with ``pretrained``).

    ``head_dropout`` is timm's ``drop_rate``, which HyenaPixel models take as the dropout before the classifier.

    Shape:
        the model maps (B, in_chans, H, W) images to (B, num_classes) logits.
    """
    name = spec["name"]
    check_model_name(name)
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in (spec.get("kwargs") or {}).items()}
    if drop_path:
        kwargs["drop_path_rate"] = drop_path
    if head_dropout:
        kwargs["drop_rate"] = head_dropout
    try:
        return load_model(name, pretrained=pretrained, num_classes=num_classes, in_chans=in_chans, **kwargs)
    except TypeError as exc:
        raise ConfigError("model", f"{name} does not accept these options ({exc})") from None
    except ValueError as exc:  # the architecture rejects the options (e.g. dims and depths of unequal length)
        if isinstance(exc, UserError):
            raise
        given = ", ".join(f"{flag_name(k)} {format_default(v)}" for k, v in (spec.get("kwargs") or {}).items())
        given = given or "its defaults"
        raise ConfigError("model", f"{name} cannot be built with {given}: {exc}") from None


def load_initial_weights(model: nn.Module, path: str | os.PathLike) -> None:
    """Start a run from the weights of ``path`` (``--initial-checkpoint``): a run's file or an official checkpoint.

    Official keys are renamed and HyenaPixel filters of another kernel size resampled
    (:func:`hyenapixel.models.checkpoint_filter_fn`). A classifier of another shape (fine-tuning on another label
    set) stays freshly initialised.

    Raises:
        WeightsError: unreadable file, or weights that do not fit the model.
    """
    ck = read_checkpoint(path)
    arch = (getattr(model, "pretrained_cfg", None) or {}).get("architecture")
    if ck.spec is not None and arch and ck.model_name != arch:
        raise WeightsError(
            f"{ck.path} holds a {ck.model_name} model, not {arch}; pass --model {ck.model_name} or another "
            "--initial-checkpoint"
        )
    try:
        state_dict = adapt_first_conv(checkpoint_filter_fn(ck.state_dict, model), model)
    except ValueError as exc:
        raise WeightsError(f"{ck.path}: {' '.join(str(exc).split())}") from None
    prefix = str((getattr(model, "pretrained_cfg", None) or {}).get("classifier") or "head") + "."
    target = model.state_dict()
    dropped = [
        k for k in state_dict if k.startswith(prefix) and (k not in target or state_dict[k].shape != target[k].shape)
    ]
    missing, unexpected = model.load_state_dict({k: v for k, v in state_dict.items() if k not in dropped}, strict=False)
    if unexpected or any(not k.startswith(prefix) for k in missing):
        raise WeightsError(f"{ck.path} does not fit the model: missing {missing[:5]}, unexpected {unexpected[:5]}")
    if dropped:
        log.info("%s: the classifier (%s) has another shape; it starts freshly initialised", ck.path, prefix[:-1])
