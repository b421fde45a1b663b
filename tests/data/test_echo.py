"""The Echo task: the label is the one long-range fact the generator controls (is the right half the left half
rolled by exactly half the height?), and the local content of the two classes is the same by construction."""

from __future__ import annotations

import numpy as np
import pytest

from hyenapixel.data import BUILTIN_DATASETS, EchoDataset, EchoDifficulty
from hyenapixel.data.echo import TEST_SEED, echo_label, echo_texture
from hyenapixel.data.settings import RunData


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
        assert sample.shift % 4 == 0  # the stem's stride: both halves on the same token grid
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
    with pytest.raises(ValueError, match="multiple of 8"):
        EchoDataset(4, 36)
    with pytest.raises(ValueError, match="shift_step"):
        EchoDifficulty(shift_step=0)
    with pytest.raises(ValueError, match="min_gap"):
        EchoDifficulty(min_gap=0.3)
    with pytest.raises(ValueError, match="min_sigma"):
        EchoDifficulty(min_sigma=2.0, max_sigma=1.0)


def _cyclic_windows(half: np.ndarray, k: int) -> list[bytes]:
    """Every k x k window of one half, rows wrapping around (the texture is periodic vertically), sorted."""
    rows = np.concatenate([half, half[: k - 1]], 0)
    h, w = half.shape
    return sorted(rows[i : i + k, j : j + k].tobytes() for i in range(h) for j in range(w - k + 1))


def test_echo_label_on_hand_made_images() -> None:
    height, half = 16, 4
    left = np.repeat((np.arange(height, dtype=np.uint8) * 7)[:, None], half, axis=1)  # 16 distinct rows
    roll = [np.concatenate([left, np.roll(left, s, axis=0)], axis=1) for s in range(height)]
    assert [echo_label(image) for image in roll] == [int(s == height // 2) for s in range(height)]
    assert echo_label(np.concatenate([left, left[::-1]], axis=1)) == 0  # a mirror is not an echo
    with pytest.raises(ValueError, match="even"):
        echo_label(np.zeros((15, 8)))


def test_no_local_window_tells_an_echo_from_another_roll() -> None:
    # one texture, once as an echo (roll by half the height) and once rolled by another amount: every 5 x 5 window
    # inside either half (rows wrapping) occurs equally often in both images, so a model that sees one window at a
    # time cannot decide the label, which the rule decides
    rng = np.random.default_rng(11)
    left = np.round(128 + 42 * echo_texture(rng, 32, 16, 1.5)).clip(0, 255).astype(np.uint8)
    echo = np.concatenate([left, np.roll(left, 16, axis=0)], 1)
    other = np.concatenate([left, np.roll(left, 8, axis=0)], 1)
    assert (echo_label(echo), echo_label(other)) == (1, 0)
    for image in (echo, other):
        assert _cyclic_windows(image[:, 16:], 5) == _cyclic_windows(left, 5)


def test_every_generated_label_follows_the_rule_and_the_data_is_deterministic() -> None:
    ds = EchoDataset(16, 32, seed=4)
    assert [echo_label(ds.render(i)) for i in range(16)] == [i % 2 for i in range(16)]
    again = EchoDataset(16, 32, seed=4, cache=False)
    assert all(np.array_equal(ds.render(i), again.render(i)) for i in range(16))
    assert not np.array_equal(ds.render(0), EchoDataset(16, 32, seed=5).render(0))


def test_default_normalisation_gives_unit_variance_and_the_test_split_is_held_out() -> None:
    x = np.stack([EchoDataset(400, 32, seed=0)[i][0].numpy() for i in range(400)])
    assert abs(x.mean()) < 0.1 and abs(x.std() - 1.0) < 0.05
    test = EchoDataset.test_split(4, 32)
    assert test.seed == TEST_SEED and TEST_SEED % 2 == 1  # training sets use even seeds 2 s
    run = {"input_size": 48, "in_chans": 1, "config": {"data": {"builtin": "echo", "difficulty": "hard"}}}
    own = EchoDataset.run_test_split(RunData.from_meta(run), 6)
    assert (own.image_size, own.in_chans, own.seed, len(own)) == (48, 1, TEST_SEED, 6)
    assert own.difficulty == EchoDataset.difficulties["hard"]
    with pytest.raises(ValueError, match="Echo"):
        EchoDataset.run_test_split(RunData.from_meta({"input_size": 32, "config": {"data": {"builtin": "balance"}}}), 4)
    with pytest.raises(ValueError, match="Echo"):
        EchoDataset.run_test_split(RunData.from_meta({"input_size": 32}), 4)  # not a training run of ours


def test_both_halves_hold_the_same_stride_aligned_blocks_in_both_classes() -> None:
    # a stride-4 stem cuts both halves into the same 4 x 4 blocks (shifts are multiples of 4): what a model averages
    # over the image is the same whether or not the label is "echo" (free shifts leaked the label through this)
    ds = EchoDataset(12, 32, seed=2)

    def blocks(half: np.ndarray) -> list[bytes]:
        return sorted(half[i : i + 4, j : j + 4].tobytes() for i in range(0, 32, 4) for j in range(0, 16, 4))

    for i in range(len(ds)):
        image = ds.render(i)
        assert blocks(image[:, :16]) == blocks(image[:, 16:]), ds.render(i, return_meta=True).shift
