"""Isotropic one-block MetaFormers: the laptop-scale ablation of the paper's kernel-size claim (Sections 4-5, Table 3).

The paper's hierarchical models give even local kernels a global reach by stage 3-4, so at laptop scale the size of
the kernel cannot matter there. These models keep one resolution: a stride-4 stem, **one** MetaFormer block at a
16 x 16 map (64 px input) and the classifier. What the block's token mixer reaches is all the model sees, which makes
them the twins of an ablation (``hyenapixel ablate``, docs/evidence.md):

| model             | token mixer                                    | width | reach on the 16 x 16 map      |
|-------------------|------------------------------------------------|-------|-------------------------------|
| hpx_iso1          | HyenaPixel, kernel 31 (covers the map)         | 32    | global                        |
| hpx_iso1_local    | HyenaPixel, kernel 3                           | 40    | +-3 tokens (with short conv)  |
| sepconv_iso1      | ConvFormer's SepConv, kernel 7                 | 44    | +-3 tokens                    |
| attn_iso1         | self-attention + learned positional embedding  | 40    | global                        |

Widths are set so that every twin has within 10 % of the global model's parameters (tested); the global model's
filter uses a 16-channel positional encoding, because a 32-channel one alone would be half of its parameters. The
HyenaPixel filters start from PyTorch's default initialisation (:data:`FILTER_FFN_GAIN`), so that the long taps start
at a few percent of the skip term instead of near zero.
``kernel_sizes=(k,)`` (``--kernel-sizes k``) sets the HyenaPixel kernel of ``hpx_iso1`` for a kernel-size sweep.
Inputs are single-stage: ``features_only`` gives the one 16 x 16 map.
"""

from __future__ import annotations

from functools import partial

from timm.models import build_model_with_cfg, generate_default_cfgs, register_model

from hyenapixel.filters import ImplicitFilter2d
from hyenapixel.layers import PositionalAttention, SepConv
from hyenapixel.mixers import HyenaPixelMixer
from hyenapixel.models.families import MixerFactory, with_kernel_sizes
from hyenapixel.models.metaformer import MetaFormer

__all__ = ["ISOTROPIC_MODELS", "ISO_IMAGE_SIZE", "ISO_KERNEL_SIZE"]

ISO_IMAGE_SIZE = 64
"""Input side the isotropic models are configured for (a 16 x 16 token map)."""
ISO_KERNEL_SIZE = 2 * (ISO_IMAGE_SIZE // 4) - 1
"""The global model's kernel: 31 taps, so every token reaches every other one of the 16 x 16 map."""
ISO_FILTER_EMB_DIM = 16
FILTER_FFN_GAIN = 6.0
"""The filters' FFNs start from PyTorch's default initialisation with the output layer times this gain
(:meth:`~hyenapixel.filters.ImplicitFilter2d.reset_ffn`), not from the MetaFormer's std-0.02 normal, which starts
the long kernel near zero next to the skip term; then training finds the far relation of Echo within a few hundred
steps (docs/evidence.md)."""
LOCAL_KERNEL_SIZE = 3


def _create(variant: str, pretrained: bool, dim: int, mixer: MixerFactory, **kwargs) -> MetaFormer:
    """Build ``variant`` through timm: one stage of ``depths`` blocks (default 1) at width ``dim``; keyword arguments
    override ``depths``, ``dims``, ``kernel_sizes`` and every :class:`MetaFormer` argument."""
    mixers = with_kernel_sizes([kwargs.pop("token_mixers", None) or mixer], kwargs.pop("kernel_sizes", None))
    kwargs.setdefault("num_classes", 2)
    kwargs.setdefault("res_scale_init_values", (None,))
    model = build_model_with_cfg(
        MetaFormer,
        variant,
        pretrained,
        feature_cfg=dict(out_indices=(0,), feature_cls="getter"),
        depths=kwargs.pop("depths", (1,)),
        dims=kwargs.pop("dims", (dim,)),
        token_mixers=mixers,
        **kwargs,
    )
    if not pretrained:  # pretrained weights replace the initialisation anyway
        for module in model.modules():
            if isinstance(module, ImplicitFilter2d):
                module.reset_ffn(FILTER_FFN_GAIN)
    return model


def _cfg(**kwargs) -> dict:
    return dict(
        num_classes=2,
        input_size=(3, ISO_IMAGE_SIZE, ISO_IMAGE_SIZE),
        pool_size=(ISO_IMAGE_SIZE // 4, ISO_IMAGE_SIZE // 4),
        crop_pct=1.0,
        interpolation="bicubic",
        mean=(0.5, 0.5, 0.5),
        std=(0.5, 0.5, 0.5),
        first_conv="stem.conv",
        classifier="head.fc2",
        license="apache-2.0",
        paper_ids="arXiv:2402.19305",
        **kwargs,
    )


default_cfgs = generate_default_cfgs(
    {name: _cfg() for name in ("hpx_iso1", "hpx_iso1_local", "sepconv_iso1", "attn_iso1")}
)

ISOTROPIC_MODELS = list(default_cfgs)
"""The registered isotropic models (global first, then the twins)."""


@register_model
def hpx_iso1(pretrained: bool = False, **kwargs) -> MetaFormer:
    """One HyenaPixel block whose kernel (31) covers the 16 x 16 map of a 64 px image: the global model."""
    mixer = partial(HyenaPixelMixer, kernel_size=ISO_KERNEL_SIZE, filter_emb_dim=ISO_FILTER_EMB_DIM)
    return _create("hpx_iso1", pretrained, 32, mixer, **kwargs)


@register_model
def hpx_iso1_local(pretrained: bool = False, **kwargs) -> MetaFormer:
    """The local twin of :func:`hpx_iso1`: the same HyenaPixel block with a 3 x 3 kernel, wider to match parameters."""
    mixer = partial(HyenaPixelMixer, kernel_size=LOCAL_KERNEL_SIZE, filter_emb_dim=ISO_FILTER_EMB_DIM)
    return _create("hpx_iso1_local", pretrained, 40, mixer, **kwargs)


@register_model
def sepconv_iso1(pretrained: bool = False, **kwargs) -> MetaFormer:
    """The ConvFormer twin of :func:`hpx_iso1`: one SepConv (7 x 7 depthwise) block."""
    return _create("sepconv_iso1", pretrained, 44, partial(SepConv, kernel_size=7), **kwargs)


@register_model
def attn_iso1(pretrained: bool = False, **kwargs) -> MetaFormer:
    """The attention twin of :func:`hpx_iso1`: one self-attention block (2 heads) with a learned 16 x 16 positional
    embedding."""
    mixer = partial(PositionalAttention, grid=ISO_IMAGE_SIZE // 4, head_dim=20)
    return _create("attn_iso1", pretrained, 40, mixer, **kwargs)
