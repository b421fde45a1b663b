"""Tests of the timm transform and mixup wrappers."""

import numpy as np
import pytest
import torch
from PIL import Image
from timm.data import Mixup

from hyenapixel.data import build_mixup, build_transforms


@pytest.fixture
def image() -> Image.Image:
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 256, (50, 70, 3), dtype=np.uint8))


def test_train_transform_shape(image: Image.Image) -> None:
    tf = build_transforms(True, 32, auto_augment="rand-m9-mstd0.5-inc1", re_prob=0.25, re_mode="pixel")
    x = tf(image)
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32
    names = repr(tf)
    assert "RandomResizedCrop" in names and "RandAugment" in names and "RandomErasing" in names


def test_eval_transform_is_deterministic_center_crop(image: Image.Image) -> None:
    tf = build_transforms(False, 32, crop_pct=0.8, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    x = tf(image)
    assert x.shape == (3, 32, 32) and torch.equal(x, tf(image))
    assert "CenterCrop" in repr(tf) and "Resize" in repr(tf)
    assert x.min() >= -1.0 and x.max() <= 1.0


@pytest.mark.parametrize("kwargs", [{"crop_pct": 0.0}, {"re_prob": 2.0}, {"re_mode": "zeros"}, {"mean": (0.5,)}])
def test_bad_transform_arguments(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        build_transforms(True, 32, **kwargs)


def test_mixup() -> None:
    assert build_mixup(0.0, 0.0, 0.5, 0.1, 10) is None
    mix = build_mixup(0.8, 1.0, 0.5, 0.1, 10)
    assert isinstance(mix, Mixup)
    x, y = mix(torch.randn(4, 3, 16, 16), torch.tensor([0, 1, 2, 3]))
    assert x.shape == (4, 3, 16, 16) and y.shape == (4, 10)
    assert torch.allclose(y.sum(1), torch.ones(4))
    with pytest.raises(ValueError):
        build_mixup(-1.0, 0.0, 0.5, 0.1, 10)
