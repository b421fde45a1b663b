"""Conversion of official HyenaPixel checkpoints (github.com/spravil/HyenaPixel, the weights behind paper
Section 4.1) to this implementation's layout. One pure function, used by timm's ``pretrained_filter_fn``.

What it does, key by key:
* renames the official modules (``downsample_layers``, ``stages.i.j``, ``pointwise_conv``, ``long_conv``,
  ``filter_fn`` ...) to ours (``stem``, ``stages.i.downsample``, ``stages.i.blocks.j``, ``in_proj``, ``filter`` ...);
* drops constants that are rebuilt at construction (2D ``distance_map``, 1D ``pos_emb.t`` and
  ``modulation.deltas``);
* reshapes tensors whose element count matches (1x1 convs -> linear layers, ``[1, C, 1, 1]`` -> ``[C]``);
* resamples 2D filter positional embeddings whose kernel size differs from the model's (fine-tuning at higher
  resolution, Section 4.1) and rescales their decay to match;
* keeps the first convolution of a 3-channel checkpoint for a model of other ``in_chans`` as it is: timm's
  pretrained loading adapts it (``adapt_input_conv``), and :func:`adapt_first_conv` does the same for the
  loaders that bypass timm;
* fails with a ``ValueError`` naming the missing, unexpected or mismatched keys when the checkpoint belongs to
  another variant.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch
from torch import nn

from hyenapixel.filters import resample_pos_emb_2d

_DROPPED = re.compile(r"(\.long_conv\.distance_map|\.filter_fn\.pos_emb\.t|\.filter_fn\.modulation\.deltas)$")

_RENAMES: list[tuple[re.Pattern, str]] = [
    (re.compile(r"^downsample_layers\.0\.conv\."), "stem.conv."),
    (re.compile(r"^downsample_layers\.0\.post_norm\."), "stem.norm."),
    (re.compile(r"^downsample_layers\.(\d+)\.pre_norm\."), r"stages.\1.downsample.norm."),
    (re.compile(r"^downsample_layers\.(\d+)\.conv\."), r"stages.\1.downsample.conv."),
    (re.compile(r"^stages\.(\d+)\.(\d+)\."), r"stages.\1.blocks.\2."),
    # HyenaPixel (2D)
    (re.compile(r"\.token_mixer\.pointwise_conv\."), ".token_mixer.in_proj."),
    (re.compile(r"\.token_mixer\.depthwise_conv\."), ".token_mixer.short_conv."),
    (re.compile(r"\.long_conv\.z$"), ".filter.pos_emb"),
    (re.compile(r"\.long_conv\.deltas$"), ".filter.decay"),
    (re.compile(r"\.long_conv\.shift$"), ".filter.shift"),
    (re.compile(r"\.long_conv\.bias$"), ".filter.skip"),
    (re.compile(r"\.long_conv\.implicit_filter\."), ".filter.mlp."),
    # Hyena (1D)
    (re.compile(r"\.token_mixer\.short_filter\."), ".token_mixer.short_conv."),
    (re.compile(r"\.filter_fn\.bias$"), ".filter.skip"),
    (re.compile(r"\.filter_fn\.pos_emb\.z$"), ".filter.pos_emb"),
    (re.compile(r"\.filter_fn\.implicit_filter\."), ".filter.mlp."),
    (re.compile(r"\.token_mixer\.qk_norm\.0\."), ".token_mixer.qk_norm."),
]

_CLASSIFIER_PREFIX = "head.fc2."


def unwrap_state_dict(checkpoint: Mapping) -> Mapping[str, torch.Tensor]:
    """Return the tensor mapping inside common checkpoint containers (``state_dict``, ``model``, ``state_dict_ema``)."""
    for key in ("state_dict", "model", "model_state", "state_dict_ema"):
        inner = checkpoint.get(key) if isinstance(checkpoint, Mapping) else None
        if isinstance(inner, Mapping) and inner and all(isinstance(v, torch.Tensor) for v in inner.values()):
            checkpoint = inner
            break
    return {k.removeprefix("module."): v for k, v in checkpoint.items()}


def rename_official_key(key: str) -> str | None:
    """Our name for an official state-dict key, or ``None`` for constants that are rebuilt."""
    if _DROPPED.search(key):
        return None
    for pattern, repl in _RENAMES:
        key = pattern.sub(repl, key)
    return key


def _convert_tensor(key: str, value: torch.Tensor, target: torch.Tensor, state: dict) -> torch.Tensor:
    if value.shape == target.shape:
        return value
    if key.endswith(".filter.pos_emb") and value.dim() == 4 and target.dim() == 3 and value.shape[1] == target.shape[0]:
        value = value[0]  # official (1, K, kh, kw)
        if value.shape[-2:] != target.shape[-2:]:
            state.setdefault("resampled", []).append((key, tuple(value.shape[-2:]), tuple(target.shape[-2:])))
            return resample_pos_emb_2d(value, tuple(target.shape[-2:]))
        return value
    if key.endswith(".filter.pos_emb") and value.dim() == 3 and target.dim() == 3 and value.shape[0] == target.shape[0]:
        state.setdefault("resampled", []).append((key, tuple(value.shape[-2:]), tuple(target.shape[-2:])))
        return resample_pos_emb_2d(value, tuple(target.shape[-2:]))
    if value.numel() == target.numel():
        return value.reshape(target.shape)
    raise ValueError(f"{key}: checkpoint shape {tuple(value.shape)} does not fit the model's {tuple(target.shape)}")


def _first_conv_weight(model: nn.Module) -> str | None:
    first = (getattr(model, "pretrained_cfg", None) or {}).get("first_conv")
    return f"{first}.weight" if first else None


def _other_in_chans(value: torch.Tensor, target: torch.Tensor) -> bool:
    """A 3-channel convolution weight that differs from ``target`` only in its input channels."""
    return (
        value.dim() == 4
        and value.shape[1] == 3
        and value.shape[1] != target.shape[1]
        and (value.shape[0], *value.shape[2:]) == (target.shape[0], *target.shape[2:])
    )


def adapt_first_conv(state_dict: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """``state_dict`` with the model's first convolution adapted from 3 input channels to the model's, as timm
    adapts pretrained weights (``timm.models.adapt_input_conv``: summed for 1 channel, the RGB filters repeated and
    rescaled for more). For loaders that bypass timm's pretrained loading; other keys are returned as they are."""
    key = _first_conv_weight(model)
    target = model.state_dict().get(key) if key else None
    if key is None or target is None or key not in state_dict or not _other_in_chans(state_dict[key], target):
        return state_dict
    from timm.models import adapt_input_conv

    return {**state_dict, key: adapt_input_conv(int(target.shape[1]), state_dict[key])}


def checkpoint_filter_fn(state_dict: Mapping[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """Convert an official (or already converted) HyenaPixel state dict for ``model``; see the module docstring."""
    state_dict = unwrap_state_dict(state_dict)
    target = model.state_dict()
    out: dict[str, torch.Tensor] = {}
    info: dict = {}
    problems: list[str] = []
    mismatched: dict[str, torch.Tensor] = {}  # our key -> the checkpoint's tensor that does not fit
    first = _first_conv_weight(model)
    for key, value in state_dict.items():
        new_key = rename_official_key(key)
        if new_key is None:
            continue
        if new_key not in target or new_key.startswith(_CLASSIFIER_PREFIX):
            out[new_key] = value  # unexpected keys are reported below; the classifier is adapted by timm
            continue
        if new_key == first and _other_in_chans(value, target[new_key]):
            out[new_key] = value  # adapted to the model's in_chans by timm / adapt_first_conv
            continue
        try:
            out[new_key] = _convert_tensor(new_key, value, target[new_key], info)
        except ValueError as e:
            problems.append(str(e))
            mismatched[new_key] = value
    # kernel-size change: keep the window's value at the same relative position of the kernel
    for key, old, new in info.get("resampled", []):
        decay_key = key.replace(".pos_emb", ".decay")
        if decay_key in out:
            out[decay_key] = out[decay_key] * (max(old) / max(new))
    missing = sorted(k for k in target if k not in out and k not in mismatched)
    unexpected = sorted(k for k in out if k not in target and not k.startswith(_CLASSIFIER_PREFIX))
    if missing or unexpected or problems:
        name = getattr(model, "pretrained_cfg", {}).get("architecture") or type(model).__name__
        if list(mismatched) == [first] and not missing and not unexpected:
            chans = mismatched[first].shape[1]
            raise ValueError(
                f"the checkpoint's first convolution ({first}) takes {chans} input channels, model '{name}' "
                f"{target[first].shape[1]}; build the model with in_chans={chans}"
            )
        lines = [f"checkpoint does not match model '{name}' (is it a checkpoint of another variant?)"]
        sections = (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", problems))
        for title, items in sections:
            if items:
                shown = ", ".join(items[:12]) + (f", ... ({len(items) - 12} more)" if len(items) > 12 else "")
                lines.append(f"  {title} ({len(items)}): {shown}")
        raise ValueError("\n".join(lines))
    return out
