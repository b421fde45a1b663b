"""Built-in generated dataset: Echo, "is the right half the left half moved down by half the image?"

A task on which global context is necessary (the claim of paper Sections 4-5, at laptop scale). The left half of an
image is a random texture (Gaussian-filtered noise, periodic from top to bottom). The right half is the same texture
rolled down by ``shift`` rows, wrapping around: label 1 ("echo") means ``shift`` is exactly half the image height,
label 0 any other shift at least ``min_gap`` of the height away from both half the height and zero. Every shift is a
multiple of ``shift_step`` pixels (4, the stride of the MetaFormer stem): then the token grid samples the right half
at the same phase as the left half in both classes. With a shift of another phase the right half's tokens would be
new samples of the texture, so the features averaged over the image would tell "a multiple of the stride" (always
the case for the echo) from the rest without looking at any relation; one-block models with local kernels found
that cue (about 59 % top-1) when shifts were free.

Both classes are built from the same pieces, so nothing local tells them apart:

* the right half is a permutation of the left half's rows in both classes, so every image holds each local patch
  of the texture twice, and the bag of local patches has the same distribution in both classes;
* the texture is periodic vertically and its columns come from a wider field, so neither half has a seam, and the
  seam between the halves joins two unrelated columns in both classes;
* the rows at the top and bottom borders of the right half are rows from the inside of the left half in both
  classes, never the left half's own border rows.

Deciding the label means comparing each point of the right half with the point half an image width to the left and
half an image height up or down: a convolution kernel reaching that offset (a long one) can, a local one cannot.

Everything is generated on the fly with numpy from ``(seed, index)``: no files and no downloads.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from .generated import BUILTIN_IMAGE_SIZE, GeneratedDataset

if TYPE_CHECKING:
    from .settings import RunData

PIXEL_MEAN = 128.0
PIXEL_STD = 42.0
"""Mean and standard deviation of the texture's pixel values (the default normalisation gives unit variance)."""
TEST_SEED = 2**31 - 1
"""Seed of :meth:`EchoDataset.test_split`: odd, so no training set (seed ``2 s``) uses it, and a validation set only
for the training seed ``2**30 - 1``."""

__all__ = [
    "ECHO_DIFFICULTIES",
    "TEST_SEED",
    "EchoDataset",
    "EchoDifficulty",
    "EchoSample",
    "echo_label",
    "echo_texture",
    "render_echo",
]


@dataclass(frozen=True)
class EchoDifficulty:
    """Generation parameters of :class:`EchoDataset`.

    The texture is white noise filtered by a Gaussian whose standard deviation is uniform in ``[min_sigma,
    max_sigma]`` pixels (larger: smoother, fewer distinct details to match).
    """

    min_sigma: float = 1.0
    """Finest texture scale, in pixels."""
    max_sigma: float = 2.0
    """Coarsest texture scale, in pixels."""
    min_gap: float = 0.125
    """A label-0 shift is at least this fraction of the image height away from half the height and from zero."""
    shift_step: int = 4
    """Every shift is a multiple of this many pixels (the stride of the models' stem); the image height must be a
    multiple of twice it."""

    def __post_init__(self) -> None:
        if not 0.0 < self.min_sigma <= self.max_sigma:
            raise ValueError(f"need 0 < min_sigma <= max_sigma, got {self.min_sigma}, {self.max_sigma}")
        if not 0.0 < self.min_gap <= 0.25:
            raise ValueError(f"min_gap must be in (0, 0.25], got {self.min_gap}")
        if self.shift_step < 1:
            raise ValueError(f"shift_step must be >= 1, got {self.shift_step}")


ECHO_DIFFICULTIES: dict[str, EchoDifficulty] = {
    "easy": EchoDifficulty(min_sigma=1.5, max_sigma=2.5, min_gap=0.25),
    "default": EchoDifficulty(),
    "hard": EchoDifficulty(min_sigma=0.8, max_sigma=1.5, min_gap=0.0625),
}
"""Named presets for the ``difficulty`` argument of :class:`EchoDataset`."""


@dataclass
class EchoSample:
    """One rendered image with the generator's ground truth (from ``EchoDataset.render(return_meta=True)``).

    Shape:
        image: (H, W) uint8.
    """

    image: np.ndarray
    """(H, W) uint8 rendered image."""
    label: int
    """1 if the right half is the left half rolled down by exactly half the height, else 0."""
    shift: int
    """Rows the left half's texture is rolled down by in the right half."""
    sigma: float
    """Texture scale in pixels."""


def echo_texture(rng: np.random.Generator, height: int, width: int, sigma: float) -> np.ndarray:
    """Gaussian-filtered white noise, periodic along the rows (axis 0) and cut from a wider field along the columns,
    scaled to unit standard deviation.

    Shape:
        returns (height, width) float64.
    """
    radius = max(1, math.ceil(3 * sigma))
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    taps /= taps.sum()
    noise = rng.standard_normal((height, width + 2 * radius))
    rows = sum(t * np.roll(noise, k - radius, axis=0) for k, t in enumerate(taps))  # circular: no seam
    texture = sum(t * rows[:, k : k + width] for k, t in enumerate(taps))  # 'valid': no border effect
    return texture / max(float(texture.std()), 1e-12)


def echo_label(image: np.ndarray) -> int:
    """The rule the labels follow, for any image: 1 if its right half equals its left half rolled down by half the
    height (wrapping around), else 0.

    Shape:
        image: (H, W) with H and W even.
    """
    height, width = image.shape
    if height % 2 or width % 2:
        raise ValueError(f"Echo images have an even height and width, got {image.shape}")
    left, right = image[:, : width // 2], image[:, width // 2 :]
    return int(np.array_equal(np.roll(left, height // 2, axis=0), right))


def _shift(rng: np.random.Generator, size: int, label: int, min_gap: float, step: int) -> int:
    """Half the height for label 1; for label 0 a multiple of ``step`` at least ``min_gap * size`` from half the
    height and 0."""
    half = size // 2
    if label:
        return half
    gap = max(1, math.ceil(min_gap * size))
    choices = [s for s in range(step, size, step) if min(s, size - s) >= gap and abs(s - half) >= gap]
    if not choices:
        raise ValueError(f"no label-0 shift of {size} px images is a multiple of {step} and {gap} px from 0 and {half}")
    return int(rng.choice(choices))


def render_echo(rng: np.random.Generator, size: int, label: int, cfg: EchoDifficulty) -> EchoSample:
    """Render one Echo image with the given label from a numpy generator.

    Shape:
        returns a sample whose image is (size, size) uint8.
    """
    if size % (2 * cfg.shift_step):
        raise ValueError(
            f"Echo images need a size that is a multiple of {2 * cfg.shift_step} (two halves, shifts in steps of "
            f"{cfg.shift_step} px), got {size}"
        )
    sigma = float(rng.uniform(cfg.min_sigma, cfg.max_sigma))
    left = echo_texture(rng, size, size // 2, sigma)
    shift = _shift(rng, size, label, cfg.min_gap, cfg.shift_step)
    image = np.concatenate([left, np.roll(left, shift, axis=0)], axis=1)
    pixels = np.clip(np.round(PIXEL_MEAN + PIXEL_STD * image), 0, 255).astype(np.uint8)  # +-3 std in the byte range
    return EchoSample(pixels, int(label), shift, sigma)


class EchoDataset(GeneratedDataset[EchoDifficulty]):
    """Echo images ("is the right half the left half moved down by half the image?") generated on the fly,
    deterministic from ``(seed, index)``.

    Labels alternate with the index (``i % 2``). See :class:`~hyenapixel.data.generated.GeneratedDataset` for the
    arguments, caching and :meth:`splits`; ``difficulty`` is a preset name of :data:`ECHO_DIFFICULTIES` or an
    :class:`EchoDifficulty`, ``image_size`` a multiple of twice its ``shift_step`` (8 for the presets), and
    ``render(i, return_meta=True)`` returns an :class:`EchoSample`.

    Shape:
        ``dataset[i]`` -> (image: (in_chans, image_size, image_size) float32, label: int).
    """

    classes: ClassVar[list[str]] = ["other-shift", "echo"]
    difficulties: ClassVar[dict[str, EchoDifficulty]] = ECHO_DIFFICULTIES
    difficulty_type: ClassVar[type] = EchoDifficulty
    min_image_size: ClassVar[int] = 16
    default_mean: ClassVar[float] = PIXEL_MEAN / 255
    default_std: ClassVar[float] = PIXEL_STD / 255

    def __init__(self, num_samples: int, image_size: int = BUILTIN_IMAGE_SIZE, *args: Any, **kwargs: Any) -> None:
        super().__init__(num_samples, image_size, *args, **kwargs)
        unit = 2 * self.difficulty.shift_step
        if image_size % unit:
            raise ValueError(
                f"image_size must be a multiple of {unit} for Echo images (two equal halves, shifts in steps of "
                f"{self.difficulty.shift_step} px), got {image_size}"
            )

    @classmethod
    def run_test_split(cls, run: RunData | None, num_samples: int) -> EchoDataset:
        """The test split at the image size, difficulty and channels of a training run on Echo (``run``: what its
        checkpoint records, :meth:`RunData.from_meta <hyenapixel.data.settings.RunData.from_meta>`).

        Raises:
            ValueError: the run did not train on the built-in Echo task.
        """
        if run is None or run.folder or run.builtin != "echo" or not run.input_size:
            raise ValueError("not a run on the built-in Echo task (its checkpoint records other data)")
        return cls.test_split(num_samples, run.input_size, difficulty=run.difficulty, in_chans=run.in_chans)

    @classmethod
    def test_split(cls, num_samples: int, image_size: int = BUILTIN_IMAGE_SIZE, **kwargs: Any) -> EchoDataset:
        """A held-out test set (seed :data:`TEST_SEED`) for runs trained on :meth:`splits` of any usual seed."""
        return cls(num_samples, image_size, seed=TEST_SEED, **kwargs)

    def render_sample(self, rng: np.random.Generator, label: int) -> EchoSample:
        """Shape: returns a sample whose image is (image_size, image_size) uint8."""
        return render_echo(rng, self.image_size, label, self.difficulty)
