"""Tests of the built-in Pathfinder dataset: determinism, balance, labels checked by flood fill, shapes."""

from collections import deque

import numpy as np
import pytest
import torch

from hyenapixel.data import PATHFINDER_DIFFICULTIES, PathfinderDataset, PathfinderDifficulty


def components(mask: np.ndarray) -> np.ndarray:
    """8-connected component labels of a boolean mask (0 = background), by breadth-first flood fill."""
    labels = np.zeros(mask.shape, dtype=np.int64)
    h, w = mask.shape
    count = 0
    for y, x in zip(*np.nonzero(mask)):
        if labels[y, x]:
            continue
        count += 1
        labels[y, x] = count
        queue = deque([(y, x)])
        while queue:
            a, b = queue.popleft()
            for c in range(max(a - 1, 0), min(a + 2, h)):
                for d in range(max(b - 1, 0), min(b + 2, w)):
                    if mask[c, d] and not labels[c, d]:
                        labels[c, d] = count
                        queue.append((c, d))
    return labels


@pytest.mark.parametrize("difficulty", sorted(PATHFINDER_DIFFICULTIES))
@pytest.mark.parametrize("size", [32, 48])
def test_label_matches_flood_fill(difficulty: str, size: int) -> None:
    ds = PathfinderDataset(60, image_size=size, difficulty=difficulty, seed=3)
    cfg = ds.difficulty
    for i in range(len(ds)):
        sample = ds.render(i, return_meta=True)
        assert sample.label == ds.label(i)
        traces = np.zeros_like(sample.image, dtype=bool)
        for path in sample.paths:
            traces[path[:, 0], path[:, 1]] = True
        ink = sample.image > 0
        assert (ink <= traces).all(), "ink outside the generator's paths"
        if not cfg.dashed:
            assert (ink == traces).all()
        labels = components(traces)
        assert labels.max() == cfg.num_paths, "paths touch each other"
        (py, px), (qy, qx) = sample.endpoints
        # the dots are drawn in full (dashing never removes them)
        for y, x in sample.endpoints:
            r = cfg.dot_radius
            assert ink[y - r : y + r + 1, x].all() and ink[y, x - r : x + r + 1].all()
        connected = labels[py, px] == labels[qy, qx]
        assert connected == bool(sample.label), f"sample {i}: label {sample.label} but flood fill says {connected}"
        assert (sample.endpoint_paths[0] == sample.endpoint_paths[1]) == connected


def test_deterministic_from_seed_and_index() -> None:
    a = PathfinderDataset(20, seed=5)
    b = PathfinderDataset(20, seed=5, cache=False)
    for i in [7, 0, 19, 3]:  # access order does not matter
        assert torch.equal(a[i][0], b[i][0]) and a[i][1] == b[i][1]
    # sample i depends on (seed, i) only, not on the dataset length
    assert np.array_equal(PathfinderDataset(100, seed=5).render(19), a.render(19))
    assert not np.array_equal(PathfinderDataset(20, seed=6).render(3), a.render(3))
    assert torch.equal(a[-1][0], a[19][0])


def test_cache_and_precompute(monkeypatch) -> None:
    """A cached dataset renders each index once: after ``precompute`` (or a first access) reading a sample never
    renders again and gives the same image."""
    ds = PathfinderDataset(4, seed=1)
    rendered: list[int] = []
    render = ds.render
    monkeypatch.setattr(ds, "render", lambda i, *a, **k: rendered.append(i) or render(i, *a, **k))
    first = ds[2][0].clone()
    assert torch.equal(ds[2][0], first) and rendered == [2]  # the second read comes from the cache
    assert ds.precompute() is ds and sorted(rendered) == [0, 1, 2, 3]  # index 2 is not rendered again
    labels = [ds[i][1] for i in range(4)]
    assert sorted(rendered) == [0, 1, 2, 3] and labels == [
        PathfinderDataset(4, seed=1, cache=False)[i][1] for i in range(4)
    ]
    assert torch.equal(ds[2][0], first)
    with pytest.raises(ValueError):
        PathfinderDataset(4, cache=False).precompute()


def test_balanced_and_targets() -> None:
    ds = PathfinderDataset(101)
    targets = ds.targets
    assert abs(sum(targets) - (len(ds) - sum(targets))) <= 1
    assert [ds[i][1] for i in range(10)] == targets[:10]
    assert ds.num_classes == 2 and ds.classes == ["disconnected", "connected"]


def test_shapes_dtypes_and_normalization() -> None:
    ds = PathfinderDataset(4, image_size=40, in_chans=3, mean=0.5, std=0.5)
    x, y = ds[0]
    assert x.shape == (3, 40, 40) and x.dtype == torch.float32 and isinstance(y, int)
    assert set(torch.unique(x).tolist()) == {-1.0, 1.0}  # background 0 -> -1, ink 1 -> 1
    x1, _ = PathfinderDataset(4, image_size=40, in_chans=1, mean=[0.0], std=[1.0])[0]
    assert x1.shape == (1, 40, 40) and torch.equal(x1[0], (x[0] + 1) / 2)
    x2, _ = PathfinderDataset(4, image_size=40, mean=(0.1, 0.2, 0.3), std=(1.0, 2.0, 4.0))[0]
    assert torch.allclose(x2[2] * 4.0 + 0.3, x1[0])


def test_splits_have_disjoint_seeds() -> None:
    train, val = PathfinderDataset.splits(10, 6, seed=2, image_size=32)
    assert (len(train), len(val)) == (10, 6)
    assert train.seed != val.seed
    seeds = {s for k in range(4) for s in (ds.seed for ds in PathfinderDataset.splits(1, 1, seed=k))}
    assert len(seeds) == 8
    assert not np.array_equal(train.render(0), val.render(0))


def test_custom_difficulty_and_validation() -> None:
    cfg = PathfinderDifficulty(num_paths=2, min_length=0.5, max_length=0.6, curvature=0.0)
    ds = PathfinderDataset(6, difficulty=cfg)
    assert ds[5][0].shape == (3, 32, 32)
    with pytest.raises(ValueError, match="difficulty"):
        PathfinderDataset(4, difficulty="impossible")
    with pytest.raises(ValueError):
        PathfinderDifficulty(num_paths=1)
    with pytest.raises(ValueError):
        PathfinderDifficulty(dash_on=2, dash_off=0)
    with pytest.raises(ValueError):
        PathfinderDataset(4, image_size=8)
    with pytest.raises(ValueError):
        PathfinderDataset(4, mean=(0.5, 0.5), in_chans=3)
    with pytest.raises(IndexError):
        PathfinderDataset(4)[4]


def test_ink_and_dot_distance_match_between_classes() -> None:
    """Ink amount and dot distance have (nearly) the same statistics in both classes."""
    ds = PathfinderDataset(400, seed=11)
    ink = {0: [], 1: []}
    dist = {0: [], 1: []}
    for i in range(len(ds)):
        s = ds.render(i, return_meta=True)
        ink[s.label].append(int((s.image > 0).sum()))
        dist[s.label].append(float(np.linalg.norm(s.endpoints[0] - s.endpoints[1])))
    assert abs(np.mean(ink[0]) - np.mean(ink[1])) < 0.05 * np.mean(ink[1])
    assert abs(np.mean(dist[0]) - np.mean(dist[1])) < 1.0


def pattern_probe_accuracy(images: np.ndarray, labels: np.ndarray) -> float:
    """Held-out accuracy of a ridge-regression probe on the image's counts of 3x3 binary patterns.

    The counts are what a 3x3 convolution followed by global pooling can see: local evidence only.
    """
    padded = np.pad(images, ((0, 0), (1, 1), (1, 1)))
    s = images.shape[-1]
    codes = np.zeros(images.shape, dtype=np.int64)
    for bit, (dy, dx) in enumerate(np.ndindex(3, 3)):
        codes |= padded[:, dy : dy + s, dx : dx + s].astype(np.int64) << bit
    counts = np.stack([np.bincount(c.ravel(), minlength=512) for c in codes]).astype(np.float64)
    feats = np.log1p(counts)
    feats = (feats - feats.mean(0)) / (feats.std(0) + 1e-6)
    feats = np.c_[feats, np.ones(len(feats))]
    n = int(0.75 * len(labels))
    w = np.linalg.solve(feats[:n].T @ feats[:n] + 30.0 * np.eye(feats.shape[1]), feats[:n].T @ (2.0 * labels[:n] - 1))
    return float(((feats[n:] @ w > 0) == labels[n:]).mean())


def test_pooled_local_patterns_do_not_predict_label() -> None:
    """A bag of 3x3 patterns is at chance on the default preset, while the same probe detects the shared
    orientation of the two dots on a straight path (the shortcut that random end directions remove)."""

    def probe(difficulty: str | PathfinderDifficulty) -> float:
        ds = PathfinderDataset(2000, difficulty=difficulty, seed=0)
        images = np.stack([ds.render(i) for i in range(len(ds))]) > 0
        return pattern_probe_accuracy(images, np.array(ds.targets))

    assert probe(PathfinderDifficulty(curvature=0.0)) > 0.62  # the probe has power
    assert probe("default") < 0.6
