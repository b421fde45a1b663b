"""The built-in shapes detection/segmentation data: deterministic, boxes/masks/semantic map consistent."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hyenapixel.data.shapes import SHAPE_CLASSES, ShapesDataset, collate_detection


def test_deterministic_and_seed_dependent():
    a, b = ShapesDataset(6, image_size=48, seed=5), ShapesDataset(6, image_size=48, seed=5, cache=False)
    for i in (0, 3, 5):
        x1, t1 = a[i]
        x2, t2 = b[i]
        torch.testing.assert_close(x1, x2)
        torch.testing.assert_close(t1["masks"], t2["masks"])
    other = ShapesDataset(6, image_size=48, seed=6)
    assert not torch.equal(a[0][0], other[0][0])
    assert not torch.equal(a[0][0], a[1][0])


def test_targets_are_consistent():
    ds = ShapesDataset(40, image_size=64, seed=0, min_visible=20)
    counts = np.zeros(len(SHAPE_CLASSES), dtype=int)
    for i in range(len(ds)):
        image, t = ds[i]
        assert image.shape == (3, 64, 64) and image.dtype == torch.float32
        assert 0.0 <= image.min() and image.max() <= 1.0
        masks, boxes, labels, sem = (
            t["masks"].numpy().astype(bool),
            t["boxes"].numpy(),
            t["labels"].numpy(),
            t["semantic"].numpy(),
        )
        assert masks.shape[0] == boxes.shape[0] == labels.shape[0]
        assert ((labels >= 1) & (labels <= 3)).all()
        assert (masks.sum(0) <= 1).all()  # visible parts never overlap
        for m, box, label in zip(masks, boxes, labels):
            assert m.sum() >= 20
            ys, xs = np.nonzero(m)
            np.testing.assert_array_equal(box, [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
            assert (sem[m] == label).all()
        assert (sem[masks.sum(0) == 0] == 0).all()
        counts += np.bincount(sem.ravel(), minlength=len(SHAPE_CLASSES))
    assert (counts > 0).all()  # every class occurs


def test_splits_and_collate():
    train, val = ShapesDataset.splits(4, 2, seed=1, image_size=32)
    assert (train.seed, val.seed) == (2, 3) and len(train) == 4 and len(val) == 2
    images, targets = collate_detection([train[0], train[1]])
    assert len(images) == len(targets) == 2


@pytest.mark.parametrize(
    "kwargs, match",
    [(dict(image_size=16), "image_size must be >= 32"), (dict(size_range=(0.3, 0.2)), "size_range"),
     (dict(max_objects=0), "max_objects")],
)  # fmt: skip
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ShapesDataset(4, **kwargs)
