"""Shared test fixtures: the official parity fixtures vendored in tests/fixtures/official (see its README.md)."""

from __future__ import annotations

import json
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
