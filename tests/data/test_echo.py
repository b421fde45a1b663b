"""The Echo task: the label is the one long-range fact the generator controls (is the right half the left half
rolled by exactly half the height?), and the local content of the two classes is the same by construction."""

from __future__ import annotations

import numpy as np
import pytest

from hyenapixel.data import BUILTIN_DATASETS, EchoDataset, EchoDifficulty
from hyenapixel.data.echo import echo_texture


def _shifts_that_match(image: np.ndarray) -> list[int]:
    """Every roll of the left half that gives the right half (brute force)."""
    half = image.shape[1] // 2
    left, right = image[:, :half], image[:, half:]
    return [s for s in range(image.shape[0]) if np.array_equal(np.roll(left, s, axis=0), right)]


@pytest.mark.parametrize("difficulty", ["easy", "default", "hard"])
def test_the_label_is_whether_the_right_half_is_rolled_by_half_the_height(difficulty: str) -> None:
    size = 48
    gap = EchoDataset.difficulties[difficulty].min_gap * size
    ds = EchoDataset(24, size, seed=3, difficulty=difficulty)
    for i in range(len(ds)):
        sample = ds.render(i, return_meta=True)
        assert sample.label == i % 2
        assert _shifts_that_match(sample.image) == [sample.shift]
        if sample.label:
            assert sample.shift == size // 2
        else:
            assert abs(sample.shift - size // 2) >= gap and gap <= sample.shift <= size - gap


def test_both_halves_hold_the_same_rows_in_both_classes() -> None:
    # the right half is a permutation of the left half's rows: the bag of local patches does not depend on the label
    ds = EchoDataset(8, 32, seed=0)
    for i in range(len(ds)):
        image = ds.render(i)
        left, right = image[:, :16], image[:, 16:]
        assert sorted(map(bytes, left)) == sorted(map(bytes, right))


def test_texture_is_a_circular_then_valid_gaussian_filter_of_noise() -> None:
    # an independent reference: the same noise filtered by FFT along the rows (circular) and np.convolve along the
    # columns ('valid'), from a generator in the same state
    sigma, height, width = 1.3, 20, 12
    texture = echo_texture(np.random.default_rng(5), height, width, sigma)
    radius = int(np.ceil(3 * sigma))
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    taps /= taps.sum()
    noise = np.random.default_rng(5).standard_normal((height, width + 2 * radius))
    column_filter = np.zeros(height)
    column_filter[np.arange(-radius, radius + 1) % height] = taps
    rows = np.real(np.fft.ifft(np.fft.fft(noise, axis=0) * np.fft.fft(column_filter)[:, None], axis=0))
    ref = np.stack([np.convolve(r, taps, mode="valid") for r in rows])
    ref /= ref.std()
    np.testing.assert_allclose(texture, ref, atol=1e-10)
    assert texture.shape == (height, width)


def test_echo_is_a_builtin_with_checked_arguments() -> None:
    assert BUILTIN_DATASETS["echo"] is EchoDataset
    a, b = EchoDataset(4, 32, seed=1), EchoDataset(4, 32, seed=1)
    assert all(np.array_equal(a.render(i), b.render(i)) for i in range(4))
    image, label = a[1]
    assert tuple(image.shape) == (3, 32, 32) and label == 1
    with pytest.raises(ValueError, match="image_size must be even"):
        EchoDataset(4, 33)
    with pytest.raises(ValueError, match="min_gap"):
        EchoDifficulty(min_gap=0.3)
    with pytest.raises(ValueError, match="min_sigma"):
        EchoDifficulty(min_sigma=2.0, max_sigma=1.0)
