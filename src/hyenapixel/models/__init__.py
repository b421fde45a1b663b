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

__all__ = [
    "FAMILIES",
    "FILTER_EMB_DIMS",
    "KERNEL_SIZES",
    "OFFICIAL_WEIGHTS",
    "REGISTERED_MODELS",
    "SIZES",
    "MetaFormer",
    "MetaFormerBlock",
    "MetaFormerStage",
    "checkpoint_filter_fn",
    "hb_mixer",
    "hpx_mixer",
    "load_checkpoint_into",
    "rename_official_key",
    "resample_hyenapixel_filters",
    "unwrap_state_dict",
]
