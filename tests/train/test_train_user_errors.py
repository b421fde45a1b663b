"""``hyenapixel train`` / ``validate`` with input a user gets wrong: a run's config.yaml passed back as a recipe
starts a new run, bad sizes and conflicting options are one-line errors before any file is written, a finished run
is not rewritten by a resume, and run checkpoints carry the normalisation of their data."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import yaml
from train_helpers import TINY_FLAGS

from hyenapixel.cli.main import main
from hyenapixel.train.config import ConfigError
from hyenapixel.train.recipes import load_recipe, resolve_train_config

SMALL = ["--train-samples", "64", "--val-samples", "32", "--batch-size", "32", "--warmup-epochs", "0"]


def _run(argv: list[str], capsys: pytest.CaptureFixture) -> tuple[int, str]:
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def _digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.md5(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "done"
    assert main(["train", *TINY_FLAGS, *SMALL, "--epochs", "2", "--progress", "none", "--output", str(out)]) == 0
    return out


def test_a_runs_config_as_recipe_starts_a_new_run(finished_run: Path) -> None:
    record = yaml.safe_load((finished_run / "config.yaml").read_text())
    record["run"].update(resume="auto", overwrite=True)  # as a run made with those flags records them
    recipe = finished_run.parent / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(record))
    values = load_recipe(str(recipe))
    assert not {"output", "resume", "overwrite"} & set(values)
    cfg = resolve_train_config(str(recipe))
    assert (cfg.run.output, cfg.run.resume, cfg.run.overwrite) == (None, None, False)
    assert cfg.model.dims == (8, 16, 24, 32) and cfg.sched.epochs == 2  # the settings themselves are kept


def test_resuming_a_finished_run_changes_nothing(finished_run: Path, capsys: pytest.CaptureFixture) -> None:
    before = _digests(finished_run)
    argv = ["train", *TINY_FLAGS, *SMALL, "--progress", "none", "--output", str(finished_run), "--resume", "auto"]
    code, text = _run([*argv, "--epochs", "2", "--val-samples", "16"], capsys)
    assert code == 0 and "has trained all 2 epochs already" in text
    assert _digests(finished_run) == before
    code, text = _run([*argv, "--epochs", "1"], capsys)
    assert code == 2 and "has trained 2 epochs already, more than --epochs 1" in text
    assert _digests(finished_run) == before


def test_run_checkpoints_carry_their_normalisation(finished_run: Path) -> None:
    from hyenapixel.data import BalanceDataset
    from hyenapixel.models import load_model

    data = BalanceDataset(4, image_size=32)
    for name in ("best.pt", "best.safetensors"):
        cfg = load_model(checkpoint=finished_run / name).pretrained_cfg
        assert cfg["mean"] == tuple(data.mean.flatten().tolist()) and cfg["std"] == tuple(data.std.flatten().tolist())
    assert load_model("hpx_former_s4").pretrained_cfg["mean"] == (0.485, 0.456, 0.406)  # other models: their own


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--input-size", "20"], "--input-size: must be >= 32"),
        (["--dims", "16", "32", "64"], "--model: hpx_former_s4 cannot be built with"),
        (["--overwrite", "--resume", "auto"], "--overwrite: conflicts with --resume"),
        (["--device", "cuda"], "--device: cuda requested but CUDA is not available"),
    ],
)
def test_bad_options_stop_before_any_file(
    tmp_path: Path, capsys: pytest.CaptureFixture, extra: list[str], message: str
) -> None:
    import torch

    if "cuda" in extra and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    out = tmp_path / "run"
    base = ["train", "--model", "hpx_former_s4", *SMALL, "--epochs", "1", "--output", str(out)]
    code, text = _run([*base, *extra], capsys)
    assert code == 2 and message in text and "Traceback" not in text
    assert not out.exists() or not any(out.iterdir())


def test_output_that_is_a_file_and_a_recipe_that_is_not_yaml(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    a_file = tmp_path / "weights.pt"
    a_file.write_bytes(b"\x80\x04binary")
    code, text = _run(["train", *SMALL, "--output", str(a_file)], capsys)
    assert code == 2 and "is a file; --output names the run folder" in text
    assert a_file.read_bytes() == b"\x80\x04binary"
    with pytest.raises(ConfigError, match="is not a YAML file of options"):
        load_recipe(str(a_file))
    code, text = _run(["train", *SMALL, "--output", str(a_file / "run")], capsys)  # below a file: cannot be created
    assert code == 2 and f"--output: cannot create the folder {a_file / 'run'}: {a_file} is a file" in text


def test_ensemble_of_runs_on_different_data_needs_data(
    finished_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    other = tmp_path / "other"
    argv = ["train", *TINY_FLAGS, *SMALL, "--epochs", "1", "--progress", "none", "--builtin", "pathfinder"]
    assert main([*argv, "--output", str(other)]) == 0
    capsys.readouterr()
    both = ["validate", "--checkpoint", str(finished_run / "best.pt"), "--checkpoint", str(other / "best.pt")]
    code, text = _run(both, capsys)
    assert code == 2 and "trained on different data" in text and "give --data" in text
    one = ["validate", "--checkpoint", str(finished_run / "best.pt")]
    code, text = _run([*one, "--output-json", str(tmp_path)], capsys)
    assert code == 2 and "is a folder" in text


def test_initial_checkpoint_of_another_model(finished_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    argv = ["train", "--model", "hb_former_s4", *SMALL, "--epochs", "1", "--output", str(tmp_path / "r")]
    code, text = _run([*argv, "--initial-checkpoint", str(finished_run / "best.pt")], capsys)
    assert code == 2 and "holds a hpx_former_s4 model, not hb_former_s4; pass --model hpx_former_s4" in text
    assert len(text) < 400
