"""Shared machinery of the built-in generated datasets (no files, no downloads; paper Section 1's long-range theme).

A generated dataset renders sample ``i`` from a numpy generator seeded with ``(seed, i)`` only, so an item never
depends on access order, worker or process. Labels alternate with the index, which balances every even-length
dataset exactly. Subclasses implement :meth:`GeneratedDataset.render_sample`; this base class adds the dataset
protocol, in-memory caching, normalisation and train/validation splits with disjoint seeds.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Generic, TypeVar

import numpy as np
import torch
from torch.utils.data import Dataset

__all__ = ["BUILTIN_IMAGE_SIZE", "GeneratedDataset"]

BUILTIN_IMAGE_SIZE = 32
"""Default image side of the generated datasets: small enough for CPU training in minutes."""

D = TypeVar("D")


class GeneratedDataset(Dataset, Generic[D]):
    """Base class: ``dataset[i]`` is a normalised grayscale image repeated to ``in_chans`` channels and a label.

    Args:
        num_samples: dataset length.
        image_size: height and width in pixels (>= ``min_image_size``).
        seed: non-negative seed; use :meth:`splits` for train and validation sets with disjoint seeds.
        difficulty: a preset name of ``difficulties`` or an instance of the subclass's difficulty dataclass.
        in_chans: the grayscale image is repeated to this many channels.
        mean: normalisation mean, one value or one per channel, applied to images in [0, 1]. None: the class's
            ``default_mean`` (0.5; Echo: its pixels' mean).
        std: normalisation std, one value or one per channel. None: the class's ``default_std`` (0.5; Echo: its
            pixels' standard deviation, so that its images have unit variance).
        cache: keep rendered uint8 images (``image_size ** 2`` bytes each) in memory for later epochs.

    Shape:
        ``dataset[i]`` -> (image: (in_chans, image_size, image_size) float32, label: int).
    """

    num_classes: ClassVar[int] = 2
    classes: ClassVar[list[str]] = []
    difficulties: ClassVar[Mapping[str, Any]] = {}
    difficulty_type: ClassVar[type] = object
    min_image_size: ClassVar[int] = 16
    default_mean: ClassVar[float] = 0.5
    default_std: ClassVar[float] = 0.5

    def __init__(
        self,
        num_samples: int,
        image_size: int = BUILTIN_IMAGE_SIZE,
        seed: int = 0,
        difficulty: str | D = "default",
        in_chans: int = 3,
        mean: float | Sequence[float] | None = None,
        std: float | Sequence[float] | None = None,
        cache: bool = True,
    ) -> None:
        if num_samples < 0:
            raise ValueError(f"num_samples must be >= 0, got {num_samples}")
        if image_size < self.min_image_size:
            raise ValueError(f"image_size must be >= {self.min_image_size}, got {image_size}")
        if seed < 0:
            raise ValueError(f"seed must be >= 0, got {seed}")
        if in_chans < 1:
            raise ValueError(f"in_chans must be >= 1, got {in_chans}")
        if isinstance(difficulty, str):
            if difficulty not in self.difficulties:
                raise ValueError(f"unknown difficulty {difficulty!r}; choose from {sorted(self.difficulties)}")
            difficulty = self.difficulties[difficulty]
        elif not isinstance(difficulty, self.difficulty_type):
            expected, got = self.difficulty_type.__name__, type(difficulty).__name__
            raise TypeError(f"difficulty must be a preset name or a {expected}, got {got}")
        self.num_samples = num_samples
        self.image_size = image_size
        self.seed = seed
        self.difficulty: D = difficulty
        self.in_chans = in_chans
        self.mean = self._per_channel(self.default_mean if mean is None else mean, in_chans, "mean")
        self.std = self._per_channel(self.default_std if std is None else std, in_chans, "std")
        if (self.std <= 0).any():
            raise ValueError(f"std must be positive, got {std}")
        self.cache = cache
        self._cache: dict[int, np.ndarray] = {}

    # ---- to implement -----------------------------------------------------------------------------------------------
    def render_sample(self, rng: np.random.Generator, label: int) -> Any:
        """Render one sample with ``label`` from ``rng``; return an object with an ``image`` attribute.

        Shape:
            image: (image_size, image_size) uint8.
        """
        raise NotImplementedError

    # ---- dataset protocol -------------------------------------------------------------------------------------------
    @staticmethod
    def _per_channel(value: float | Sequence[float], in_chans: int, name: str) -> torch.Tensor:
        t = torch.as_tensor(value, dtype=torch.float32).flatten()
        if t.numel() == 1:
            t = t.expand(in_chans)
        if t.numel() != in_chans:
            raise ValueError(f"{name} needs 1 or {in_chans} values, got {t.numel()}")
        return t.reshape(in_chans, 1, 1).clone()

    @classmethod
    def splits(cls, train_samples: int, val_samples: int, seed: int = 0, **kwargs: Any) -> tuple[Any, Any]:
        """Train and validation sets with disjoint seeds (``2 * seed`` and ``2 * seed + 1``).

        ``kwargs`` go to the constructor of both (``image_size``, ``difficulty``, ``in_chans``, ...).
        """
        if seed < 0:
            raise ValueError(f"seed must be >= 0, got {seed}")
        return cls(train_samples, seed=2 * seed, **kwargs), cls(val_samples, seed=2 * seed + 1, **kwargs)

    def __len__(self) -> int:
        return self.num_samples

    def label(self, index: int) -> int:
        """The label of sample ``index`` (without rendering it)."""
        return index % 2

    @property
    def targets(self) -> list[int]:
        """All labels, as in torchvision's folder datasets."""
        return [self.label(i) for i in range(self.num_samples)]

    def _check_index(self, index: int) -> int:
        if index < 0:
            index += self.num_samples
        if not 0 <= index < self.num_samples:
            raise IndexError(f"index {index} out of range for {self.num_samples} samples")
        return index

    def render(self, index: int, return_meta: bool = False) -> Any:
        """Render sample ``index`` from scratch (no cache).

        Returns the (H, W) uint8 image, or with ``return_meta=True`` the subclass's sample record (image, label
        and the generator's ground truth).
        """
        index = self._check_index(index)
        rng = np.random.default_rng([self.seed, index])
        sample = self.render_sample(rng, self.label(index))
        return sample if return_meta else sample.image

    def precompute(self) -> GeneratedDataset[D]:
        """Render every sample into the in-memory cache now and return the dataset.

        DataLoader workers get a copy of the dataset, and their cache dies with them unless the loader has
        ``persistent_workers=True``; precomputing in the main process before building the loader avoids
        rendering again in every epoch. Needs ``cache=True``.
        """
        if not self.cache:
            raise ValueError("precompute() needs cache=True")
        for i in range(self.num_samples):
            if i not in self._cache:
                self._cache[i] = self.render(i)
        return self

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        """Shape: -> ((in_chans, H, W) float32 normalised image, label)."""
        index = self._check_index(index)
        image = self._cache.get(index)
        if image is None:
            image = self.render(index)
            if self.cache:
                self._cache[index] = image
        x = torch.from_numpy(image).to(torch.float32).div_(255.0)
        x = x.unsqueeze(0).expand(self.in_chans, -1, -1)
        return (x - self.mean) / self.std, self.label(index)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(num_samples={self.num_samples}, image_size={self.image_size}, "
            f"seed={self.seed}, difficulty={self.difficulty}, in_chans={self.in_chans})"
        )
