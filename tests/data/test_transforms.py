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


def test_eval_transform_is_resize_center_crop_normalise(image: Image.Image) -> None:
    tf = build_transforms(False, 32, crop_pct=0.8, mean=(0.5, 0.4, 0.3), std=(0.5, 0.25, 0.2))
    x = tf(image)
    assert x.shape == (3, 32, 32) and torch.equal(x, tf(image))
    # by hand: short side (50) to 32 / 0.8 = 40 px, so 50 x 70 -> 40 x 56 (bicubic); the centre 32 x 32 starts at
    # row 4, column 12; then (pixel / 255 - mean) / std per channel
    resized = np.asarray(image.resize((56, 40), Image.BICUBIC), dtype=np.float32)[4:36, 12:44] / 255
    ref = (torch.from_numpy(resized).permute(2, 0, 1) - torch.tensor([0.5, 0.4, 0.3])[:, None, None]) / torch.tensor(
        [0.5, 0.25, 0.2]
    )[:, None, None]
    torch.testing.assert_close(x, ref, atol=1e-6, rtol=0)


@pytest.mark.parametrize("kwargs", [{"crop_pct": 0.0}, {"re_prob": 2.0}, {"re_mode": "zeros"}, {"mean": (0.5,)}])
def test_bad_transform_arguments(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        build_transforms(True, 32, **kwargs)


def test_mixup() -> None:
    assert build_mixup(0.0, 0.0, 0.5, 0.1, 10) is None
    assert isinstance(build_mixup(0.8, 1.0, 0.5, 0.1, 10), Mixup)
    mix = build_mixup(0.8, 0.0, 0.5, 0.1, 10)  # mixup only: x = lam x + (1 - lam) x reversed, targets alike
    images, labels = torch.randn(4, 3, 16, 16), torch.tensor([0, 1, 2, 3])
    x, y = mix(images.clone(), labels)
    # smoothed one-hot targets: 1 - 0.1 + 0.1 / 10 = 0.91 on the label, 0.1 / 10 = 0.01 elsewhere
    smooth = torch.full((4, 10), 0.01).scatter_(1, labels[:, None], 0.91)
    lam = (y[0, 0].item() - 0.01) / 0.9
    torch.testing.assert_close(y, lam * smooth + (1 - lam) * smooth.flip(0))
    torch.testing.assert_close(x, lam * images + (1 - lam) * images.flip(0))
    with pytest.raises(ValueError):
        build_mixup(-1.0, 0.0, 0.5, 0.1, 10)
