"""Resolution changes (paper Section 4.1, "Fine-tuning on higher resolution"): resample HyenaPixel filters to new
kernel sizes, and load checkpoints safely into a model whose kernels (or classifier) may differ in size.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence

from torch import nn

from hyenapixel.filters import ImplicitFilter2d
from hyenapixel.mixers import HyenaPixelMixer
from hyenapixel.models.convert import adapt_first_conv, checkpoint_filter_fn
from hyenapixel.models.weights import WeightsError, read_checkpoint, read_weights

__all__ = ["load_checkpoint_into", "load_initial_weights", "resample_hyenapixel_filters"]

log = logging.getLogger("hyenapixel")


def resample_hyenapixel_filters(model: nn.Module, kernel_sizes: Sequence[int]) -> nn.Module:
    """Resize every implicit HyenaPixel filter of stage ``i`` to ``kernel_sizes[i]`` in place.

    The paper's 384 px variant with "adapted" kernels uses ``[191, 95, 47, 23]``. Positional embeddings are resampled
    bicubically, decay rates scaled so the window keeps its shape relative to the kernel (see
    :meth:`ImplicitFilter2d.resample_`). Stages without HyenaPixel mixers are left alone.
    """
    stages = getattr(model, "stages", None)
    if stages is None or len(kernel_sizes) != len(stages):
        raise ValueError(f"kernel_sizes needs one entry per stage ({len(stages or [])}), got {list(kernel_sizes)}")
    for stage, size in zip(stages, kernel_sizes):
        for m in stage.modules():
            if isinstance(m, HyenaPixelMixer) and isinstance(m.filter, ImplicitFilter2d):
                m.filter.resample_(int(size))
                m.spectrum_cache.clear()
    return model


def load_checkpoint_into(model: nn.Module, path: str | os.PathLike, strict: bool = True) -> nn.Module:
    """Load an official or hyenapixel checkpoint (``.bin``, ``.pth``, ``.safetensors``) into ``model``.

    The file is read by :func:`~hyenapixel.models.read_weights` (never unpickles code; a missing, corrupt or unsafe
    file is a :class:`~hyenapixel.models.WeightsError`). Official keys are converted and HyenaPixel filter
    embeddings of another kernel size are resampled (see :func:`checkpoint_filter_fn`).
    """
    state_dict = adapt_first_conv(checkpoint_filter_fn(read_weights(path), model), model)
    model.load_state_dict(state_dict, strict=strict)
    return model


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
