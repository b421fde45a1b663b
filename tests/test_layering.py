"""The import rule of the package: imports only go downward,
``cli -> evidence -> (train | analysis | dense | export) -> (models | data) -> mixers -> (filters | layers) -> ops``,
the four layers under ``evidence`` never import each other, the shared torch-free modules (``hyenapixel.configio``,
``constants``, ``errors``, ``figures``, ``lazy``, ``modelnames``, ``paths``, ``progress``) may be imported by every
layer and import no layer (nor torch), and no module imports another module's ``_private`` names. Relative imports
count like absolute ones.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import NamedTuple

SRC = Path(__file__).resolve().parents[1] / "src" / "hyenapixel"
RANK = {
    "configio": -0.5,  # above errors, which it imports
    "constants": -1,
    "errors": -1,
    "figures": -0.5,  # above paths, which it imports
    "lazy": -1,
    "modelnames": -1,
    "paths": -1,
    "progress": -1,
    "ops": 0,
    "filters": 1,
    "layers": 1,
    "mixers": 2,
    "models": 3,
    "data": 3,
    "train": 4,
    "analysis": 4,
    "dense": 4,
    "export": 4,
    "evidence": 4.5,  # the ablation: training runs, then the analysis tools on them
    "cli": 5,
}
UPPER = ("train", "analysis", "dense", "export")


class Import(NamedTuple):
    """One imported module (absolute, relative ones resolved) and the names taken from it."""

    module: str
    names: tuple[str, ...]


def _imports(path: Path, root: Path = SRC) -> list[Import]:
    # ("hyenapixel", "mixers", "hyena") for mixers/hyena.py, (..., "mixers", "__init__") for mixers/__init__.py: the
    # package relative imports start from is everything but the last part in both cases
    package = path.relative_to(root.parent).with_suffix("").parts[:-1]
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [Import(a.name, ()) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                module = ".".join([*base, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            found.append(Import(module, tuple(a.name for a in node.names)))
    return found


def _layers(imp: Import) -> set[str]:
    """The layers of hyenapixel an import reaches (``from hyenapixel import models`` reaches ``models``)."""
    parts = imp.module.split(".")
    if parts[0] != "hyenapixel":
        return set()
    if len(parts) == 1:
        return {n for n in imp.names if n in RANK}
    return {parts[1]} if parts[1] in RANK else set()


def _private(imp: Import) -> list[str]:
    """Private modules or names an import takes from hyenapixel (``_name``, not ``__dunder__``)."""
    if not imp.module.startswith("hyenapixel"):
        return []
    modules = [p for p in imp.module.split(".") if p.startswith("_") and not p.startswith("__")]
    names = [n for n in imp.names if n.startswith("_") and not n.startswith("__")]
    return modules + names


def _files(layer: str) -> list[Path]:
    if (SRC / layer).is_dir():
        return sorted((SRC / layer).rglob("*.py"))
    return [SRC / f"{layer}.py"] if (SRC / f"{layer}.py").is_file() else []


def test_imports_only_go_downward():
    violations = []
    for layer, rank in RANK.items():
        for path in _files(layer):
            for imp in _imports(path):
                for target in _layers(imp) - {layer}:
                    if RANK[target] >= rank:
                        violations.append(f"{path.relative_to(SRC)} imports hyenapixel.{target}")
    assert violations == []


def test_upper_layers_never_import_each_other():
    violations = [
        f"{path.relative_to(SRC)} imports hyenapixel.{target}"
        for layer in UPPER
        for path in _files(layer)
        for imp in _imports(path)
        for target in _layers(imp) & (set(UPPER) - {layer})
    ]
    assert violations == []


def test_shared_modules_import_no_layer_and_no_torch():
    """The torch-free modules every layer may import: they import one another at most, never a layer or torch."""
    shared = [name for name, rank in RANK.items() if rank < 0]
    for name in shared:
        imports = _imports(SRC / f"{name}.py")
        bad = [imp for imp in imports if _layers(imp) - set(shared) or imp.module.split(".")[0] == "torch"]
        assert bad == [], name


def test_no_module_imports_private_names():
    violations = [
        f"{path.relative_to(SRC)}: {imp.module} -> {name}"
        for path in sorted(SRC.rglob("*.py"))
        for imp in _imports(path)
        for name in _private(imp)
    ]
    assert violations == []


def test_rule_checker_sees_every_kind_of_import(tmp_path):
    pkg = tmp_path / "hyenapixel" / "mixers"
    pkg.mkdir(parents=True)
    f = pkg / "m.py"
    f.write_text(
        "from hyenapixel.models import x\nimport hyenapixel.ops.fftconv\nfrom hyenapixel import data, errors\n"
        "from ..train import run\nfrom . import cache\nfrom .hyena import _helper\nfrom .._private import y\n"
    )
    imps = _imports(f, root=tmp_path / "hyenapixel")
    assert set().union(*map(_layers, imps)) == {"models", "ops", "data", "errors", "train", "mixers"}
    assert Import("hyenapixel.train", ("run",)) in imps and Import("hyenapixel.mixers", ("cache",)) in imps
    assert sorted(n for imp in imps for n in _private(imp)) == ["_helper", "_private"]
