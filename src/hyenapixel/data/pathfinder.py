"""Built-in generated dataset: Pathfinder (Linsley et al., NeurIPS 2018), as used in Long Range Arena.

Each grayscale image holds ``num_paths`` curvy, solid or dashed paths that never touch each other, and two
marked endpoints (filled dots). Label 1 ("connected"): both dots sit at the two ends of the same path. Label 0
("disconnected"): the dots sit at ends of two different paths. The paths are laid out before the label is
looked at, and the dot-to-dot distance has (up to a pixel or two) the same distribution in both classes, so
neither the amount of ink nor any local patch nor the distance tells the label: a classifier has to follow a
path from one dot to the other, a long-range relation across the image.

Everything is generated on the fly with numpy from ``(seed, index)``: no files and no downloads. Rendered
images are cached in memory (lazily, per process).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from .generated import BUILTIN_IMAGE_SIZE, GeneratedDataset

__all__ = [
    "BUILTIN_IMAGE_SIZE",
    "PATHFINDER_DIFFICULTIES",
    "PathfinderDataset",
    "PathfinderDifficulty",
    "PathfinderSample",
]

_CANDIDATES_PER_PATH = 16  # candidate curves drawn per path and attempt, in one vectorised batch
_MAX_SAMPLE_TRIES = 200  # attempts to lay out one image
_DISTANCE_TOLERANCE = 1.5  # pixels: a disconnected dot pair's distance may differ this much from its target


@dataclass(frozen=True)
class PathfinderDifficulty:
    """Generation parameters of :class:`PathfinderDataset`; lengths are relative to the image size.

    Every path is a cubic Bezier curve between two end points whose distance (the chord) is drawn uniformly
    from ``[min_length, max_length] * (image_size - 1)``. Its two control arms start at the end points, point
    in independent, uniformly random directions and are ``curvature / 2`` to ``curvature`` times the chord
    long, so a path leaves each of its ends in a random direction (C-, S- and hook-shaped curves).
    """

    num_paths: int = 3
    """Paths per image (>= 2). A connected image has dots at both ends of one of them, a disconnected image at
    one end each of two of them."""
    min_length: float = 0.4
    """Shortest chord of a path, as a fraction of the image size; also about the shortest dot distance."""
    max_length: float = 0.8
    """Longest chord of a path, as a fraction of the image size."""
    curvature: float = 0.6
    """Longest control arm, as a fraction of the chord: 0 draws straight lines, larger values bend more.
    Below about 0.5 the two ends of a path point the same way often enough that orientation statistics
    pooled over the image (without following any path) predict the label better than chance."""
    dash_on: int = 0
    """Length in pixels of the drawn part of a dash; 0 draws solid paths."""
    dash_off: int = 0
    """Length in pixels of the gap between dashes (ignored when ``dash_on == 0``)."""
    dot_radius: int = 1
    """Radius of the endpoint dots in pixels (1: a 3x3 square)."""
    min_gap: int = 1
    """Background pixels kept between different paths (>= 1, so paths never touch, not even diagonally)."""

    def __post_init__(self) -> None:
        if self.num_paths < 2:
            raise ValueError(f"num_paths must be >= 2, got {self.num_paths}")
        if not 0.0 < self.min_length <= self.max_length <= 1.0:
            raise ValueError(f"need 0 < min_length <= max_length <= 1, got {self.min_length}, {self.max_length}")
        if self.curvature < 0:
            raise ValueError(f"curvature must be >= 0, got {self.curvature}")
        if self.dash_on < 0 or self.dash_off < 0 or (self.dash_on > 0 and self.dash_off == 0):
            raise ValueError(f"need dash_on = 0 (solid) or dash_on, dash_off > 0, got {self.dash_on}, {self.dash_off}")
        if self.dot_radius < 0:
            raise ValueError(f"dot_radius must be >= 0, got {self.dot_radius}")
        if self.min_gap < 1:
            raise ValueError(f"min_gap must be >= 1 so that paths never touch, got {self.min_gap}")

    @property
    def dashed(self) -> bool:
        """Whether paths are drawn dashed."""
        return self.dash_on > 0


PATHFINDER_DIFFICULTIES: dict[str, PathfinderDifficulty] = {
    # two paths: a disconnected image has no distractor at all
    "easy": PathfinderDifficulty(num_paths=2, min_length=0.45, max_length=0.8),
    # three solid paths: one or two distractors
    "default": PathfinderDifficulty(num_paths=3, min_length=0.4, max_length=0.8),
    # four curvier, dashed paths, closer to the LRA Pathfinder: following a path means bridging gaps
    "hard": PathfinderDifficulty(num_paths=4, min_length=0.35, max_length=0.7, curvature=0.8, dash_on=3, dash_off=2),
}
"""Named presets for the ``difficulty`` argument of :class:`PathfinderDataset`."""


@dataclass
class PathfinderSample:
    """One rendered image with the generator's ground truth (from ``PathfinderDataset.render(return_meta=True)``).

    Shape:
        image: (H, W) uint8, 255 on ink and 0 on background.
    """

    image: np.ndarray
    """(H, W) uint8 rendered image."""
    label: int
    """1 if the two dots are joined by one path, else 0."""
    endpoints: np.ndarray
    """(2, 2) int64 ``(row, col)`` centres of the two dots."""
    endpoint_paths: tuple[int, int]
    """Index into ``paths`` of the path each dot belongs to."""
    paths: list[np.ndarray] = field(default_factory=list)
    """Per path the (n, 2) int64 ``(row, col)`` pixels of its full (undashed) trace, dots included."""


@functools.cache
def _square_offsets(radius: int) -> np.ndarray:
    """Integer offsets of a (2 radius + 1) square. Shape: (n, 2)."""
    r = np.arange(-radius, radius + 1)
    return np.stack(np.meshgrid(r, r, indexing="ij"), axis=-1).reshape(-1, 2)


@functools.cache
def _disc_offsets(radius: int) -> np.ndarray:
    """Integer offsets of a filled disc; radius 1 gives the 3x3 square. Shape: (n, 2)."""
    square = _square_offsets(radius)
    return square[(square**2).sum(axis=1) <= radius * radius + radius]


@functools.cache
def _bezier_basis(n: int) -> np.ndarray:
    """Cubic Bernstein polynomials at ``n`` equally spaced parameters in [0, 1]. Shape: (n, 4)."""
    t = np.linspace(0.0, 1.0, n)[:, None]
    s = 1.0 - t
    return np.concatenate([s**3, 3 * s**2 * t, 3 * s * t**2, t**3], axis=1)


def _bezier_pixels(ctrl: np.ndarray) -> np.ndarray:
    """Rasterise a batch of cubic Bezier curves to 8-connected pixel chains (with repeated pixels).

    A cubic Bezier moves at most ``3 * max_edge`` per unit parameter (``max_edge``: the longest edge of the
    control polygon), so ``n - 1 > 3 * max_edge`` samples keep every step below one pixel; points less than a
    pixel apart round to equal or 8-adjacent pixels.

    Shape:
        ctrl: (K, 4, 2) float control points -> (K, n, 2) int64 pixels; n is shared by the batch.
    """
    max_edge = float(np.abs(np.diff(ctrl, axis=1)).sum(axis=2).max())  # L1 >= L2 length: a safe bound
    return np.rint(_bezier_basis(int(3.0 * max_edge) + 2) @ ctrl).astype(np.int64)


def _dedupe(chain: np.ndarray) -> np.ndarray:
    """Drop pixels equal to their predecessor. Shape: (n, 2) -> (m, 2)."""
    keep = np.ones(len(chain), dtype=bool)
    keep[1:] = np.any(chain[1:] != chain[:-1], axis=1)
    return chain[keep]


def _dash_mask(trace: np.ndarray, dash_on: int, dash_off: int, rng: np.random.Generator) -> np.ndarray:
    """Which pixels of a trace are drawn: dashes along the arc length, the first and last dash always drawn.

    Shape:
        trace: (n, 2) pixels -> (n,) bool.
    """
    steps = np.linalg.norm(np.diff(trace, axis=0).astype(np.float64), axis=1)
    arc = np.concatenate([[0.0], np.cumsum(steps)])
    period = dash_on + dash_off
    drawn = (arc + rng.uniform(0, period)) % period < dash_on
    drawn |= (arc < dash_on) | (arc > arc[-1] - dash_on)
    return drawn


def _layout(rng: np.random.Generator, size: int, cfg: PathfinderDifficulty) -> tuple[np.ndarray, np.ndarray] | None:
    """Lay out ``num_paths`` curves that keep ``min_gap`` to each other, dots at both ends included.

    Every end keeps room for a dot, whether it gets one or not, so that the layout does not depend on the
    label. Candidates are drawn in one vectorised batch and picked greedily: each path is the first candidate
    that keeps away from the paths placed before it. Returns None if they did not fit (the caller retries).

    Shape:
        -> ((num_paths, n, 2) int64 pixel chains with repeats, (num_paths, 2, 2) end points); None on failure.
    """
    lo, hi = cfg.dot_radius + 1, size - 2 - cfg.dot_radius  # dot centres keep clear of the border
    u = rng.random((_CANDIDATES_PER_PATH * cfg.num_paths, 8))
    starts = np.rint(lo + (hi - lo) * u[:, :2])
    chord = (cfg.min_length + (cfg.max_length - cfg.min_length) * u[:, 2]) * (size - 1)
    angle = 2.0 * math.pi * u[:, 3]
    ends = np.rint(starts + chord[:, None] * np.stack([np.sin(angle), np.cos(angle)], axis=1))
    inside = ((ends >= lo) & (ends <= hi)).all(axis=1)
    if inside.sum() < cfg.num_paths:
        return None
    u, starts, chord, ends = u[inside], starts[inside], chord[inside], ends[inside]
    # cubic Bezier whose control arms point in independent, uniformly random directions: the directions in
    # which a path leaves its two ends are independent, else the two dots on one path would share an
    # orientation, a cue that pooled local features pick up without following the path
    theta = 2.0 * math.pi * u[:, 4:6]
    arm = (cfg.curvature * (0.5 + 0.5 * u[:, 6:8]) * chord[:, None])[..., None]  # (k, 2, 1)
    c1 = starts + arm[:, 0] * np.stack([np.sin(theta[:, 0]), np.cos(theta[:, 0])], axis=1)
    c2 = ends + arm[:, 1] * np.stack([np.sin(theta[:, 1]), np.cos(theta[:, 1])], axis=1)
    chains = _bezier_pixels(np.clip(np.stack([starts, c1, c2, ends], axis=1), 0, size - 1))  # (k, n, 2)
    dot = _disc_offsets(cfg.dot_radius)
    dots = np.stack([starts, ends], axis=1).astype(np.int64)[:, :, None, :] + dot  # (k, 2, len(dot), 2)
    bodies = np.concatenate([chains, dots.reshape(len(chains), -1, 2)], axis=1)  # (k, m, 2)

    # collision tests on a flat mask with a border of min_gap pixels, so that growing never needs clipping
    g = cfg.min_gap
    width = size + 2 * g
    flat = (bodies[..., 0] + g) * width + bodies[..., 1] + g  # (k, m)
    grow = _square_offsets(g) @ np.array([width, 1])
    blocked = np.zeros(width * width, dtype=bool)  # placed bodies grown by min_gap
    free = np.ones(len(chains), dtype=bool)
    picked = []
    for _ in range(cfg.num_paths):
        if not free.any():
            return None
        j = int(np.argmax(free))
        picked.append(j)
        blocked[(flat[j][:, None] + grow).ravel()] = True
        free &= ~blocked[flat].any(axis=1)
    return chains[picked], np.stack([starts[picked], ends[picked]], axis=1).astype(np.int64)


def _pick_dots(
    rng: np.random.Generator, ends: np.ndarray, label: int
) -> tuple[tuple[int, int], tuple[int, int]] | None:
    """Choose the two marked ends as ``(path, end)`` pairs; None if the layout has no fitting disconnected pair.

    A random path is chosen among those whose chord (end-to-end distance) is, within ``_DISTANCE_TOLERANCE``
    pixels, also the distance between two ends of different paths. The connected class marks the chosen path's
    two ends, the disconnected class such a pair of ends of different paths. Layouts without any such path are
    rejected in both classes, so that both classes see the same layouts and nearly the same dot distances.

    Shape:
        ends: (num_paths, 2, 2) end points.
    """
    n = len(ends)
    flat = ends.reshape(-1, 2).astype(np.float64)  # row 2 * path + end
    owner = np.arange(2 * n) // 2
    chord = np.linalg.norm(flat[1::2] - flat[0::2], axis=1)  # (n,)
    dist = np.linalg.norm(flat[:, None, :] - flat[None, :, :], axis=-1)  # (2n, 2n)
    cross = (owner[:, None] < owner[None, :]).reshape(-1)
    fits = np.abs(dist.reshape(1, -1) - chord[:, None]) <= _DISTANCE_TOLERANCE  # (n, 4n^2): path x end pair
    fits &= cross
    candidates = np.flatnonzero(fits.any(axis=1))
    if len(candidates) == 0:
        return None
    path = int(candidates[rng.integers(len(candidates))])
    if label == 1:
        return (path, 0), (path, 1)
    pairs = np.flatnonzero(fits[path])
    pair = int(pairs[rng.integers(len(pairs))])
    a, b = divmod(pair, 2 * n)
    return (int(owner[a]), a % 2), (int(owner[b]), b % 2)


def render_pathfinder(rng: np.random.Generator, size: int, label: int, cfg: PathfinderDifficulty) -> PathfinderSample:
    """Render one Pathfinder image with the given label from a numpy generator.

    Shape:
        returns a sample whose image is (size, size) uint8.
    """
    for _ in range(_MAX_SAMPLE_TRIES):
        layout = _layout(rng, size, cfg)
        if layout is None:
            continue
        marked = _pick_dots(rng, layout[1], label)
        if marked is not None:
            break
    else:
        raise RuntimeError(
            f"could not lay out {cfg.num_paths} non-touching paths in a {size}x{size} image after "
            f"{_MAX_SAMPLE_TRIES} tries; use fewer or shorter paths, a smaller min_gap or a larger image"
        )
    chains, ends = layout
    dot = _disc_offsets(cfg.dot_radius)
    image = np.zeros((size, size), dtype=np.uint8)
    paths = []
    for k, chain in enumerate(chains):
        trace = _dedupe(chain)
        drawn = trace[_dash_mask(trace, cfg.dash_on, cfg.dash_off, rng)] if cfg.dashed else trace
        image[drawn[:, 0], drawn[:, 1]] = 255
        dots = [ends[k, e] + dot for path, e in marked if path == k]
        if dots:
            dot_pixels = np.concatenate(dots)
            image[dot_pixels[:, 0], dot_pixels[:, 1]] = 255
            trace = np.concatenate([trace, dot_pixels])
        paths.append(trace)
    endpoints = np.stack([ends[path, e] for path, e in marked])
    return PathfinderSample(image, label, endpoints, (marked[0][0], marked[1][0]), paths)


class PathfinderDataset(GeneratedDataset[PathfinderDifficulty]):
    """Pathfinder images generated on the fly, deterministic from ``(seed, index)``.

    Sample ``i`` depends only on ``seed``, ``i`` and the generation parameters (``image_size``,
    ``difficulty``), never on access order or worker. Labels alternate with the index (``i % 2``), so any
    even-length dataset is exactly balanced (rendering time: docs/benchmarks.md, "Generated datasets"); see
    :class:`~hyenapixel.data.generated.GeneratedDataset` for the arguments, caching and
    :meth:`splits`. ``difficulty`` is a preset name of :data:`PATHFINDER_DIFFICULTIES` or a
    :class:`PathfinderDifficulty`; ``render(i, return_meta=True)`` returns a :class:`PathfinderSample`.

    Shape:
        ``dataset[i]`` -> (image: (in_chans, image_size, image_size) float32, label: int).
    """

    classes: ClassVar[list[str]] = ["disconnected", "connected"]
    difficulties: ClassVar[dict[str, PathfinderDifficulty]] = PATHFINDER_DIFFICULTIES
    difficulty_type: ClassVar[type] = PathfinderDifficulty

    def render_sample(self, rng: np.random.Generator, label: int) -> PathfinderSample:
        """Shape: returns a sample whose image is (image_size, image_size) uint8."""
        return render_pathfinder(rng, self.image_size, label, self.difficulty)
