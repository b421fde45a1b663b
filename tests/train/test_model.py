"""Building the network of a run: the spec stored in checkpoints, recipe options reaching the model."""

from __future__ import annotations

import pytest
import torch

from hyenapixel.train.build import build_model, check_model_flag, model_spec
from hyenapixel.train.config import ConfigError, ModelConfig


def test_spec_carries_the_architecture_overrides() -> None:
    spec = model_spec(ModelConfig(dims=(8, 16, 24, 32), kernel_sizes=(15, 7, 3, 1), res_scale_stages=(2, 3)))
    assert spec == {
        "name": "hpx_former_s4",
        "kwargs": {
            "dims": [8, 16, 24, 32],
            "kernel_sizes": [15, 7, 3, 1],
            "res_scale_init_values": [None, None, 1.0, 1.0],
        },
    }
    model = build_model(spec, num_classes=3, drop_path=0.2, head_dropout=0.4)
    assert model.dims == [8, 16, 24, 32] and model.head_dropout == 0.4
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 3)
    assert sum(1 for n, _ in model.named_parameters() if "res_scale" in n) > 0  # last two stages


def test_head_dropout_of_other_timm_models_is_drop_rate() -> None:
    model = build_model({"name": "test_convnext", "kwargs": {}}, num_classes=2, head_dropout=0.3)
    assert model.drop_rate == 0.3


def test_unknown_model_lists_close_matches() -> None:
    with pytest.raises(ConfigError, match=r"--model: unknown model 'hpx_formr_s18'; close matches: hpx_former_s18"):
        check_model_flag("hpx_formr_s18")
    with pytest.raises(ConfigError, match="HyenaPixel models: hpx_former_s4"):
        check_model_flag("zzzzzzzzzz")
