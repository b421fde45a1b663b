"""The ``hyenapixel`` console script: one command, one subcommand per task (training: paper Section 4.1).

Adding a subcommand is one line in :data:`SUBCOMMANDS`: the named module provides ``HELP`` (a one-line
summary), ``add_arguments(parser)`` and ``run(args) -> int`` (the exit code). Modules are imported only when
the parser is built, and errors are turned into clean messages and exit codes here:

* 0: success; 1: the run failed (for example a diverged loss); 2: bad options or bad data (no traceback);
  130: interrupted.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence

__all__ = ["SUBCOMMANDS", "build_parser", "main"]

#: (name, module): each module defines HELP, add_arguments(parser) and run(args) -> int.
SUBCOMMANDS: list[tuple[str, str]] = [
    ("train", "hyenapixel.cli.train"),
    ("validate", "hyenapixel.cli.validate"),
    ("dense-train", "hyenapixel.cli.dense_train"),
]


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with one sub-parser per entry of :data:`SUBCOMMANDS`."""
    parser = argparse.ArgumentParser(
        prog="hyenapixel",
        description="HyenaPixel (Spravil et al., ECAI 2024): train and evaluate models.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, module_name in SUBCOMMANDS:
        module = importlib.import_module(module_name)
        doc = (module.__doc__ or "").strip()
        p = sub.add_parser(
            name,
            help=module.HELP,
            description=doc or module.HELP,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        module.add_arguments(p)
        p.set_defaults(_run=module.run, _parser=p)
    return parser


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time of the record (tests and notebooks replace it)."""

    @property
    def stream(self):  # noqa: ANN201
        return sys.stderr

    @stream.setter
    def stream(self, value: object) -> None:
        pass


def _setup_logging() -> None:
    rank = int(os.environ.get("RANK", "0"))
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


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` (default: ``sys.argv[1:]``), run the subcommand, return its exit code."""
    from hyenapixel.data import DataError
    from hyenapixel.errors import UserError
    from hyenapixel.train.loop import NonFiniteLossError

    parser = build_parser()
    args = parser.parse_args(argv)
    _setup_logging()
    prog = args._parser.prog
    try:
        return int(args._run(args) or 0)
    except DataError as exc:
        print(f"{prog}: data error: {_worker_message(exc)}", file=sys.stderr)
        return 2
    except (UserError, FileNotFoundError) as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    except NonFiniteLossError as exc:
        print(f"{prog}: training stopped: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
