"""Typed config dataclasses and their conversion to and from plain values: YAML files, recipes and command-line strings
(the schema of :mod:`hyenapixel.train.config`, paper Section 4.1 recipes, and of the dense run's
:mod:`hyenapixel.dense.config`).

:func:`option` declares a field with its help text, choices and bounds; the CLI makes one flag per field from it,
and :func:`check_options` (called by each config's ``__post_init__``) checks the choices and bounds.

Generic over any config dataclass: a field whose type is itself a dataclass is a *section* (``TrainConfig.optim``);
the options are the fields of the sections, or the fields of the class when it has no sections. Option names are
unique, so a config can be given flat (``{"lr": 1e-3}``) or nested (``{"optim": {"lr": 1e-3}}``). Torch-free.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from collections.abc import Mapping
from typing import Any, Literal, TypeVar

from hyenapixel.errors import UserError

__all__ = [
    "ConfigError",
    "build_config",
    "check_options",
    "coerce",
    "config_fields",
    "flag_name",
    "flatten",
    "format_default",
    "option",
    "sections",
    "suggest",
    "to_plain",
    "unwrap_optional",
]

T = TypeVar("T")


def flag_name(name: str) -> str:
    """Command-line flag of a config field: ``warmup_epochs`` -> ``--warmup-epochs``."""
    return "--" + name.replace("_", "-")


class ConfigError(UserError, ValueError):
    """A nonsense option value. The message names the flag (``--epochs``) and, where known, the valid choices."""

    def __init__(self, name: str, message: str) -> None:
        self.name = name
        super().__init__(f"{flag_name(name)}: {message}")


def option(
    default: Any,
    help: str,
    *,
    choices: tuple[Any, ...] | None = None,
    aliases: tuple[str, ...] = (),
    bound: str | None = None,
) -> Any:
    """A dataclass field with its help text, optional choices, other spellings of its flag and a bound on its value
    in the metadata. ``bound`` is ``">= 1"``, ``"> 0"`` or an interval such as ``"[0, 1)"``; None passes any bound
    (it means "the default")."""
    meta = {"help": help, "choices": choices, "aliases": aliases, "bound": bound}
    return dataclasses.field(default=default, metadata=meta)


def _within(value: float, bound: str) -> bool:
    if bound[0] in "[(":
        low, high = (float(v) for v in bound[1:-1].split(","))
        above = low <= value if bound[0] == "[" else low < value
        return above and (value <= high if bound[-1] == "]" else value < high)
    op, limit = bound.split()
    return value >= float(limit) if op == ">=" else value > float(limit)


def check_options(config: Any) -> None:
    """Raise :class:`ConfigError` for the first field of ``config`` (a dataclass of :func:`option` fields) whose
    value is not one of its choices or breaks its bound (``--epochs: must be >= 1, got 0``)."""
    for f in dataclasses.fields(config):
        value, choices, bound = getattr(config, f.name), f.metadata.get("choices"), f.metadata.get("bound")
        if value is None:
            continue
        if choices is not None and value not in choices:
            raise ConfigError(f.name, f"invalid choice {value!r}; choose from {', '.join(map(str, choices))}")
        if bound is not None and not _within(value, bound):
            raise ConfigError(f.name, f"must be {'in ' if bound[0] in '[(' else ''}{bound}, got {value}")


#: Key of derived values saved next to a run's config (``config.yaml``); not options.
RESOLVED_KEY = "resolved"


def sections(cls: type) -> dict[str, type]:
    """The section fields of a config class (``name -> dataclass``); empty for a flat class."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls) if dataclasses.is_dataclass(hints[f.name])}


def config_fields(cls: type) -> dict[str, tuple[str | None, dataclasses.Field, Any]]:
    """Flat index ``name -> (section or None, field, type hint)`` of a config class's options."""
    index: dict[str, tuple[str | None, dataclasses.Field, Any]] = {}
    parts: dict[str | None, type] = dict(sections(cls)) or {None: cls}
    for section, sub in parts.items():
        hints = typing.get_type_hints(sub)
        for f in dataclasses.fields(sub):
            if f.name in index:
                raise TypeError(f"config field {f.name!r} is declared twice in {cls.__name__}")
            index[f.name] = (section, f, hints[f.name])
    return index


def flatten(values: Mapping[str, Any], section_names: typing.Collection[str]) -> dict[str, Any]:
    """Flatten one level of sections (``{"optim": {"lr": 1}}`` -> ``{"lr": 1}``); flat input passes through."""
    flat: dict[str, Any] = {}
    for key, value in values.items():
        if key in section_names and isinstance(value, Mapping):
            flat.update(value)
        elif key != RESOLVED_KEY:
            flat[key] = value
    return flat


def suggest(key: str, names: typing.Iterable[str]) -> str:
    """``; did you mean --x?`` for close matches of ``key`` among ``names`` (or nothing)."""
    close = difflib.get_close_matches(key, list(names), n=3, cutoff=0.6)
    return f"; did you mean {', '.join(flag_name(c) for c in close)}?" if close else ""


def build_config(cls: type[T], values: Mapping[str, Any], **extra: Any) -> T:
    """An instance of config class ``cls`` from a flat or nested mapping of raw values (converted by :func:`coerce`).

    ``extra`` are non-option fields of ``cls`` (``recipe=...``). Unknown keys raise :class:`ConfigError` naming
    close matches.
    """
    parts = sections(cls)
    index = config_fields(cls)
    grouped: dict[str | None, dict[str, Any]] = {name: {} for name in parts} if parts else {None: {}}
    for key, value in flatten(values, parts).items():
        if key not in index:
            raise ConfigError(key, f"unknown option{suggest(key, index)}")
        section, _, hint = index[key]
        grouped[section][key] = coerce(value, hint, key)
    if not parts:
        return cls(**grouped[None], **extra)
    return cls(**{name: parts[name](**kw) for name, kw in grouped.items() if name is not None}, **extra)


def format_default(value: Any) -> str:
    """An option value as it is typed on the command line (``16 32 64`` for a tuple, ``none``) and shown as a
    default in ``--help``."""
    if value is None:
        return "none"
    if isinstance(value, (tuple, list)):
        return " ".join(str(v) for v in value) if value else "(none)"
    return str(value)


def to_plain(value: Any) -> Any:
    """Dataclasses, tuples and mappings as nested plain dicts and lists (safe for YAML, JSON and checkpoints)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {k: to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_plain(v) for v in value]
    return value


def unwrap_optional(hint: Any) -> tuple[Any, bool]:
    """``X | None`` -> ``(X, True)``; anything else -> ``(hint, False)``."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(hint)) == 2:
            return args[0], True
    return hint, False


def coerce(value: Any, hint: Any, name: str) -> Any:
    """Convert a YAML/CLI value to the field's type (lists to tuples, ints to floats, comma-separated numbers to
    tuples); raise ConfigError."""
    base, optional = unwrap_optional(hint)
    if optional and isinstance(value, (list, tuple)) and len(value) == 1 and str(value[0]).lower() == "none":
        value = None
    if value is None or (optional and isinstance(value, str) and value.lower() == "none"):
        if optional:
            return None
        raise ConfigError(name, "must not be none")
    origin = typing.get_origin(base)
    try:
        if origin is tuple:
            item = typing.get_args(base)[0]
            if not isinstance(value, (list, tuple)):
                value = [value]
            if item is not str:  # numbers may also be given comma-separated: "32,64,128,256" as "32 64 128 256"
                value = [p for v in value for p in (v.split(",") if isinstance(v, str) else [v]) if p != ""]
            return tuple(_scalar(v, item) for v in value)
        if origin is Literal:
            return value
        return _scalar(value, base)
    except (TypeError, ValueError) as exc:
        raise ConfigError(name, f"invalid value {value!r} ({exc})") from None


def _scalar(value: Any, kind: Any) -> Any:
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "yes", "1", "on", "false", "no", "0", "off"):
            return value.lower() in ("true", "yes", "1", "on")
        raise ValueError("expected a boolean")
    if kind is int:
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            raise ValueError("expected an integer")
        return int(value)
    if kind is float:
        if isinstance(value, bool):
            raise ValueError("expected a number")
        return float(value)
    if kind is str:
        return str(value)
    return value
