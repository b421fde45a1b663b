"""3-channel weights (official or ours) in a model with other ``in_chans``: the first convolution is adapted the way
timm adapts pretrained weights, through timm's loader and through ours."""

from __future__ import annotations

from pathlib import Path

import pytest
import timm
import torch

import hyenapixel  # noqa: F401  (registers the models)
from hyenapixel.models import load_checkpoint_into


def _pretrained(path: Path, in_chans: int) -> torch.nn.Module:
    """Through timm's own pretrained loading (the file as the hub weights)."""
    overlay = {"file": str(path), "num_classes": 10}
    return timm.create_model("hpx_former_s4", pretrained=True, in_chans=in_chans, pretrained_cfg_overlay=overlay)


@pytest.fixture(scope="module")
def rgb(tmp_path_factory: pytest.TempPathFactory) -> tuple[torch.nn.Module, Path]:
    torch.manual_seed(0)
    model = timm.create_model("hpx_former_s4", num_classes=10).eval()
    path = tmp_path_factory.mktemp("w") / "rgb.pth"
    torch.save(model.state_dict(), path)
    return model, path


def test_grey_model_sees_what_the_rgb_model_sees_of_a_grey_image(rgb) -> None:
    model, path = rgb
    grey = torch.randn(2, 1, 64, 64)
    with torch.no_grad():
        want = model(grey.expand(-1, 3, -1, -1))  # summed RGB filters on one channel == RGB filters on 3 equal ones
        via_timm = _pretrained(path, 1).eval()
        ours = load_checkpoint_into(timm.create_model("hpx_former_s4", in_chans=1, num_classes=10), path).eval()
        for m in (via_timm, ours):
            torch.testing.assert_close(m(grey), want, rtol=1e-5, atol=1e-5)


def test_four_channels_repeat_and_rescale_the_rgb_filters(rgb) -> None:
    model, path = rgb
    w = model.state_dict()["stem.conv.weight"]
    ours = load_checkpoint_into(timm.create_model("hpx_former_s4", in_chans=4, num_classes=10), path)
    torch.testing.assert_close(ours.state_dict()["stem.conv.weight"], w[:, [0, 1, 2, 0]] * 0.75)
    via_timm = _pretrained(path, 4)
    torch.testing.assert_close(via_timm.state_dict()["stem.conv.weight"], w[:, [0, 1, 2, 0]] * 0.75)


def test_other_stem_shapes_are_still_refused(rgb) -> None:
    _, path = rgb
    with pytest.raises(ValueError, match="shape mismatches"):
        load_checkpoint_into(timm.create_model("hpx_former_s4", dims=(32, 64, 128, 256), num_classes=10), path)


def test_wrapped_grey_checkpoint_loads_and_names_its_channels(tmp_path: Path) -> None:
    from hyenapixel.models import WeightsError, load_model

    grey = timm.create_model("hpx_former_s4", in_chans=1, num_classes=7).eval()
    path = tmp_path / "wrapped.pth"
    torch.save({"state_dict": grey.state_dict(), "epoch": torch.tensor(3)}, path)
    loaded = load_model("hpx_former_s4", checkpoint=path, in_chans=1).eval()  # classes read through the wrapper
    x = torch.randn(1, 1, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), grey(x), rtol=0, atol=0)
    with pytest.raises(WeightsError, match=r"takes 1 input channels, model 'hpx_former_s4' 3; .* in_chans=1$"):
        load_model("hpx_former_s4", checkpoint=path)
