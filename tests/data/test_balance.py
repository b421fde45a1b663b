"""Tests of the built-in Balance dataset: labels from an independent ink count, margin, mirror symmetry, API."""

import numpy as np
import pytest
import torch

from hyenapixel.data import (
    BALANCE_DIFFICULTIES,
    BUILTIN_DATASETS,
    BalanceDataset,
    BalanceDifficulty,
    DataError,
    build_datasets,
)


def signed_ink(image: np.ndarray) -> tuple[float, float]:
    """(left - right, left + right) ink by a weight map: +1 left of the centre line, -1 right of it, 0 on it."""
    w = image.shape[1]
    centre = (w - 1) / 2
    cols = torch.arange(w, dtype=torch.float64)
    weight = torch.sign(centre - cols)  # the centre column of an odd width gets 0
    x = torch.from_numpy(image.astype(np.float64)) / 255.0
    return float((x * weight).sum()), float((x * weight.abs()).sum())


@pytest.mark.parametrize("difficulty", sorted(BALANCE_DIFFICULTIES))
@pytest.mark.parametrize("size", [32, 33, 48])
def test_label_is_the_heavier_half_with_margin(difficulty: str, size: int) -> None:
    ds = BalanceDataset(80, image_size=size, difficulty=difficulty, seed=5)
    cfg = ds.difficulty
    for i in range(len(ds)):
        s = ds.render(i, return_meta=True)
        diff, total = signed_ink(s.image)
        assert s.label == ds.label(i) == int(diff > 0)
        assert abs(diff) >= cfg.margin * total - 1e-9 and total > 0
        assert s.left - s.right == pytest.approx(diff) and s.left + s.right == pytest.approx(total)
        assert cfg.min_objects <= s.num_objects <= cfg.max_objects
        ink = s.image[s.image > 0]
        assert ink.min() >= round(cfg.min_intensity * 255) - 1  # object brightness range
        assert len(np.unique(ink)) <= s.num_objects  # every object has one brightness


def test_classes_are_mirror_images() -> None:
    """Statistics that a left-right flip keeps (ink, objects) have the same distribution in both classes."""
    ds = BalanceDataset(1200, seed=7)
    ink = np.array([ds.render(i).astype(np.float64).sum() / 255 for i in range(len(ds))])
    labels = np.array(ds.targets)
    a, b = ink[labels == 1], ink[labels == 0]
    se = np.sqrt(a.var() / len(a) + b.var() / len(b))
    assert abs(a.mean() - b.mean()) < 4 * se
    # whereas the heavier side decides the label every time
    flipped = [signed_ink(ds.render(i)[:, ::-1].copy())[0] > 0 for i in range(40)]
    assert flipped == [not bool(t) for t in labels[:40]]


def test_deterministic_balanced_and_normalised() -> None:
    ds = BalanceDataset(101, seed=3, in_chans=3)
    assert np.array_equal(ds.render(17), BalanceDataset(101, seed=3).render(17))
    assert not np.array_equal(ds.render(17), BalanceDataset(101, seed=4).render(17))
    targets = ds.targets
    assert abs(sum(targets) - (len(ds) - sum(targets))) <= 1
    x, y = ds[4]
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32 and y == 0
    assert torch.allclose(x[0], torch.from_numpy(ds.render(4)).float() / 127.5 - 1)
    assert ds.classes == ["right-heavier", "left-heavier"] and ds.num_classes == 2
    train, val = BalanceDataset.splits(10, 6, seed=2)
    assert train.seed != val.seed and not np.array_equal(train.render(0), val.render(0))


def test_bad_arguments_are_named() -> None:
    with pytest.raises(ValueError, match="difficulty"):
        BalanceDataset(4, difficulty="impossible")
    with pytest.raises(TypeError, match="BalanceDifficulty"):
        BalanceDataset(4, difficulty=object())
    with pytest.raises(ValueError, match="margin"):
        BalanceDifficulty(margin=1.0)
    with pytest.raises(ValueError, match="min_objects"):
        BalanceDifficulty(min_objects=0)
    with pytest.raises(ValueError, match="image_size"):
        BalanceDataset(4, image_size=4)
    with pytest.raises(IndexError):
        BalanceDataset(4)[4]


def test_builder_selects_the_builtin_dataset() -> None:
    assert set(BUILTIN_DATASETS) == {"balance", "pathfinder", "echo"}
    train, val, classes = build_datasets(None, builtin_train_samples=6, builtin_val_samples=4)
    assert isinstance(train, BalanceDataset) and len(train) == 6 and len(val) == 4
    assert classes == BalanceDataset.classes
    train, _, classes = build_datasets(None, builtin="pathfinder", builtin_train_samples=2, builtin_val_samples=2)
    assert type(train).__name__ == "PathfinderDataset" and classes == ["disconnected", "connected"]
    train, _, classes = build_datasets(None, builtin="echo", builtin_train_samples=2, builtin_val_samples=2)
    assert type(train).__name__ == "EchoDataset" and classes == ["other-shift", "echo"]
    with pytest.raises(ValueError, match="balance, pathfinder, echo"):
        build_datasets(None, builtin="mnist")
    with pytest.raises(DataError, match="built-in balance"):
        build_datasets(None, num_classes=10)
