"""MetaFormer models with HyenaPixel / Hyena token mixers, registered in timm (paper Sections 3 and 4)."""

from hyenapixel.models.convert import checkpoint_filter_fn, rename_official_key, unwrap_state_dict
from hyenapixel.models.families import (
    FAMILIES,
    FILTER_EMB_DIMS,
    KERNEL_SIZES,
    OFFICIAL_WEIGHTS,
    REGISTERED_MODELS,
    SIZES,
    hb_mixer,
    hpx_mixer,
)
from hyenapixel.models.metaformer import MetaFormer, MetaFormerBlock, MetaFormerStage
from hyenapixel.models.resample import load_checkpoint_into, resample_hyenapixel_filters
from hyenapixel.models.weights import Checkpoint, WeightsError, load_model, read_checkpoint, read_weights

__all__ = [
    "FAMILIES",
    "FILTER_EMB_DIMS",
    "KERNEL_SIZES",
    "OFFICIAL_WEIGHTS",
    "REGISTERED_MODELS",
    "SIZES",
    "Checkpoint",
    "MetaFormer",
    "MetaFormerBlock",
    "MetaFormerStage",
    "WeightsError",
    "checkpoint_filter_fn",
    "hb_mixer",
    "hpx_mixer",
    "load_checkpoint_into",
    "load_model",
    "read_checkpoint",
    "read_weights",
    "rename_official_key",
    "resample_hyenapixel_filters",
    "unwrap_state_dict",
]
