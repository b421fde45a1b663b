"""Generic building blocks of the MetaFormer framework (paper Section 3, "Hierarchical transformer", Fig. 3)."""

from hyenapixel.layers.activations import SquaredReLU, StarReLU
from hyenapixel.layers.attention import Attention
from hyenapixel.layers.blocks import Mlp, MlpHead, Scale, SepConv
from hyenapixel.layers.norms import LayerNorm2dNoBias, LayerNormNoBias, layer_norm_channels_first

__all__ = [
    "Attention",
    "LayerNorm2dNoBias",
    "LayerNormNoBias",
    "Mlp",
    "MlpHead",
    "Scale",
    "SepConv",
    "SquaredReLU",
    "StarReLU",
    "layer_norm_channels_first",
]
