"""Shared test fixtures: the official parity fixtures vendored in tests/fixtures/official (see its README.md)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

import hyenapixel  # noqa: F401  (registers the models in timm)
from official_fixtures import FIXTURES


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    return FIXTURES


@pytest.fixture(scope="session")
def reduced_models(fixtures_dir: Path) -> dict:
    return json.loads((fixtures_dir / "reduced_models.json").read_text())


@pytest.fixture(scope="session")
def manifest(fixtures_dir: Path) -> dict:
    return json.loads((fixtures_dir / "official_state_dict_manifest.json").read_text())


@pytest.fixture(scope="session")
def parity_inputs(fixtures_dir: Path) -> dict:
    return torch.load(fixtures_dir / "inputs.pt", weights_only=True)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture(params=[1, 2], ids=["1thread", "2threads"])
def block_threads(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """Torch threads for the blocked CPU paths (:mod:`hyenapixel.ops.parallel`): with 1 their blocks run as one plain
    loop, with 2 on two threads. Yields the worker counts of every threaded run, so a test can check that it ran
    threaded."""
    from hyenapixel.ops import parallel

    runs: list[int] = []
    real_pool = parallel._pool

    def spy(workers: int):  # noqa: ANN202 - returns the real executor
        runs.append(workers + 1)  # the calling thread works too
        return real_pool(workers)

    monkeypatch.setattr(parallel, "_pool", spy)
    before = torch.get_num_threads()
    torch.set_num_threads(request.param)
    try:
        yield runs
    finally:
        torch.set_num_threads(before)
    assert bool(runs) == (request.param > 1), "the blocks ran threaded only and always with more than one thread"
