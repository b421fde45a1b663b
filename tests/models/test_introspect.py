"""The shared model lookups of hyenapixel.models.introspect, checked against what the model itself does (its
forward's shapes, its stem) and against timm's own configs."""

from __future__ import annotations

import pytest
import timm
import torch
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from torch import nn

from hyenapixel.models import (
    LONG_CONV_MIXERS,
    data_config,
    default_input_size,
    input_channels,
    input_side,
    model_name,
    module_inputs,
    stage_sizes,
)

SMALL = dict(dims=(8, 16, 24, 32))


@pytest.mark.parametrize("size", [(32, 32), (64, 96), (75, 41), (130, 67)])
def test_stage_sizes_are_the_forward_feature_sizes(size: tuple[int, int]) -> None:
    model = timm.create_model("hpx_former_s4", **SMALL).eval()
    with torch.no_grad():
        feats = model.forward_intermediates(torch.zeros(1, 3, *size), intermediates_only=True)
    assert stage_sizes(model, *size) == [tuple(f.shape[-2:]) for f in feats]


def test_module_inputs_sees_every_mixer_at_its_stage_size_and_restores_the_mode() -> None:
    model = timm.create_model("hpx_former_s4", in_chans=1, **SMALL).train()
    mixers = {n: m for n, m in model.named_modules() if isinstance(m, LONG_CONV_MIXERS)}
    shapes = module_inputs(model, mixers, (64, 96))
    assert model.training
    assert set(shapes) == set(mixers)
    expected = stage_sizes(model, 64, 96)
    for name, shape in shapes.items():
        stage = int(name.split(".")[1])
        assert tuple(shape) == (1, *expected[stage], SMALL["dims"][stage])


def test_module_inputs_lets_the_models_own_error_through() -> None:
    model = timm.create_model("hpx_former_s4", **SMALL)
    with pytest.raises(ValueError, match="32"):
        module_inputs(model, {"stem": model.stem}, 16)


def test_input_channels_from_attribute_stem_or_config() -> None:
    assert input_channels(timm.create_model("hpx_former_s4", in_chans=1, **SMALL)) == 1
    assert input_channels(timm.create_model("resnet10t", in_chans=5)) == 5
    assert input_channels(nn.Sequential(nn.Identity(), nn.Conv2d(6, 4, 3), nn.Conv2d(4, 2, 1))) == 6  # the stem's
    no_conv = nn.Linear(4, 4)
    assert input_channels(no_conv) == 3
    no_conv.pretrained_cfg = {"input_size": (2, 32, 32)}
    assert input_channels(no_conv) == 2


def test_input_side_reads_both_stored_forms() -> None:
    assert input_side(None) is None
    assert input_side(64) == 64
    assert input_side((3, 48, 48)) == 48
    assert input_side([1, 32, 32]) == 32


def test_data_config_of_a_name_and_a_model_match_the_pretrained_cfg() -> None:
    pcfg = timm.models.get_pretrained_cfg("hpx_former_s18_384")
    cfg = data_config("hpx_former_s18_384")
    assert cfg["input_size"] == pcfg.input_size[-1] == 384
    assert cfg["mean"] == tuple(pcfg.mean) and cfg["std"] == tuple(pcfg.std)
    assert cfg["crop_pct"] == pcfg.crop_pct and cfg["interpolation"] == pcfg.interpolation
    model = timm.create_model("hpx_former_s4", **SMALL)
    assert data_config(model) == data_config("hpx_former_s4")
    assert default_input_size(model) == (224, 224) and model_name(model) == "hpx_former_s4"


def test_data_config_falls_back_to_imagenet_for_a_plain_module() -> None:
    cfg = data_config(nn.Conv2d(3, 3, 3))
    assert cfg == {
        "input_size": 224,
        "mean": tuple(IMAGENET_DEFAULT_MEAN),
        "std": tuple(IMAGENET_DEFAULT_STD),
        "crop_pct": 0.875,
        "interpolation": "bicubic",
    }
    assert model_name(nn.Conv2d(3, 3, 3)) == "Conv2d" and default_input_size(nn.Conv2d(3, 3, 3)) == (224, 224)
