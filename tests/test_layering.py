"""The import rule of DESIGN.md: imports only go downward,
``cli -> (train | analysis | dense) -> (models | data) -> mixers -> (filters | layers) -> ops``."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "hyenapixel"
RANK = {
    "ops": 0,
    "filters": 1,
    "layers": 1,
    "mixers": 2,
    "models": 3,
    "data": 3,
    "train": 4,
    "analysis": 4,
    "dense": 4,
    "cli": 5,
}


def _imported_subpackages(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found = set()
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        for name in names:
            parts = name.split(".")
            if parts[0] == "hyenapixel" and len(parts) > 1 and parts[1] in RANK:
                found.add(parts[1])
    return found


def test_imports_only_go_downward():
    violations = []
    for sub, rank in RANK.items():
        for path in sorted((SRC / sub).rglob("*.py")) if (SRC / sub).is_dir() else []:
            for target in _imported_subpackages(path) - {sub}:
                if RANK[target] >= rank:
                    violations.append(f"{path.relative_to(SRC)} imports hyenapixel.{target}")
    assert violations == []


def test_rule_checker_sees_imports(tmp_path):
    f = tmp_path / "m.py"
    f.write_text("from hyenapixel.models import x\nimport hyenapixel.ops.fftconv\n")
    assert _imported_subpackages(f) == {"models", "ops"}
