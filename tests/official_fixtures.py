"""Where the vendored official parity fixtures live and which variants they hold (tests/fixtures/official/README.md)."""

from __future__ import annotations

import json
from pathlib import Path

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "official"

#: The released official layouts the fixtures hold, in the order of reduced_models.json.
VARIANTS: list[str] = list(json.loads((FIXTURES / "reduced_models.json").read_text()))
