"""The repeatable ``--model NAME [--checkpoint PATH | --pretrained]`` options of the tool subcommands."""

from __future__ import annotations

import argparse

import pytest

from hyenapixel.cli.model_args import ModelRequest, add_model_arguments


def _parse(argv: list[str], default=("hpx_former_s4",)) -> list[ModelRequest]:
    parser = argparse.ArgumentParser(exit_on_error=False)
    add_model_arguments(parser, default=default)
    return parser.parse_args(argv).models


def test_options_attach_to_the_preceding_model() -> None:
    got = _parse(["--model", "a", "--checkpoint", "x.pt", "--model", "b", "--pretrained", "--model", "c"])
    assert got == [ModelRequest("a", "x.pt"), ModelRequest("b", None, True), ModelRequest("c")]


def test_default_is_replaced_not_extended() -> None:
    assert _parse([]) == [ModelRequest("hpx_former_s4")]
    assert _parse(["--model", "b"]) == [ModelRequest("b")]
    assert _parse(["--checkpoint", "run/best.pt"]) == [ModelRequest(None, "run/best.pt")]


def test_pretrained_needs_a_model() -> None:
    with pytest.raises(SystemExit):
        _parse(["--pretrained"], default=())
