"""The ``hyenapixel`` command line: one console script with subcommands (see :mod:`hyenapixel.cli.main`)."""

from hyenapixel.cli.main import SUBCOMMANDS, build_parser, main

__all__ = ["SUBCOMMANDS", "build_parser", "main"]
