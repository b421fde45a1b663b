"""Built-in generated dataset: Balance, "which half of the image holds more ink?" (the default built-in task).

The paper's point (Section 1) is that a token mixer should relate distant parts of an image. In a Balance image
a handful of grey discs and rectangles of random size and brightness lie anywhere; label 1 ("left-heavier") means
the left half holds more ink (the sum of pixel values) than the right half, label 0 the opposite. The margin
between the two halves is at least ``margin`` of the total ink, so every label is unambiguous, yet the decision
needs the whole image at once: every object counts, with a sign that depends on where it lies relative to the
image's vertical centre line.

Class 0 is the exact mirror image of class 1 (an image is drawn, then flipped left-right if its heavier half does
not match the label), so every statistic that does not change under a left-right flip (amount of ink, number,
size and shape of objects, any pooled local pattern that is mirror-symmetric) has the same distribution in both
classes. A classifier has to locate ink relative to the centre of the image and add it up over the whole image,
so it needs a receptive field that spans the image (large kernels, attention, or enough downsampling; at 32 px a
four-stage MetaFormer has that even with small kernels, see docs/training.md).

Everything is generated on the fly with numpy from ``(seed, index)``: no files and no downloads.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from .generated import GeneratedDataset

__all__ = ["BALANCE_DIFFICULTIES", "BalanceDataset", "BalanceDifficulty", "BalanceSample", "render_balance"]

_MAX_SAMPLE_TRIES = 1000  # layouts drawn per image before giving up (the margin test rejects some)


@dataclass(frozen=True)
class BalanceDifficulty:
    """Generation parameters of :class:`BalanceDataset`; sizes are relative to the image size.

    Each image holds ``min_objects`` to ``max_objects`` objects, each a filled disc or an axis-aligned filled
    rectangle (equally likely) with its centre uniform over the image (objects may be cut by the border and may
    overlap; overlapping ink takes the brighter value). A disc's radius and each half-side of a rectangle are
    uniform in ``[min_size, max_size] * image_size``; the brightness is uniform in ``[min_intensity, 1]``.
    Layouts whose two halves differ by less than ``margin`` of the total ink are drawn again.
    """

    min_objects: int = 4
    """Fewest objects per image (>= 1)."""
    max_objects: int = 8
    """Most objects per image."""
    min_size: float = 0.03
    """Smallest radius / half-side, as a fraction of the image size."""
    max_size: float = 0.14
    """Largest radius / half-side, as a fraction of the image size."""
    min_intensity: float = 0.3
    """Darkest object (1 is white). Random brightness means counting objects or ink pixels does not decide."""
    margin: float = 0.05
    """Smallest ``|left - right| / (left + right)`` of an image: smaller values make finer comparisons."""

    def __post_init__(self) -> None:
        if not 1 <= self.min_objects <= self.max_objects:
            raise ValueError(f"need 1 <= min_objects <= max_objects, got {self.min_objects}, {self.max_objects}")
        if not 0.0 < self.min_size <= self.max_size <= 0.5:
            raise ValueError(f"need 0 < min_size <= max_size <= 0.5, got {self.min_size}, {self.max_size}")
        if not 0.0 < self.min_intensity <= 1.0:
            raise ValueError(f"min_intensity must be in (0, 1], got {self.min_intensity}")
        if not 0.0 <= self.margin < 1.0:
            raise ValueError(f"margin must be in [0, 1), got {self.margin}")


BALANCE_DIFFICULTIES: dict[str, BalanceDifficulty] = {
    # fewer, larger objects and a clear majority
    "easy": BalanceDifficulty(min_objects=3, max_objects=6, min_size=0.05, margin=0.25),
    # a 5 % difference decides
    "default": BalanceDifficulty(),
    # many small objects, 2 % differences
    "hard": BalanceDifficulty(min_objects=6, max_objects=14, min_size=0.03, max_size=0.1, margin=0.02),
}
"""Named presets for the ``difficulty`` argument of :class:`BalanceDataset`."""


@dataclass
class BalanceSample:
    """One rendered image with the generator's ground truth (from ``BalanceDataset.render(return_meta=True)``).

    Shape:
        image: (H, W) uint8.
    """

    image: np.ndarray
    """(H, W) uint8 rendered image."""
    label: int
    """1 if the left half holds more ink than the right half, else 0."""
    left: float
    """Ink of the left half: the sum of its pixel values in [0, 1] units (the centre column of an odd-sized image
    belongs to neither half)."""
    right: float
    """Ink of the right half, as ``left``."""
    num_objects: int
    """Number of objects drawn."""


def half_masses(image: np.ndarray) -> tuple[float, float]:
    """Ink ``(left, right)`` of an image in [0, 1] pixel units; an odd image's centre column counts for neither.

    Shape:
        image: (H, W) uint8.
    """
    w = image.shape[1]
    left = float(image[:, : w // 2].sum(dtype=np.int64)) / 255.0
    right = float(image[:, (w + 1) // 2 :].sum(dtype=np.int64)) / 255.0
    return left, right


def _draw(rng: np.random.Generator, size: int, cfg: BalanceDifficulty) -> tuple[np.ndarray, int]:
    """One random layout as a uint8 image (before the label is looked at) and its object count."""
    n = int(rng.integers(cfg.min_objects, cfg.max_objects + 1))
    centre = rng.uniform(0.0, size, (n, 2))
    half = rng.uniform(cfg.min_size, cfg.max_size, (n, 2)) * size
    disc = rng.random(n) < 0.5
    value = np.round(rng.uniform(cfg.min_intensity, 1.0, n) * 255.0)
    grid = np.arange(size, dtype=np.float64) + 0.5  # pixel centres
    dy = grid[None, :, None] - centre[:, 0, None, None]  # (n, size, 1)
    dx = grid[None, None, :] - centre[:, 1, None, None]  # (n, 1, size)
    inside_disc = dy**2 + dx**2 <= half[:, 0, None, None] ** 2
    inside_rect = (np.abs(dy) <= half[:, 0, None, None]) & (np.abs(dx) <= half[:, 1, None, None])
    inside = np.where(disc[:, None, None], inside_disc, inside_rect)
    image = (inside * value[:, None, None]).max(axis=0)
    return image.astype(np.uint8), n


def render_balance(rng: np.random.Generator, size: int, label: int, cfg: BalanceDifficulty) -> BalanceSample:
    """Render one Balance image with the given label from a numpy generator.

    Shape:
        returns a sample whose image is (size, size) uint8.
    """
    for _ in range(_MAX_SAMPLE_TRIES):
        image, n = _draw(rng, size, cfg)
        left, right = half_masses(image)
        if left + right > 0 and abs(left - right) >= max(cfg.margin * (left + right), 1e-9):
            break
    else:
        raise RuntimeError(
            f"no layout of {cfg.min_objects}-{cfg.max_objects} objects in a {size}x{size} image met the margin "
            f"{cfg.margin} in {_MAX_SAMPLE_TRIES} tries; use a smaller margin"
        )
    if (left > right) != bool(label):  # the mirror image has the other label, with the same margin
        image, left, right = np.ascontiguousarray(image[:, ::-1]), right, left
    return BalanceSample(image, int(label), left, right, n)


class BalanceDataset(GeneratedDataset[BalanceDifficulty]):
    """Balance images ("is the left half heavier?") generated on the fly, deterministic from ``(seed, index)``.

    The default built-in dataset of ``hyenapixel train``. Labels alternate with the index (``i % 2``), so any
    even-length dataset is exactly balanced (rendering times: docs/benchmarks.md, "Generated datasets"). See
    :class:`~hyenapixel.data.generated.GeneratedDataset` for the arguments, caching and :meth:`splits`;
    ``difficulty`` is a preset name of :data:`BALANCE_DIFFICULTIES` or a :class:`BalanceDifficulty`, and
    ``render(i, return_meta=True)`` returns a :class:`BalanceSample`.

    Shape:
        ``dataset[i]`` -> (image: (in_chans, image_size, image_size) float32, label: int).
    """

    classes: ClassVar[list[str]] = ["right-heavier", "left-heavier"]
    difficulties: ClassVar[dict[str, BalanceDifficulty]] = BALANCE_DIFFICULTIES
    difficulty_type: ClassVar[type] = BalanceDifficulty
    min_image_size: ClassVar[int] = 8

    def render_sample(self, rng: np.random.Generator, label: int) -> BalanceSample:
        """Shape: returns a sample whose image is (image_size, image_size) uint8."""
        return render_balance(rng, self.image_size, label, self.difficulty)
