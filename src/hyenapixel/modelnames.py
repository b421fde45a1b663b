"""Model names known to timm and to this package, read from their source files without importing torch or timm.

The command line checks ``--model`` before the heavy imports, so that a typo answers in a fraction of a second
instead of after torch and timm have loaded (tens of seconds on a busy machine). The names are the functions under
``@register_model`` in ``timm/models/*.py`` and ``hyenapixel/models/*.py`` plus timm's deprecated aliases, which is
what ``timm.list_models()`` lists after ``import hyenapixel`` (a test compares the two). Where the sources cannot be
read, or a name carries a hub prefix (``hf-hub:...``, ``local-dir:...``), the check answers "can't tell" and the
model is checked by timm itself when it is created.
"""

from __future__ import annotations

import difflib
import functools
import importlib.util
import re
from pathlib import Path

__all__ = ["close_model_matches", "known_model_names", "unknown_model_problem"]

_REGISTERED = re.compile(r"^@register_model\b[^\n]*\n(?:@[^\n]*\n)*def\s+(\w+)\s*\(", re.MULTILINE)
_DEPRECATIONS = re.compile(r"register_model_deprecations\(\s*__name__\s*,\s*\{(.*?)\}\s*\)", re.DOTALL)
_QUOTED_KEY = re.compile(r"['\"]([\w.\-]+)['\"]\s*:")
# fewer names than this from timm's sources means its layout changed and the scan cannot be trusted
_MIN_TIMM_NAMES = 200


def _source_names(folder: Path) -> tuple[dict[str, None], set[str]]:
    """The ``@register_model`` function names (in file and source order) and the deprecated aliases declared in
    ``folder/*.py``."""
    names: dict[str, None] = {}
    aliases: set[str] = set()
    for path in sorted(folder.glob("*.py")):
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        names.update(dict.fromkeys(_REGISTERED.findall(text)))
        for block in _DEPRECATIONS.findall(text):
            aliases.update(_QUOTED_KEY.findall(block))
    return names, aliases


def _package_folder(package: str) -> Path | None:
    """The folder of an installed package, found without importing it."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


@functools.cache
def known_model_names() -> frozenset[str] | None:
    """Every model name ``timm.create_model`` accepts after ``import hyenapixel`` (without pretrained tags), or
    None where timm's sources cannot be read. Cached: the scan reads about 150 files once per process."""
    timm_folder = _package_folder("timm")
    if timm_folder is None:
        return None
    timm_names, aliases = _source_names(timm_folder / "models")
    if len(timm_names) < _MIN_TIMM_NAMES:
        return None
    ours, _ = _source_names(Path(__file__).resolve().parent / "models")
    return frozenset(timm_names).union(aliases, ours)


def close_model_matches(name: str, names: frozenset[str] | set[str] | list[str]) -> list[str]:
    """Up to five names close to ``name``: MetaFormer-family names first, then any."""
    formers = [n for n in names if "former" in n]
    close = difflib.get_close_matches(name, formers, n=5, cutoff=0.5)
    return close or difflib.get_close_matches(name, list(names), n=5, cutoff=0.6)


def unknown_model_problem(name: str) -> str | None:
    """``"unknown model 'x'; close matches: ..."`` when ``name`` is certainly not a model timm can create after
    ``import hyenapixel``; None when it is, or when that cannot be told without importing timm (hub prefixes,
    unreadable sources). A pretrained tag (``convformer_s18.sail_in1k``) is ignored, as timm does."""
    if ":" in name:
        return None
    names = known_model_names()
    if names is None:
        return None
    architecture = name.split(".", 1)[0]
    if architecture in names:
        return None
    close = close_model_matches(architecture, names)
    if close:
        return f"unknown model {name!r}; close matches: {', '.join(close)}"
    ours = list(_source_names(Path(__file__).resolve().parent / "models")[0])
    return f"unknown model {name!r}; HyenaPixel models: {', '.join(ours)}"
