"""Generate argparse options from the typed config dataclasses (for the paper's Section 4.1 recipes).

Every dataclass field becomes one ``--flag`` whose help text is the field's ``metadata["help"]`` followed by its
default. Values are parsed by :func:`hyenapixel.configio.coerce`, so the command line, recipes and YAML files
share one conversion, and a bad value is reported with the flag's name. Options that are not given stay out of the
namespace (``argparse.SUPPRESS``), so that only explicit flags override a recipe.
"""

from __future__ import annotations

import argparse
import dataclasses
import typing
from typing import Any

from hyenapixel.configio import config_fields, flag_name, format_default, unwrap_optional
from hyenapixel.constants import INPUT_SIZE_ALIASES
from hyenapixel.progress import PROGRESS_MODES

#: The image-size option of every command: one word (``--input-size``, as train's config field) and the spellings
#: users bring from timm's scripts and other tools.
INPUT_SIZE_FLAGS = ("--input-size", *INPUT_SIZE_ALIASES)

__all__ = [
    "INPUT_SIZE_FLAGS",
    "add_dataclass_arguments",
    "add_output_arguments",
    "add_input_size_argument",
    "add_progress_argument",
    "explicit_options",
    "format_default",
]


def _metavar(base: Any) -> str:
    if typing.get_origin(base) is tuple:
        base = typing.get_args(base)[0]
    return {int: "INT", float: "FLOAT", str: "STR"}.get(base, "VALUE")


def add_dataclass_arguments(
    parser: argparse.ArgumentParser, cls: type, *, titles: dict[str | None, str] | None = None
) -> None:
    """Add one option per field of config class ``cls`` (sections of a :class:`TrainConfig` become groups)."""
    groups: dict[str | None, Any] = {}
    for name, (section, f, hint) in config_fields(cls).items():
        if section not in groups:
            title = (titles or {}).get(section, f"{section} options" if section else None)
            groups[section] = parser.add_argument_group(title) if title else parser
        group = groups[section]
        base, optional = unwrap_optional(hint)
        default = f.default if f.default is not dataclasses.MISSING else None
        help_text = f"{f.metadata.get('help', '')} (default: {format_default(default)})"
        help_text = help_text.replace("%", "%%")
        kwargs: dict[str, Any] = {"dest": name, "default": argparse.SUPPRESS, "help": help_text}
        flags = (flag_name(name), *f.metadata.get("aliases", ()))
        if base is bool:
            group.add_argument(*flags, action=argparse.BooleanOptionalAction, **kwargs)
            continue
        choices = f.metadata.get("choices")
        if typing.get_origin(base) is tuple:
            # string tuples (--model, --checkpoint) repeat: "--model A --model B" == "--model A B"
            action = "extend" if typing.get_args(base)[:1] == (str,) else "store"
            group.add_argument(*flags, nargs="+", action=action, metavar=_metavar(base), **kwargs)
        else:
            metavar = "{" + ",".join(map(str, choices)) + "}" if choices else _metavar(base)
            group.add_argument(*flags, metavar=metavar + ("|none" if optional else ""), **kwargs)


def explicit_options(namespace: argparse.Namespace, cls: type) -> dict[str, Any]:
    """The config fields given on the command line (raw values, converted later by the config class)."""
    names = config_fields(cls)
    return {k: v for k, v in vars(namespace).items() if k in names}


def add_output_arguments(parser: argparse.ArgumentParser, tool: str) -> None:
    """``--output DIR`` and ``--overwrite`` of an analysis tool (see :func:`hyenapixel.analysis.output_dir`)."""
    parser.add_argument("--output", metavar="DIR", help=f"output folder (default: analysis/{tool}-<time>/)")
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help=f"replace the {tool} report of an earlier run in --output (default: refuse)",
    )


def add_progress_argument(parser: argparse.ArgumentParser) -> None:
    """``--progress``: how a long command shows its progress (the choices of ``train --progress``)."""
    parser.add_argument(
        "--progress",
        choices=PROGRESS_MODES,
        default="auto",
        help="progress display: bar (tqdm), log (plain lines, for log files), none; auto: bar on a terminal, else log "
        "(default: auto)",
    )


def add_input_size_argument(parser: Any, help: str, **kwargs: Any) -> None:
    """``--input-size`` (aliases ``--img-size``, ``--image-size``) into ``args.img_size``, integers; ``kwargs`` for
    ``add_argument`` (``nargs``, ``default``, ``metavar``)."""
    kwargs.setdefault("metavar", "PX")
    parser.add_argument(*INPUT_SIZE_FLAGS, dest="img_size", type=int, help=help, **kwargs)
