"""Generic building blocks of the MetaFormer framework (paper Section 3, "Hierarchical transformer", Fig. 3)."""

from hyenapixel.layers.activations import SquaredReLU, StarReLU
from hyenapixel.layers.attention import Attention, PositionalAttention
from hyenapixel.layers.blocks import DepthwiseConv2d, Mlp, MlpHead, PixelLinear, PointwiseConvMlp, Scale, SepConv
from hyenapixel.layers.norms import LayerNormNoBias

__all__ = [
    "Attention",
    "DepthwiseConv2d",
    "LayerNormNoBias",
    "Mlp",
    "MlpHead",
    "PixelLinear",
    "PointwiseConvMlp",
    "PositionalAttention",
    "Scale",
    "SepConv",
    "SquaredReLU",
    "StarReLU",
]
