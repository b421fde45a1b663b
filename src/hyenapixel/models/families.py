"""The registered model families of paper Section 3 ("Model sizes", "Token mixer layout") and their official
ImageNet-1k weights (Section 4.1).

| family         | stages 1-2      | stages 3-4      |
|----------------|-----------------|-----------------|
| hpx_former     | HyenaPixel      | HyenaPixel      |
| hb_former      | bidir. Hyena    | bidir. Hyena    |
| c_hpx_former   | SepConv (k7)    | HyenaPixel      |
| hpx_a_former   | HyenaPixel      | attention       |
| hb_a_former    | bidir. Hyena    | attention       |

Sizes: S4 [1,1,1,1], S12 [2,2,6,2], S18 [3,3,9,3] with dims [64,128,320,512]; B36 [3,12,18,3] with
[128,256,512,768]. The qk/out LayerNorms are placed as in the official checkpoints: every HpxFormer and the
HbFormer-B36 have them, the hybrid layouts and the smaller HbFormers do not.

Every model is one ``@register_model`` function below plus one entry in ``default_cfgs``; a new variant (say
``hpx_former_s18_512``) is one more of each, a new family one more layout function.
"""

from __future__ import annotations

import errno
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import NamedTuple

from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model
from torch import nn

from hyenapixel.layers import Attention, LayerNormNoBias, SepConv
from hyenapixel.mixers import BidirectionalHyenaMixer, HyenaPixelMixer
from hyenapixel.models.convert import checkpoint_filter_fn
from hyenapixel.models.metaformer import MetaFormer

# ---- the per-stage facts of the paper (Section 3), the one source for models, benchmarks and docs --------------
FEATURE_SIZES = (56, 28, 14, 7)  # feature-map side per stage at 224 px input (strides 4/8/16/32)
KERNEL_SIZES = (111, 55, 27, 13)  # 2D kernels: ~2x the feature maps at 224 px
FILTER_EMB_DIMS = (32, 32, 48, 64)  # K per stage; FFN width 2K
TRAIN_SEQ_LENS = tuple(s * s for s in FEATURE_SIZES)  # 1D filters have length 2L - 1
S_DIMS = (64, 128, 320, 512)
B_DIMS = (128, 256, 512, 768)
MIXER_NORM = partial(LayerNormNoBias, eps=1e-5)  # qk/out norms of the mixers (official eps)

MixerFactory = Callable[[int], nn.Module]


class ModelSize(NamedTuple):
    """Blocks and channels per stage of a model size."""

    depths: tuple[int, ...]
    dims: tuple[int, ...]


SIZES = {
    "s4": ModelSize((1, 1, 1, 1), S_DIMS),
    "s12": ModelSize((2, 2, 6, 2), S_DIMS),
    "s18": ModelSize((3, 3, 9, 3), S_DIMS),
    "b36": ModelSize((3, 12, 18, 3), B_DIMS),
}
FAMILIES = ("hpx_former", "hb_former", "c_hpx_former", "hpx_a_former", "hb_a_former")


# ---- token mixers per stage --------------------------------------------------------------------------------------
def hpx_mixer(stage: int, norm: bool) -> MixerFactory:
    """HyenaPixel mixer of a stage with the paper's kernel size and filter width."""
    return partial(
        HyenaPixelMixer,
        kernel_size=KERNEL_SIZES[stage],
        filter_emb_dim=FILTER_EMB_DIMS[stage],
        qk_norm_layer=MIXER_NORM if norm else None,
        out_norm_layer=MIXER_NORM if norm else None,
    )


def hb_mixer(stage: int, norm: bool) -> MixerFactory:
    """Bidirectional Hyena mixer of a stage: filter length 2 * (H*W) - 1, embedding K + 1, FFN width 2K."""
    k = FILTER_EMB_DIMS[stage]
    return partial(
        BidirectionalHyenaMixer,
        seq_len=TRAIN_SEQ_LENS[stage],
        filter_emb_dim=k + 1,
        filter_hidden=2 * k,
        qk_norm_layer=MIXER_NORM if norm else None,
        out_norm_layer=MIXER_NORM if norm else None,
    )


def hpx_layout(norm: bool = True) -> list[MixerFactory]:
    """HpxFormer: HyenaPixel in every stage."""
    return [hpx_mixer(i, norm) for i in range(4)]


def hb_layout(norm: bool = False) -> list[MixerFactory]:
    """HbFormer: bidirectional Hyena in every stage."""
    return [hb_mixer(i, norm) for i in range(4)]


def c_hpx_layout() -> list[MixerFactory]:
    """CHpxFormer: ConvFormer's SepConv in stages 1-2, HyenaPixel (no qk/out norms) in stages 3-4."""
    return [SepConv, SepConv, hpx_mixer(2, norm=False), hpx_mixer(3, norm=False)]


def hpx_a_layout() -> list[MixerFactory]:
    """HpxAFormer: HyenaPixel (no qk/out norms) in stages 1-2, self-attention in stages 3-4."""
    return [hpx_mixer(0, norm=False), hpx_mixer(1, norm=False), Attention, Attention]


def hb_a_layout() -> list[MixerFactory]:
    """HbAFormer: bidirectional Hyena (no qk/out norms) in stages 1-2, self-attention in stages 3-4."""
    return [hb_mixer(0, norm=False), hb_mixer(1, norm=False), Attention, Attention]


def with_kernel_sizes(mixers: list[MixerFactory], kernel_sizes: Sequence[int] | None) -> list[MixerFactory]:
    """Override the long-kernel size of the HyenaPixel stages (e.g. [191, 95, 47, 23] at 384 px)."""
    if kernel_sizes is None:
        return mixers
    if len(kernel_sizes) != len(mixers):
        raise ValueError(f"kernel_sizes needs one entry per stage ({len(mixers)}), got {list(kernel_sizes)}")
    return [
        partial(m, kernel_size=ks) if isinstance(m, partial) and m.func is HyenaPixelMixer else m
        for m, ks in zip(mixers, kernel_sizes)
    ]


def _create(variant: str, pretrained: bool, size: ModelSize, mixers: list[MixerFactory], **kwargs) -> MetaFormer:
    """Build ``variant`` through timm (pretrained cfg, checkpoint filter, ``features_only``); keyword arguments
    override ``depths``, ``dims``, ``token_mixers``, ``kernel_sizes`` and every :class:`MetaFormer` argument."""
    mixers = kwargs.pop("token_mixers", None) or mixers
    mixers = with_kernel_sizes(mixers, kwargs.pop("kernel_sizes", None))
    feature_cls = kwargs.get("feature_cls")
    if kwargs.get("features_only") and feature_cls not in (None, "getter"):
        # timm's hook/dict extractors read module outputs, and the stages run channels-last (B, H, W, C) inside
        raise ValueError(
            f"feature_cls={feature_cls!r} is not supported: {variant} gives its feature maps (B, C, H, W) through "
            "forward_intermediates, timm's 'getter' extractor (the default; leave feature_cls out)"
        )
    if pretrained:
        _check_local_weights(kwargs)
    return build_model_with_cfg(
        MetaFormer,
        variant,
        pretrained,
        pretrained_filter_fn=checkpoint_filter_fn,
        feature_cfg=dict(out_indices=(0, 1, 2, 3), feature_cls="getter"),
        depths=kwargs.pop("depths", size.depths),
        dims=kwargs.pop("dims", size.dims),
        token_mixers=mixers,
        **kwargs,
    )


def _check_local_weights(kwargs: dict) -> None:
    """A local weights file named by ``pretrained_cfg_overlay=dict(file=...)`` (or ``pretrained_cfg``) must exist:
    timm raises a bare ``FileNotFoundError`` without the path otherwise."""
    for key in ("pretrained_cfg_overlay", "pretrained_cfg"):
        cfg = kwargs.get(key)
        file = cfg.get("file") if isinstance(cfg, dict) else getattr(cfg, "file", None)
        if file and not Path(file).exists():
            raise FileNotFoundError(
                errno.ENOENT,
                f"pretrained weights file not found ({key} file={str(file)!r}, resolved {Path(file).resolve()}); "
                "pass the path of an official .bin/.pth/.safetensors checkpoint or a run's .safetensors",
                str(file),
            )


# ---- pretrained configurations: one entry per registered name ----------------------------------------------------
def _cfg(hf_hub_id: str | None = None, **kwargs) -> dict:
    cfg = dict(
        num_classes=1000,
        input_size=(3, 224, 224),
        pool_size=(7, 7),
        crop_pct=1.0,
        interpolation="bicubic",
        mean=IMAGENET_DEFAULT_MEAN,
        std=IMAGENET_DEFAULT_STD,
        first_conv="stem.conv",
        classifier="head.fc2",
        license="apache-2.0",
        paper_ids="arXiv:2402.19305",
    )
    if hf_hub_id:
        cfg["hf_hub_id"] = hf_hub_id
    return {**cfg, **kwargs}


_AT_384 = dict(input_size=(3, 384, 384), pool_size=(12, 12))

default_cfgs = generate_default_cfgs(
    {
        "hpx_former_s4": _cfg(),
        "hpx_former_s12": _cfg(),
        "hpx_former_s18.westai_in1k": _cfg("Spravil/hpx_former_s18.westai_in1k"),
        "hpx_former_b36.westai_in1k": _cfg("Spravil/hpx_former_b36.westai_in1k"),
        "hpx_former_s18_384.westai_in1k_ema_384": _cfg("Spravil/hpx_former_s18.westai_in1k_ema_384", **_AT_384),
        "hpx_former_b36_384": _cfg(**_AT_384),
        "hb_former_s4": _cfg(),
        "hb_former_s12": _cfg(),
        "hb_former_s18.westai_in1k": _cfg("Spravil/hb_former_s18.westai_in1k"),
        "hb_former_b36.westai_in1k": _cfg("Spravil/hb_former_b36.westai_in1k"),
        "c_hpx_former_s4": _cfg(),
        "c_hpx_former_s12": _cfg(),
        "c_hpx_former_s18.westai_in1k": _cfg("Spravil/c_hpx_former_s18.westai_in1k"),
        "c_hpx_former_b36": _cfg(),
        "hpx_a_former_s4": _cfg(),
        "hpx_a_former_s12": _cfg(),
        "hpx_a_former_s18.westai_in1k": _cfg("Spravil/hpx_a_former_s18.westai_in1k"),
        "hpx_a_former_b36": _cfg(),
        "hb_a_former_s4": _cfg(),
        "hb_a_former_s12": _cfg(),
        "hb_a_former_s18.westai_in1k": _cfg("Spravil/hb_a_former_s18.westai_in1k"),
        "hb_a_former_b36": _cfg(),
    }
)

REGISTERED_MODELS = list(default_cfgs)  # every name below has exactly one cfg entry (tested)
OFFICIAL_WEIGHTS = {name: cfg.default.hf_hub_id for name, cfg in default_cfgs.items() if cfg.default.hf_hub_id}


# ---- the registered models ---------------------------------------------------------------------------------------
@register_model
def hpx_former_s4(pretrained: bool = False, **kwargs) -> MetaFormer:
    """HpxFormer-S4: HyenaPixel in every stage."""
    return _create("hpx_former_s4", pretrained, SIZES["s4"], hpx_layout(norm=True), **kwargs)


@register_model
def hpx_former_s12(pretrained: bool = False, **kwargs) -> MetaFormer:
    """HpxFormer-S12: HyenaPixel in every stage."""
    return _create("hpx_former_s12", pretrained, SIZES["s12"], hpx_layout(norm=True), **kwargs)


@register_model
def hpx_former_s18(pretrained: bool = False, **kwargs) -> MetaFormer:
    """HpxFormer-S18: HyenaPixel in every stage (official weights)."""
    return _create("hpx_former_s18", pretrained, SIZES["s18"], hpx_layout(norm=True), **kwargs)


@register_model
def hpx_former_b36(pretrained: bool = False, **kwargs) -> MetaFormer:
    """HpxFormer-B36: HyenaPixel in every stage (official weights)."""
    return _create("hpx_former_b36", pretrained, SIZES["b36"], hpx_layout(norm=True), **kwargs)


@register_model
def hpx_former_s18_384(pretrained: bool = False, **kwargs) -> MetaFormer:
    """HpxFormer-S18 fine-tuned at 384 px with the 224 px kernels (official EMA weights)."""
    return _create("hpx_former_s18_384", pretrained, SIZES["s18"], hpx_layout(norm=True), **kwargs)


@register_model
def hpx_former_b36_384(pretrained: bool = False, **kwargs) -> MetaFormer:
    """HpxFormer-B36 configured for 384 px input with the 224 px kernels."""
    return _create("hpx_former_b36_384", pretrained, SIZES["b36"], hpx_layout(norm=True), **kwargs)


@register_model
def hb_former_s4(pretrained: bool = False, **kwargs) -> MetaFormer:
    """HbFormer-S4: bidirectional Hyena in every stage."""
    return _create("hb_former_s4", pretrained, SIZES["s4"], hb_layout(norm=False), **kwargs)


@register_model
def hb_former_s12(pretrained: bool = False, **kwargs) -> MetaFormer:
    """HbFormer-S12: bidirectional Hyena in every stage."""
    return _create("hb_former_s12", pretrained, SIZES["s12"], hb_layout(norm=False), **kwargs)


@register_model
def hb_former_s18(pretrained: bool = False, **kwargs) -> MetaFormer:
    """HbFormer-S18: bidirectional Hyena in every stage (official weights)."""
    return _create("hb_former_s18", pretrained, SIZES["s18"], hb_layout(norm=False), **kwargs)


@register_model
def hb_former_b36(pretrained: bool = False, **kwargs) -> MetaFormer:
    """HbFormer-B36: bidirectional Hyena with qk/out norms in every stage (official weights)."""
    return _create("hb_former_b36", pretrained, SIZES["b36"], hb_layout(norm=True), **kwargs)


@register_model
def c_hpx_former_s4(pretrained: bool = False, **kwargs) -> MetaFormer:
    """CHpxFormer-S4: SepConv, then HyenaPixel."""
    return _create("c_hpx_former_s4", pretrained, SIZES["s4"], c_hpx_layout(), **kwargs)


@register_model
def c_hpx_former_s12(pretrained: bool = False, **kwargs) -> MetaFormer:
    """CHpxFormer-S12: SepConv, then HyenaPixel."""
    return _create("c_hpx_former_s12", pretrained, SIZES["s12"], c_hpx_layout(), **kwargs)


@register_model
def c_hpx_former_s18(pretrained: bool = False, **kwargs) -> MetaFormer:
    """CHpxFormer-S18: SepConv, then HyenaPixel (official weights)."""
    return _create("c_hpx_former_s18", pretrained, SIZES["s18"], c_hpx_layout(), **kwargs)


@register_model
def c_hpx_former_b36(pretrained: bool = False, **kwargs) -> MetaFormer:
    """CHpxFormer-B36: SepConv, then HyenaPixel."""
    return _create("c_hpx_former_b36", pretrained, SIZES["b36"], c_hpx_layout(), **kwargs)


@register_model
def hpx_a_former_s4(pretrained: bool = False, **kwargs) -> MetaFormer:
    """HpxAFormer-S4: HyenaPixel, then attention."""
    return _create("hpx_a_former_s4", pretrained, SIZES["s4"], hpx_a_layout(), **kwargs)


@register_model
def hpx_a_former_s12(pretrained: bool = False, **kwargs) -> MetaFormer:
    """HpxAFormer-S12: HyenaPixel, then attention."""
    return _create("hpx_a_former_s12", pretrained, SIZES["s12"], hpx_a_layout(), **kwargs)


@register_model
def hpx_a_former_s18(pretrained: bool = False, **kwargs) -> MetaFormer:
    """HpxAFormer-S18: HyenaPixel, then attention (official weights)."""
    return _create("hpx_a_former_s18", pretrained, SIZES["s18"], hpx_a_layout(), **kwargs)


@register_model
def hpx_a_former_b36(pretrained: bool = False, **kwargs) -> MetaFormer:
    """HpxAFormer-B36: HyenaPixel, then attention."""
    return _create("hpx_a_former_b36", pretrained, SIZES["b36"], hpx_a_layout(), **kwargs)


@register_model
def hb_a_former_s4(pretrained: bool = False, **kwargs) -> MetaFormer:
    """HbAFormer-S4: bidirectional Hyena, then attention."""
    return _create("hb_a_former_s4", pretrained, SIZES["s4"], hb_a_layout(), **kwargs)


@register_model
def hb_a_former_s12(pretrained: bool = False, **kwargs) -> MetaFormer:
    """HbAFormer-S12: bidirectional Hyena, then attention."""
    return _create("hb_a_former_s12", pretrained, SIZES["s12"], hb_a_layout(), **kwargs)


@register_model
def hb_a_former_s18(pretrained: bool = False, **kwargs) -> MetaFormer:
    """HbAFormer-S18: bidirectional Hyena, then attention (official weights)."""
    return _create("hb_a_former_s18", pretrained, SIZES["s18"], hb_a_layout(), **kwargs)


@register_model
def hb_a_former_b36(pretrained: bool = False, **kwargs) -> MetaFormer:
    """HbAFormer-B36: bidirectional Hyena, then attention."""
    return _create("hb_a_former_b36", pretrained, SIZES["b36"], hb_a_layout(), **kwargs)
