"""Package attributes loaded on first access (PEP 562), so that ``import hyenapixel`` and ``hyenapixel.dense`` stay
light (no torch until a name that needs it is used). Torch-free, importable from every layer.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_attributes"]


def lazy_attributes(package: str, names: Mapping[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """A module's ``__getattr__`` and ``__dir__`` for ``names`` (public name -> module that defines it): a name is
    imported from its module on first access and then kept in ``package``'s namespace.

    Use as ``__getattr__, __dir__ = lazy_attributes(__name__, {"name": "package.module", ...})``.
    """

    def get(name: str) -> Any:
        module = names.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        setattr(sys.modules[package], name, value)
        return value

    def listing() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(names))

    return get, listing
