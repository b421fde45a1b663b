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
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial

from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model
from torch import nn

from hyenapixel.layers import Attention, LayerNormNoBias, SepConv
from hyenapixel.mixers import BidirectionalHyenaMixer, HyenaPixelMixer
from hyenapixel.models.convert import checkpoint_filter_fn
from hyenapixel.models.metaformer import MetaFormer

KERNEL_SIZES = (111, 55, 27, 13)  # 2D kernels: ~2x the 56/28/14/7 feature maps at 224 px
FILTER_EMB_DIMS = (32, 32, 48, 64)  # K per stage; FFN width 2K
TRAIN_SEQ_LENS = (56 * 56, 28 * 28, 14 * 14, 7 * 7)  # 1D filters have length 2L - 1
_S_DIMS, _B_DIMS = (64, 128, 320, 512), (128, 256, 512, 768)
_DEPTHS = {"s4": (1, 1, 1, 1), "s12": (2, 2, 6, 2), "s18": (3, 3, 9, 3), "b36": (3, 12, 18, 3)}
_MIXER_NORM = partial(LayerNormNoBias, eps=1e-5)

MixerFactory = Callable[[int], nn.Module]


def hpx_mixer(stage: int, norm: bool) -> MixerFactory:
    """HyenaPixel mixer of a stage with the paper's kernel size and filter width."""
    return partial(
        HyenaPixelMixer,
        kernel_size=KERNEL_SIZES[stage],
        filter_emb_dim=FILTER_EMB_DIMS[stage],
        qk_norm_layer=_MIXER_NORM if norm else None,
        out_norm_layer=_MIXER_NORM if norm else None,
    )


def hb_mixer(stage: int, norm: bool) -> MixerFactory:
    """Bidirectional Hyena mixer of a stage: filter length 2 * (H*W) - 1, embedding K + 1, FFN width 2K."""
    k = FILTER_EMB_DIMS[stage]
    return partial(
        BidirectionalHyenaMixer,
        seq_len=TRAIN_SEQ_LENS[stage],
        filter_emb_dim=k + 1,
        filter_hidden=2 * k,
        qk_norm_layer=_MIXER_NORM if norm else None,
        out_norm_layer=_MIXER_NORM if norm else None,
    )


def _layout(family: str, size: str) -> list[MixerFactory]:
    if family == "hpx_former":
        return [hpx_mixer(i, norm=True) for i in range(4)]
    if family == "hb_former":
        return [hb_mixer(i, norm=size == "b36") for i in range(4)]
    if family == "c_hpx_former":
        return [SepConv, SepConv, hpx_mixer(2, norm=False), hpx_mixer(3, norm=False)]
    if family == "hpx_a_former":
        return [hpx_mixer(0, norm=False), hpx_mixer(1, norm=False), Attention, Attention]
    if family == "hb_a_former":
        return [hb_mixer(0, norm=False), hb_mixer(1, norm=False), Attention, Attention]
    raise ValueError(f"unknown family {family!r}")


def _with_kernel_sizes(mixers: list[MixerFactory], kernel_sizes: Sequence[int] | None) -> list[MixerFactory]:
    """Override the long-kernel size of the HyenaPixel stages (e.g. [191, 95, 47, 23] at 384 px)."""
    if kernel_sizes is None:
        return mixers
    if len(kernel_sizes) != len(mixers):
        raise ValueError(f"kernel_sizes needs one entry per stage ({len(mixers)}), got {list(kernel_sizes)}")
    return [
        partial(m, kernel_size=ks) if isinstance(m, partial) and m.func is HyenaPixelMixer else m
        for m, ks in zip(mixers, kernel_sizes)
    ]


def _create(variant: str, pretrained: bool = False, **kwargs) -> MetaFormer:
    family, size = variant.rsplit("_", 1) if not variant.endswith("_384") else variant[:-4].rsplit("_", 1)
    depths = kwargs.pop("depths", _DEPTHS[size])
    dims = kwargs.pop("dims", _B_DIMS if size == "b36" else _S_DIMS)
    mixers = kwargs.pop("token_mixers", None) or _layout(family, size)
    mixers = _with_kernel_sizes(mixers, kwargs.pop("kernel_sizes", None))
    return build_model_with_cfg(
        MetaFormer,
        variant,
        pretrained,
        pretrained_filter_fn=checkpoint_filter_fn,
        feature_cfg=dict(out_indices=(0, 1, 2, 3), feature_cls="getter"),
        depths=depths,
        dims=dims,
        token_mixers=mixers,
        **kwargs,
    )


def _cfg(hub: str | None = None, **kwargs) -> dict:
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
    if hub:
        cfg["hf_hub_id"] = hub
    cfg.update(kwargs)
    return cfg


FAMILIES = ("hpx_former", "hb_former", "c_hpx_former", "hpx_a_former", "hb_a_former")
SIZES = ("s4", "s12", "s18", "b36")
OFFICIAL_WEIGHTS = {
    "hpx_former_s18": "Spravil/hpx_former_s18.westai_in1k",
    "hpx_former_b36": "Spravil/hpx_former_b36.westai_in1k",
    "hb_former_s18": "Spravil/hb_former_s18.westai_in1k",
    "hb_former_b36": "Spravil/hb_former_b36.westai_in1k",
    "c_hpx_former_s18": "Spravil/c_hpx_former_s18.westai_in1k",
    "hpx_a_former_s18": "Spravil/hpx_a_former_s18.westai_in1k",
    "hb_a_former_s18": "Spravil/hb_a_former_s18.westai_in1k",
    "hpx_former_s18_384": "Spravil/hpx_former_s18.westai_in1k_ema_384",
}

_cfgs: dict[str, dict] = {}
for _family in FAMILIES:
    for _size in SIZES:
        _name = f"{_family}_{_size}"
        _hub = OFFICIAL_WEIGHTS.get(_name)
        _cfgs[f"{_name}.westai_in1k" if _hub else _name] = _cfg(_hub)
_cfgs["hpx_former_s18_384.westai_in1k_ema_384"] = _cfg(
    OFFICIAL_WEIGHTS["hpx_former_s18_384"], input_size=(3, 384, 384), pool_size=(12, 12)
)
_cfgs["hpx_former_b36_384"] = _cfg(input_size=(3, 384, 384), pool_size=(12, 12))
default_cfgs = generate_default_cfgs(_cfgs)


def _register(name: str) -> None:
    def fn(pretrained: bool = False, **kwargs) -> MetaFormer:
        return _create(name, pretrained=pretrained, **kwargs)

    fn.__name__ = name
    fn.__qualname__ = name
    fn.__doc__ = f"``{name}`` (HyenaPixel paper, Section 3). Keyword arguments override depths, dims, etc."
    fn.__module__ = __name__
    globals()[name] = register_model(fn)


REGISTERED_MODELS = [f"{f}_{s}" for f in FAMILIES for s in SIZES] + ["hpx_former_s18_384", "hpx_former_b36_384"]
for _name in REGISTERED_MODELS:
    _register(_name)
