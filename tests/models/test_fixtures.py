"""The vendored official parity fixtures (tests/fixtures/official) are the files their SHA256SUMS name, unchanged:
a test that reads them can only be as trustworthy as their bytes."""

from __future__ import annotations

import hashlib
from pathlib import Path


def _sums(fixtures_dir: Path) -> dict[str, str]:
    sums = {}
    for line in (fixtures_dir / "SHA256SUMS").read_text().splitlines():
        digest, name = line.split(maxsplit=1)
        sums[name.lstrip("*")] = digest
    return sums


def test_every_fixture_matches_its_checksum(fixtures_dir: Path) -> None:
    sums = _sums(fixtures_dir)
    listed = set(sums) | {"SHA256SUMS", "README.md"}
    present = {p.name for p in fixtures_dir.iterdir() if p.is_file()}
    assert present == listed, "tests/fixtures/official holds a file SHA256SUMS does not list, or lacks one it lists"
    for name, digest in sums.items():
        assert hashlib.sha256((fixtures_dir / name).read_bytes()).hexdigest() == digest, f"{name} was modified"


def test_checksums_cover_the_files_the_parity_tests_read(fixtures_dir: Path, reduced_models: dict) -> None:
    sums = _sums(fixtures_dir)
    assert {"inputs.pt", "reduced_models.json", "official_state_dict_manifest.json"} <= set(sums)
    assert {r["state_dict"] for r in reduced_models.values()} <= set(sums)
