"""The ``hyenapixel`` command: subcommand registry, --help, option precedence and nonsense values."""

from __future__ import annotations

import importlib
import re

import pytest
import yaml

from hyenapixel.cli.args import format_default
from hyenapixel.cli.main import SUBCOMMANDS, build_parser, main
from hyenapixel.configio import config_fields
from hyenapixel.train.config import TrainConfig, ValidateConfig
from hyenapixel.train.errors import flag_name


def _help(capsys: pytest.CaptureFixture, *argv: str) -> str:
    with pytest.raises(SystemExit) as exc:
        main([*argv, "--help"])
    assert exc.value.code == 0
    return capsys.readouterr().out


def test_top_level_help_lists_subcommands(capsys: pytest.CaptureFixture) -> None:
    text = _help(capsys)
    for name, _ in SUBCOMMANDS:
        assert name in text


def test_every_subcommand_module_has_the_interface() -> None:
    for _, module_name in SUBCOMMANDS:
        module = importlib.import_module(module_name)
        assert isinstance(module.HELP, str) and callable(module.add_arguments) and callable(module.run)
    assert {"train", "validate"} <= {name for name, _ in SUBCOMMANDS}


@pytest.mark.parametrize(("command", "cls"), [("train", TrainConfig), ("validate", ValidateConfig)])
def test_help_documents_every_option_with_its_default(capsys, command: str, cls: type) -> None:
    text = re.sub(r"\s+", " ", _help(capsys, command))
    for name, (_, f, _) in config_fields(cls).items():
        flag = flag_name(name)
        assert flag in text, f"{flag} missing from --help"
        # the help text of the option is followed by its default
        first_words = " ".join(f.metadata["help"].split()[:3])
        pattern = re.escape(first_words) + r".*?\(default: " + re.escape(format_default(f.default))
        assert re.search(pattern, text), f"{flag}: default not documented"
    if command == "train":
        assert "--recipe" in text and "in1k-b36" in text and "--print-config" in text


def test_parser_builds_once_per_call() -> None:
    parser = build_parser()
    args = parser.parse_args(["train", "--epochs", "3", "--amp", "--dims", "8", "16", "24", "32"])
    assert args.epochs == "3" and args.amp is True and args.dims == ["8", "16", "24", "32"]
    assert not hasattr(args, "lr")  # options not given stay out, so they do not override a recipe


def test_print_config_precedence(capsys: pytest.CaptureFixture) -> None:
    assert main(["train", "--recipe", "in1k", "--epochs", "160", "--lr", "1e-3", "--print-config"]) == 0
    cfg = yaml.safe_load(capsys.readouterr().out)
    assert cfg["sched"]["epochs"] == 160 and cfg["optim"]["lr"] == 1e-3  # flags
    assert cfg["aug"]["mixup"] == 0.8 and cfg["recipe"] == "in1k"  # recipe
    assert cfg["run"]["seed"] == 0  # default


def test_none_values_and_repeatable_options(capsys: pytest.CaptureFixture) -> None:
    assert main(["train", "--dims", "none", "--kernel-sizes", "none", "--print-config"]) == 0
    cfg = yaml.safe_load(capsys.readouterr().out)
    assert cfg["model"]["dims"] is None and cfg["model"]["kernel_sizes"] is None
    parser = build_parser()
    args = parser.parse_args(["validate", "--model", "a", "--checkpoint", "x", "--model", "b", "--checkpoint", "y"])
    assert args.model == ["a", "b"] and args.checkpoint == ["x", "y"]


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["train", "--epochs", "-3"], "--epochs: must be >= 1"),
        (["train", "--batch-size", "0"], "--batch-size: must be >= 1"),
        (["train", "--recipe", "in22k"], "--recipe: unknown recipe 'in22k'; choose from in1k, in1k-b36, ft384, ft512"),
        (["train", "--model", "hpx_fromer_s4"], "--model: unknown model 'hpx_fromer_s4'; close matches: hpx_former_s4"),
        (["train", "--lr", "fast"], "--lr: invalid value"),
        (["train", "--resume", "/nonexistent/last.pt"], "--resume: checkpoint not found"),
        (["validate", "--model", "hpx_former_s4"], "--checkpoint: required"),
    ],
)
def test_nonsense_values_exit_2_naming_the_flag(capsys, argv: list[str], expected: str) -> None:
    assert main([*argv, "--output", "/tmp/unused"] if argv[0] == "train" else argv) == 2
    err = capsys.readouterr().err
    assert expected in err
    assert "Traceback" not in err


def test_choice_errors_list_the_choices(capsys: pytest.CaptureFixture) -> None:
    assert main(["train", "--sched", "linear"]) == 2
    assert "--sched: invalid choice 'linear'; choose from cosine, constant" in capsys.readouterr().err


@pytest.mark.parametrize(
    "command", ["erf", "macs", "explain", "kernel-size", "export", "bench", "train", "dense-train"]
)
def test_one_word_for_the_image_size(command: str) -> None:
    """Every command takes --input-size (the word the docs use) and the other spellings as aliases."""
    parser = build_parser()
    required = ["--output", "model.onnx"] if command == "export" else []
    values = set()
    for flag in ("--input-size", "--img-size", "--image-size"):
        args = parser.parse_args([command, flag, "96", *required])
        value = getattr(args, "img_size", None) if hasattr(args, "img_size") else getattr(args, "input_size", None)
        values.add(str(value))
    assert len(values) == 1 and "96" in values.pop()
    assert "--input-size" in parser.parse_args([command, *required])._parser.format_help()
