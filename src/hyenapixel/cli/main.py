"""The ``hyenapixel`` console script: one command, one subcommand per task (training: paper Section 4.1).

Adding a subcommand is one line in :data:`SUBCOMMANDS`: the named module provides ``HELP`` (a one-line
summary), ``add_arguments(parser)`` and ``run(args) -> int`` (the exit code), optionally ``USAGE`` (a short
usage line for commands with many options; argparse's generated one is used otherwise). The modules and their
``add_arguments`` import nothing heavy: the options are parsed before torch or timm are loaded, so ``--help``
and usage errors answer at once; ``run`` imports what the command needs. Errors become one-line messages and
exit codes here:

* 0: success; 1: the run failed (for example a diverged loss); 2: bad options, bad data or a file that cannot be
  written (no traceback);
  130: interrupted (Ctrl-C); 143: stopped by SIGTERM after saving a checkpoint.
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import logging
import sys
from collections.abc import Sequence
from typing import TextIO

__all__ = ["SUBCOMMANDS", "build_parser", "main"]

#: (name, module): each module defines HELP, add_arguments(parser) and run(args) -> int.
SUBCOMMANDS: list[tuple[str, str]] = [
    ("train", "hyenapixel.cli.train"),
    ("validate", "hyenapixel.cli.validate"),
    ("macs", "hyenapixel.cli.macs"),
    ("erf", "hyenapixel.cli.erf"),
    ("kernels", "hyenapixel.cli.kernels"),
    ("kernel-size", "hyenapixel.cli.kernel_size"),
    ("explain", "hyenapixel.cli.explain"),
    ("bench", "hyenapixel.cli.bench"),
    ("export", "hyenapixel.cli.export"),
    ("dense-train", "hyenapixel.cli.dense_train"),
    ("ablate", "hyenapixel.cli.ablate"),
]


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with one sub-parser per entry of :data:`SUBCOMMANDS`."""
    parser = argparse.ArgumentParser(
        prog="hyenapixel",
        description="HyenaPixel (Spravil et al., ECAI 2024): train and evaluate models.",
        epilog="`hyenapixel COMMAND --help` lists the options of a command with their defaults.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, module_name in SUBCOMMANDS:
        module = importlib.import_module(module_name)
        doc = (module.__doc__ or "").strip()
        p = sub.add_parser(
            name,
            usage=getattr(module, "USAGE", None),
            help=module.HELP,
            description=doc or module.HELP,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        module.add_arguments(p)
        p.set_defaults(_run=module.run, _parser=p)
    return parser


def unrecognized_message(parser: argparse.ArgumentParser, extras: Sequence[str]) -> str:
    """``unrecognized arguments: ...`` with a "did you mean" for every misspelled option."""
    known = [s for action in parser._actions for s in action.option_strings if s.startswith("--")]
    hints = []
    for arg in extras:
        if arg.startswith("--"):
            close = difflib.get_close_matches(arg.split("=", 1)[0], known, n=1, cutoff=0.6)
            if close:
                hints.append(f"did you mean {close[0]} instead of {arg}?")
    message = f"unrecognized arguments: {' '.join(extras)}"
    return message + ("; " + " ".join(hints) if hints else "")


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time of the record (tests and notebooks replace it)."""

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, value: object) -> None:
        pass


def _setup_logging() -> None:
    from hyenapixel.train.launch import torchrun_env

    rank = torchrun_env().rank
    logger = logging.getLogger("hyenapixel")
    if not any(isinstance(h, _StderrHandler) for h in logger.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
    logger.setLevel(logging.INFO if rank == 0 else logging.WARNING)
    logger.propagate = False


def _worker_message(exc: BaseException) -> str:
    """The original message of an error re-raised from a DataLoader worker (which embeds its traceback)."""
    text = str(exc)
    if "Original Traceback" not in text:
        return text
    last = text.strip().splitlines()[-1]
    head, sep, rest = last.partition(": ")
    return rest if sep and head.endswith(type(exc).__name__) else last


def _is_data_error(exc: BaseException) -> bool:
    """A :class:`hyenapixel.data.DataError` (only loaded if the data layer was, which raising one implies)."""
    errors = sys.modules.get("hyenapixel.data.errors")
    return errors is not None and isinstance(exc, errors.DataError)


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` (default: ``sys.argv[1:]``), run the subcommand, return its exit code.

    Bare ``hyenapixel`` prints the help. Usage errors exit with status 2 through argparse (``SystemExit``).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if not argv:
        parser.print_help()
        return 0
    names = [name for name, _ in SUBCOMMANDS]
    if argv[0].startswith("-") and argv[0] not in ("-h", "--help"):
        command = next((a for a in argv if a in names), None)
        example = f"hyenapixel {command} {argv[0]} ..." if command else "hyenapixel COMMAND --option ..."
        parser.error(f"{argv[0]}: options go after the command ({example}); commands: {', '.join(names)}")
    if not argv[0].startswith("-") and argv[0] not in names:
        close = difflib.get_close_matches(argv[0], names, n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]}?" if close else ""
        parser.error(f"unknown command {argv[0]!r}{hint} (commands: {', '.join(names)})")
    args, extras = parser.parse_known_args(argv)
    if extras:
        target = getattr(args, "_parser", parser)
        target.error(unrecognized_message(target, extras))
    args._argv = argv
    _setup_logging()
    prog = args._parser.prog

    from hyenapixel.cli.model_args import check_model_names
    from hyenapixel.errors import UserError
    from hyenapixel.train.errors import NonFiniteLossError

    try:
        # the tools' --model entries, before any import
        check_model_names([req.name for req in getattr(args, "models", None) or ()])
        return int(args._run(args) or 0)
    except (UserError, FileNotFoundError) as exc:
        kind = "data error" if _is_data_error(exc) else "error"
        print(f"{prog}: {kind}: {_worker_message(exc)}", file=sys.stderr)
        return 2
    except OSError as exc:  # the file system refused: a read-only folder, a full disk, a file where a folder goes
        where = f": {exc.filename}" if getattr(exc, "filename", None) else ""
        print(f"{prog}: error: {exc.strerror or exc}{where}", file=sys.stderr)
        return 2
    except NonFiniteLossError as exc:
        print(f"{prog}: training stopped: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
