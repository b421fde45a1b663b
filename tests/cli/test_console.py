"""The ``hyenapixel`` console script as a user meets it, run as a real subprocess: help and usage errors without
importing torch, one-line errors with exit status 2 (no traceback), and ``import hyenapixel`` that is light yet
registers the models in timm."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from hyenapixel.cli.main import SUBCOMMANDS

_SCRIPT = Path(sys.executable).parent / "hyenapixel"
#: The installed console script (``.venv/bin/hyenapixel``); ``python -m hyenapixel`` where it is not installed.
COMMAND = [str(_SCRIPT)] if _SCRIPT.is_file() else [sys.executable, "-m", "hyenapixel"]

HEAVY = {"torch", "timm", "torchvision", "numpy"}


def run_cli(*argv: str, env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*COMMAND, *argv], capture_output=True, text=True, env={**os.environ, **(env or {})}, timeout=timeout
    )


def imported_modules(stderr: str) -> set[str]:
    """Top-level packages named in a ``-X importtime`` report."""
    names = set()
    for line in stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            names.add(line.rsplit("|", 1)[1].strip().split(".")[0])
    return names


def assert_one_line_error(proc: subprocess.CompletedProcess, *needles: str) -> str:
    """Exit status 2 and one error line (the last) that holds every needle; informational lines may precede it."""
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.strip().splitlines() if not line.startswith("import time:")]
    assert "Traceback" not in proc.stderr and [line for line in lines if "error" in line] == lines[-1:], lines
    for needle in needles:
        assert needle in lines[-1], lines
    return proc.stderr


@pytest.mark.parametrize(
    "argv",
    [["--help"], *[[name, "--help"] for name, _ in SUBCOMMANDS], ["train", "--epcohs", "3"], []],
    ids=lambda argv: " ".join(argv) or "bare",
)
def test_help_and_usage_errors_do_not_import_torch(argv: list[str]) -> None:
    proc = run_cli(*argv, env={"PYTHONPROFILEIMPORTTIME": "1"})
    modules = imported_modules(proc.stderr)
    assert "hyenapixel" in modules  # the report is there
    assert not modules & HEAVY, sorted(modules & HEAVY)
    assert proc.returncode == (2 if "--epcohs" in argv else 0)


def test_import_is_light_and_still_registers_the_models() -> None:
    code = (
        "import sys, hyenapixel\n"
        "light = not {'torch', 'timm'} & set(sys.modules)\n"
        "import timm\n"  # the models appear when timm is imported
        "m = timm.create_model('hpx_former_s4', num_classes=3)\n"
        "print(light, type(m).__name__, m.num_classes, hyenapixel.HyenaPixelMixer.__name__)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["True", "MetaFormer", "3", "HyenaPixelMixer"]
    # the other order, and an import of a lower layer first: the models are registered as well
    for first in ("import timm; import hyenapixel", "import hyenapixel.mixers, hyenapixel.data; import timm"):
        code = f"{first}\nprint(timm.is_model('hb_former_s18'), timm.is_model('hpx_former_s18_384'))"
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
        assert out.split() == ["True", "True"], first


def test_bare_command_prints_the_help() -> None:
    proc = run_cli()
    assert proc.returncode == 0 and proc.stderr == ""
    assert proc.stdout.startswith("usage: hyenapixel") and all(name in proc.stdout for name, _ in SUBCOMMANDS)


def test_misspelled_flag_shows_the_subcommands_usage_and_a_hint() -> None:
    proc = run_cli("train", "--epcohs", "3")
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert lines[0].startswith("usage: hyenapixel train") and len(lines) == 2
    assert (
        lines[1]
        == "hyenapixel train: error: unrecognized arguments: --epcohs 3; did you mean --epochs instead of --epcohs?"
    )


def test_unknown_model_is_named_before_anything_is_said_about_it(tmp_path: Path) -> None:
    err = assert_one_line_error(
        run_cli("train", "--model", "hpx_former_s99", "--output", str(tmp_path / "run")),
        "--model: unknown model 'hpx_former_s99'; close matches: hpx_former_s4",
    )
    assert "replaces" not in err
    assert not (tmp_path / "run").exists()


def test_pretrained_without_published_weights(tmp_path: Path) -> None:
    assert_one_line_error(
        run_cli("train", "--pretrained", "--output", str(tmp_path / "run")),
        "hpx_former_s4 has no published pretrained weights",
        "--initial-checkpoint FILE",
        "pretrained_cfg_overlay=dict(file=",
    )


@pytest.mark.parametrize(
    ("env", "reason"),
    [
        ({"HF_HUB_OFFLINE": "1"}, "not in the local hub cache and HF_HUB_OFFLINE is set"),
        # a hub that refuses connections, whatever the network of the machine running the test
        ({"HF_HUB_OFFLINE": "0", "HF_ENDPOINT": "http://127.0.0.1:9"}, "127.0.0.1 is unreachable"),
    ],
    ids=["HF_HUB_OFFLINE", "unreachable"],
)
def test_pretrained_without_network_fails_at_once(tmp_path: Path, env: dict[str, str], reason: str) -> None:
    env = {**env, "HF_HOME": str(tmp_path / "hf"), "HTTPS_PROXY": "", "https_proxy": ""}
    out = tmp_path / "run"
    proc = run_cli("train", "--model", "hpx_former_s18", "--pretrained", "--epochs", "1", "--output", str(out), env=env)
    assert_one_line_error(proc, "hpx_former_s18", reason, "--initial-checkpoint FILE", "pretrained_cfg_overlay")
    assert not out.exists()


def test_validate_rejects_a_file_that_is_not_a_checkpoint(tmp_path: Path) -> None:
    bad = tmp_path / "notes.pt"
    bad.write_text("these are notes, not weights\n")
    assert_one_line_error(
        run_cli("validate", "--checkpoint", str(bad), "--model", "hpx_former_s4"),
        f"{bad} is not a checkpoint that can be loaded safely",
    )


# ----------------------------------------------------------------------------------------------------------------
# The hub check itself (in-process)
# ----------------------------------------------------------------------------------------------------------------


def test_reachable_opens_a_real_connection() -> None:
    from hyenapixel.models.hub import reachable

    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        port = server.getsockname()[1]
        assert reachable(f"http://127.0.0.1:{port}", timeout=2.0)
    assert not reachable(f"http://127.0.0.1:{port}", timeout=2.0)  # closed now: refused


def test_cached_or_local_weights_need_no_network(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub

    from hyenapixel.models import WeightsError
    from hyenapixel.models.hub import check_pretrained_available

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(WeightsError, match="HF_HUB_OFFLINE"):
        check_pretrained_available("hpx_former_s18")
    check_pretrained_available("hpx_former_s18", {"file": "/some/local/file.bin"})  # an overlay file is local
    # the layout of the hub cache: refs/main names the snapshot that holds the file
    repo = tmp_path / "models--Spravil--hpx_former_s18.westai_in1k"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0123abcd")
    (repo / "snapshots" / "0123abcd").mkdir(parents=True)
    (repo / "snapshots" / "0123abcd" / "model.safetensors").write_bytes(b"weights")
    check_pretrained_available("hpx_former_s18")  # cached: fine offline


def test_options_before_the_command_are_explained() -> None:
    """``hyenapixel --epochs 2 train``: the error says that options go after the command, with the corrected form,
    instead of argparse's "invalid choice: '2'"; answered without importing torch."""
    proc = run_cli("--epochs", "2", "train", env={"PYTHONPROFILEIMPORTTIME": "1"})
    text = assert_one_line_error(proc, "--epochs: options go after the command", "hyenapixel train --epochs")
    assert "invalid choice" not in text and not imported_modules(proc.stderr) & HEAVY
    assert_one_line_error(run_cli("--lr", "1e-3"), "options go after the command (hyenapixel COMMAND --option ...)")


@pytest.mark.slow
def test_long_commands_write_line_progress_to_a_log(tmp_path: Path) -> None:
    """Not a terminal (a pipe, as in a log file): every long command writes plain progress lines, never tqdm's
    carriage-return bars; --progress none writes none."""
    pytest.importorskip("fvcore")
    pytest.importorskip("skimage")
    macs = run_cli("macs", "--model", "hpx_former_s4", "--img-size", "32", "64", "--output", str(tmp_path / "m"))
    assert macs.returncode == 0, macs.stderr
    assert "\r" not in macs.stderr and "macs [1/2]" in macs.stderr and "macs [2/2]" in macs.stderr
    erf = ("erf", "--model", "hpx_former_s4", "--img-size", "32", "--num-images", "2", "--batch-size", "1")
    logged = run_cli(*erf, "--progress", "log", "--output", str(tmp_path / "e"))
    assert logged.returncode == 0, logged.stderr
    assert "\r" not in logged.stderr and "ERF hpx_former_s4 [2/2]" in logged.stderr
    quiet = run_cli(*erf, "--progress", "none", "--output", str(tmp_path / "e2"))
    assert quiet.returncode == 0 and "[1/2]" not in quiet.stderr


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["validate"], "--checkpoint: required"),
        (["validate", "--checkpoint", "no_such/best.pt"], "--checkpoint: checkpoint not found: no_such/best.pt"),
        (["validate", "--pretrained", "--model", "hpx_former_s4", "--data", "no_such"], "--data: no_such"),
        (["train", "--data", "no_such"], "--data: no_such: data folder not found"),
        (["train", "--initial-checkpoint", "no_such.pt"], "--initial-checkpoint: checkpoint not found"),
        (["train", "--input-size", "16"], "--input-size: must be >= 32"),
        (["train", "--model", "hpx_formr_s4"], "--model: unknown model 'hpx_formr_s4'; close matches: hpx_former_s4"),
        (["validate", "--model", "convformr_s18", "--pretrained"], "close matches: convformer_s18"),
        (["erf", "--model", "hb_fromer_s18"], "--model: unknown model 'hb_fromer_s18'; close matches: hb_former_s18"),
        (["export", "--model", "resnet_19", "-o", "m.onnx"], "--model: unknown model 'resnet_19'"),
        (["dense-train", "--model", "hpx_former_s5"], "--model: unknown model 'hpx_former_s5'"),
        (
            ["ablate", "--model", "hpx_iso1_loca"],
            "--model: unknown model 'hpx_iso1_loca'; close matches: hpx_iso1_local",
        ),
        (["ablate", "--seeds", "-1"], "--seeds: seeds must be >= 0"),
    ],
    ids=lambda v: v if isinstance(v, str) else " ".join(v),
)
def test_missing_files_and_bad_values_answer_before_torch(argv: list[str], needle: str) -> None:
    """Everything that needs no torch is checked before torch is imported: on a busy machine these answer in a
    fraction of a second instead of the tens of seconds torch's import can take."""
    proc = run_cli(*argv, env={"PYTHONPROFILEIMPORTTIME": "1"})
    assert_one_line_error(proc, needle)
    assert not imported_modules(proc.stderr) & HEAVY, sorted(imported_modules(proc.stderr) & HEAVY)
