"""The built-in detection and segmentation task (a small stand-in for the paper's Section 4.3 COCO / ADE20k runs):
circles, squares and triangles of random size, rotation and colour on smooth random backgrounds, with boxes, instance
masks and a semantic map. No files, no downloads.

Sample ``i`` is rendered from a numpy generator seeded with ``(seed, i)`` only, so an item never depends on access
order, worker or process (as the built-in classification data of :mod:`hyenapixel.data.generated`). Colours are
random per object, so only the outline tells the classes apart. Later objects occlude earlier ones; masks and boxes
describe the visible part, and an object left with fewer than ``min_visible`` pixels is dropped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset

__all__ = ["SHAPE_CLASSES", "ShapesDataset", "ShapesSample", "collate_detection"]

SHAPE_CLASSES = ("background", "circle", "square", "triangle")
"""Class names by id; 0 is the background (torchvision detection and semantic maps alike)."""


@dataclass
class ShapesSample:
    """One rendered sample.

    Shape:
        image (H, W, 3) uint8; masks (N, H, W) bool; labels (N,) int64 in 1..3; semantic (H, W) int64.
    """

    image: np.ndarray
    masks: np.ndarray
    labels: np.ndarray
    semantic: np.ndarray


def _polygon_mask(xx: np.ndarray, yy: np.ndarray, vertices: np.ndarray) -> np.ndarray:
    """Pixels inside a convex polygon whose vertices run counter-clockwise (in x-right, y-down image axes)."""
    inside = np.ones(xx.shape, dtype=bool)
    for (x0, y0), (x1, y1) in zip(vertices, np.roll(vertices, -1, axis=0)):
        inside &= (x1 - x0) * (yy - y0) - (y1 - y0) * (xx - x0) >= 0
    return inside


def _regular_polygon(cx: float, cy: float, radius: float, sides: int, angle: float) -> np.ndarray:
    t = angle + 2 * math.pi * np.arange(sides) / sides
    return np.stack([cx + radius * np.cos(t), cy + radius * np.sin(t)], axis=1)


class ShapesDataset(Dataset):
    """Generated instance/semantic segmentation data.

    Args:
        num_samples: dataset length.
        image_size: height and width (>= 32, the backbones' total stride).
        seed: non-negative; :meth:`splits` gives train/validation sets with disjoint seeds.
        max_objects: 1..max_objects objects per image (before occlusion).
        size_range: object radius as a fraction of the image side.
        min_visible: objects with fewer visible pixels are dropped.

    Shape:
        ``dataset[i]`` -> (image: (3, H, W) float32 in [0, 1], target: dict with ``boxes`` (N, 4) float32 xyxy,
        ``labels`` (N,) int64, ``masks`` (N, H, W) uint8, ``semantic`` (H, W) int64, ``image_id`` int).
    """

    classes = SHAPE_CLASSES
    num_classes = len(SHAPE_CLASSES)

    def __init__(
        self,
        num_samples: int,
        image_size: int = 96,
        seed: int = 0,
        max_objects: int = 3,
        size_range: tuple[float, float] = (0.1, 0.25),
        min_visible: int = 20,
        cache: bool = True,
    ) -> None:
        if num_samples < 0:
            raise ValueError(f"num_samples must be >= 0, got {num_samples}")
        if image_size < 32:
            raise ValueError(f"image_size must be >= 32 (the backbones' total stride), got {image_size}")
        if seed < 0:
            raise ValueError(f"seed must be >= 0, got {seed}")
        if max_objects < 1:
            raise ValueError(f"max_objects must be >= 1, got {max_objects}")
        lo, hi = size_range
        if not 0 < lo <= hi <= 0.5:
            raise ValueError(f"size_range must satisfy 0 < low <= high <= 0.5, got {size_range}")
        self.num_samples, self.image_size, self.seed = num_samples, image_size, seed
        self.max_objects, self.size_range, self.min_visible = max_objects, (lo, hi), min_visible
        self.cache = cache
        self._cache: dict[int, ShapesSample] = {}

    @classmethod
    def splits(cls, train_samples: int, val_samples: int, seed: int = 0, **kwargs) -> tuple[ShapesDataset, ...]:
        """Train and validation sets with disjoint seeds (``2 * seed`` and ``2 * seed + 1``)."""
        return cls(train_samples, seed=2 * seed, **kwargs), cls(val_samples, seed=2 * seed + 1, **kwargs)

    def __len__(self) -> int:
        return self.num_samples

    def render(self, index: int) -> ShapesSample:
        """Render sample ``index`` from scratch."""
        if not 0 <= index < self.num_samples:
            raise IndexError(f"index {index} out of range for {self.num_samples} samples")
        rng = np.random.default_rng([self.seed, index])
        n = self.image_size
        yy, xx = np.mgrid[0:n, 0:n].astype(np.float64) + 0.5
        # background: a linear colour gradient between two random colours, plus mild noise
        c0, c1 = rng.uniform(0, 1, 3), rng.uniform(0, 1, 3)
        theta = rng.uniform(0, 2 * math.pi)
        ramp = ((xx * math.cos(theta) + yy * math.sin(theta)) / (n * math.sqrt(2)) + 0.5).clip(0, 1)
        image = c0 * (1 - ramp[..., None]) + c1 * ramp[..., None] + rng.normal(0, 0.03, (n, n, 3))
        owner = np.full((n, n), -1, dtype=np.int64)
        labels = []
        for k in range(int(rng.integers(1, self.max_objects + 1))):
            label = int(rng.integers(1, len(SHAPE_CLASSES)))
            radius = rng.uniform(*self.size_range) * n
            cx, cy = rng.uniform(radius, n - radius, 2)
            angle = rng.uniform(0, 2 * math.pi)
            if label == 1:
                mask = (xx - cx) ** 2 + (yy - cy) ** 2 <= radius**2
            else:
                sides = 4 if label == 2 else 3
                mask = _polygon_mask(xx, yy, _regular_polygon(cx, cy, radius, sides, angle))
            local_bg = image[mask].mean(0) if mask.any() else c0
            color = rng.uniform(0, 1, 3)
            while np.abs(color - local_bg).max() < 0.35:  # keep every object visible against its background
                color = rng.uniform(0, 1, 3)
            image[mask] = color + rng.normal(0, 0.03, (int(mask.sum()), 3))
            owner[mask] = k
            labels.append(label)
        masks, kept = [], []
        for k, label in enumerate(labels):
            visible = owner == k
            if visible.sum() >= self.min_visible:
                masks.append(visible)
                kept.append(label)
        semantic = np.zeros((n, n), dtype=np.int64)
        for mask, label in zip(masks, kept):
            semantic[mask] = label
        return ShapesSample(
            image=(image.clip(0, 1) * 255).round().astype(np.uint8),
            masks=np.stack(masks) if masks else np.zeros((0, n, n), dtype=bool),
            labels=np.asarray(kept, dtype=np.int64),
            semantic=semantic,
        )

    def sample(self, index: int) -> ShapesSample:
        """Sample ``index``, from the in-memory cache when enabled."""
        if index < 0:
            index += self.num_samples
        s = self._cache.get(index)
        if s is None:
            s = self.render(index)
            if self.cache:
                self._cache[index] = s
        return s

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict[str, torch.Tensor | int]]:
        s = self.sample(index)
        image = torch.from_numpy(s.image).permute(2, 0, 1).float().div_(255.0)
        masks = torch.from_numpy(s.masks)
        boxes = torch.zeros((len(s.labels), 4), dtype=torch.float32)
        for j, m in enumerate(masks):
            ys, xs = torch.nonzero(m, as_tuple=True)
            boxes[j] = torch.stack([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]).float()
        target = {
            "boxes": boxes,
            "labels": torch.from_numpy(s.labels),
            "masks": masks.to(torch.uint8),
            "semantic": torch.from_numpy(s.semantic),
            "image_id": index if index >= 0 else index + self.num_samples,
        }
        return image, target

    def __repr__(self) -> str:
        return (
            f"ShapesDataset(num_samples={self.num_samples}, image_size={self.image_size}, seed={self.seed}, "
            f"max_objects={self.max_objects})"
        )


def collate_detection(batch: list) -> tuple[list[torch.Tensor], list[dict]]:
    """Keep images and targets as lists (torchvision's detectors take lists of different-size images)."""
    images, targets = zip(*batch)
    return list(images), list(targets)
