"""Resolution changes (paper Section 4.1, "Fine-tuning on higher resolution"): resample HyenaPixel filters to new
kernel sizes, and load checkpoints safely into a model whose kernels may differ in size.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from torch import nn

from hyenapixel.filters import ImplicitFilter2d
from hyenapixel.mixers import HyenaPixelMixer
from hyenapixel.models.convert import adapt_first_conv, checkpoint_filter_fn
from hyenapixel.models.weights import read_weights


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
