"""Shared test fixtures: paths to the official parity fixtures in ../shared."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import hyenapixel  # noqa: F401  (registers the models in timm)

FIXTURES = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures" / "official"


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    if not (FIXTURES / "reduced_models.json").is_file():
        pytest.fail(f"official parity fixtures not found at {FIXTURES}")
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
