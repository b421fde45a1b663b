"""Shared test fixtures: the official parity fixtures vendored in tests/fixtures/official (see its README.md)."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

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
def block_threads(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Torch threads for the blocked CPU paths (:mod:`hyenapixel.ops.parallel`): with 1 their blocks run as one plain
    loop, with 2 on two threads, however small the test's problem (the sizes from which the FFT convolution and the
    implicit filter spread their blocks over threads are set to 0). Yields the names of the threads other than the
    test's own that ran blocks (seen through the standard library's thread-pool interface), so a test can check that
    it ran threaded."""
    from hyenapixel.ops import fftconv, implicit

    monkeypatch.setattr(fftconv, "THREADS_FROM_PLANE", 0)
    monkeypatch.setattr(implicit, "THREADS_FROM_TAPS", 0)
    caller = threading.current_thread()
    ran_on: list[str] = []
    submit = ThreadPoolExecutor.submit

    def recording_submit(pool: ThreadPoolExecutor, fn: Callable, /, *args: Any, **kwargs: Any) -> Future:
        def run() -> Any:
            me = threading.current_thread()
            if me is not caller:
                ran_on.append(me.name)
            return fn(*args, **kwargs)

        return submit(pool, run)

    monkeypatch.setattr(ThreadPoolExecutor, "submit", recording_submit)
    before = torch.get_num_threads()
    torch.set_num_threads(request.param)
    try:
        yield ran_on
    finally:
        torch.set_num_threads(before)
    assert bool(ran_on) == (request.param > 1), "the blocks ran on other threads only and always with two threads"


@pytest.fixture
def two_threads_pool_tasks(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Two torch threads for the test; yields a list that gets an entry for every task handed to a thread pool (a
    test clears it between its cases)."""
    tasks: list[str] = []
    submit = ThreadPoolExecutor.submit

    def recording_submit(pool: ThreadPoolExecutor, fn: Callable, /, *args: Any, **kwargs: Any) -> Future:
        tasks.append(threading.current_thread().name)
        return submit(pool, fn, *args, **kwargs)

    monkeypatch.setattr(ThreadPoolExecutor, "submit", recording_submit)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        yield tasks
    finally:
        torch.set_num_threads(before)


@pytest.fixture
def trained_mlp():  # noqa: ANN201 - a hyenapixel.layers.Mlp
    """A StarReLU MLP (12 channels, 36 hidden) in eval mode, with its scale and shift away from their initial 1 and 0
    (trained weights, as the folding and export tests need)."""
    from hyenapixel.layers import Mlp

    torch.manual_seed(0)
    mlp = Mlp(12, mlp_ratio=3.0).eval()
    with torch.no_grad():
        mlp.act.scale.fill_(1.7)
        mlp.act.bias.fill_(-0.3)
    return mlp
