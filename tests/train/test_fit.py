"""End-to-end training and validation through the CLI on CPU (tiny model, built-in data), EMA, accumulation,
and stopping on a non-finite loss with the last checkpoint intact."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
import yaml
from train_helpers import TINY_FLAGS

from hyenapixel.cli.main import main
from hyenapixel.models.weights import load_training_state

pytestmark = pytest.mark.slow

SMALL = ["--train-samples", "64", "--val-samples", "32", "--batch-size", "16", "--progress", "log", "--threads", "1"]


def _summary(out: Path) -> dict:
    return json.loads((out / "summary.json").read_text())


def test_train_then_validate_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "run"
    argv = ["train", *TINY_FLAGS, *SMALL, "--epochs", "2", "--checkpoint-every", "1", "--output", str(out)]
    threads = torch.get_num_threads()
    assert main(argv) == 0
    assert torch.get_num_threads() == threads  # process-wide settings are restored after the run
    printed = capsys.readouterr()
    assert "summary" in printed.out and "val top-1" in printed.out
    # a short banner opens the run (the full config is in config.yaml), then the first epoch's progress
    opening = printed.err.split("epoch 1/2")[0].strip().splitlines()
    assert [line.split()[0] for line in opening] == ["model", "data", "batching", "lr", "output"], opening
    assert "dims 8 16 24 32" in opening[0] and str(out) in opening[4]

    files = {p.name for p in out.iterdir()}
    assert {
        "config.yaml",
        "train.log",
        "metrics.csv",
        "last.pt",
        "best.pt",
        "best.safetensors",
        "summary.json",
        "epoch_0001.pt",
        "epoch_0002.pt",
    } <= files
    assert not [f for f in files if f.endswith(".tmp")]
    summary = _summary(out)
    for key in ("model", "dataset", "epochs", "val_top1", "val_top5", "wall_time_s"):
        assert key in summary
    assert summary["epochs"] == 2 and summary["chance_top1"] == 50.0
    # two classes: every image is in the top five, so top-5 is not reported (not a trivial 100)
    assert summary["val_top5"] is None and "top-5 100" not in printed.err and "top-5 n/a" in printed.out
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    # rounded values, no EMA columns without --ema; the last row is the summary's result
    assert "ema_top1" not in rows[0] and float(rows[-1]["val_top1"]) == round(summary["val_top1"], 3)
    assert [r["val_top5"] for r in rows] == ["", ""]
    assert all(len(r["train_loss"].split(".")[1]) <= 5 and r["lr"] == f"{float(r['lr']):.6g}" for r in rows)
    # train.log ends with the summary block that the terminal shows
    log_text = (out / "train.log").read_text()
    assert log_text.rstrip().endswith(printed.out.strip().splitlines()[-1])
    assert "val top-1" in log_text.split("summary")[-1]
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["model"]["dims"] == [8, 16, 24, 32] and config["resolved"]["accum_steps"] == 1
    state = load_training_state(out / "last.pt")
    assert state["epoch"] == 2 and state["step"] == 8 and state["config"]["sched"]["epochs"] == 2

    # validate the run's files on the built-in validation split (model and data come from the files themselves)
    report = tmp_path / "val.json"
    assert main(["validate", "--checkpoint", str(out / "last.pt"), "--output-json", str(report)]) == 0
    result = json.loads(report.read_text())
    assert result["top1"] == pytest.approx(summary["val_top1"])
    assert result["count"] == 32 and result["top5"] is None
    assert main(["validate", "--checkpoint", str(out / "best.safetensors"), "--output-json", str(report)]) == 0
    assert json.loads(report.read_text())["top1"] == pytest.approx(summary["best_top1"])
    # evaluation in bfloat16 autocast, as training offers: at most two of the 32 predictions may flip
    bf16 = ["--amp", "--amp-dtype", "bfloat16", "--device", "cpu", "--output-json", str(report)]
    assert main(["validate", "--checkpoint", str(out / "last.pt"), *bf16]) == 0
    assert abs(json.loads(report.read_text())["top1"] - summary["val_top1"]) <= 2 * 100 / 32

    # a two-model ensemble (softmax average); the generated data has no crop to search
    assert (
        main(
            [
                "validate",
                "--checkpoint",
                str(out / "epoch_0001.pt"),
                str(out / "last.pt"),
                "--crop-search",
                "--crop-step",
                "0.1",
                "--output-json",
                str(report),
            ]
        )
        == 0
    )
    result = json.loads(report.read_text())
    assert [r["crop_pct"] for r in result["results"]] == [None]
    assert len(result["members"]) == 2 and len(result["results"][0]["members"]) == 2
    assert result["results"][0]["members"][1]["top1"] == pytest.approx(summary["val_top1"])
    assert "top-1" in capsys.readouterr().out


def test_default_job_reduced(tmp_path: Path) -> None:
    """`hyenapixel train` with no options, reduced to one short epoch: the default model on the built-in data."""
    out = tmp_path / "default"
    assert (
        main(
            [
                "train",
                "--epochs",
                "1",
                "--warmup-epochs",
                "0",
                "--train-samples",
                "64",
                "--val-samples",
                "32",
                "--threads",
                "1",
                "--output",
                str(out),
            ]
        )
        == 0
    )
    summary = _summary(out)
    assert summary["model"] == "hpx_former_s4" and summary["dataset"] == "balance-default (built-in)"
    assert summary["curves"] == str(out / "curves.png")
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert summary["model_spec"]["kwargs"]["dims"] == [16, 32, 64, 128]
    assert summary["val_count"] == 32 and (summary["val_top1"] / (100 / 32)).is_integer()  # counted over 32 images


@pytest.mark.slow
def test_default_job_reaches_the_target(tmp_path: Path) -> None:
    """The default job on half its data and epochs still clears the 80 % bar of the built-in task (chance: 50 %)."""
    out = tmp_path / "target"
    assert (
        main(
            [
                "train",
                "--train-samples",
                "4000",
                "--val-samples",
                "1000",
                "--epochs",
                "3",
                "--progress",
                "log",
                "--output",
                str(out),
            ]
        )
        == 0
    )
    summary = _summary(out)
    assert summary["dataset"] == "balance-default (built-in)" and summary["chance_top1"] == 50.0
    assert summary["val_top1"] >= 80.0, summary


def test_builtin_pathfinder_and_difficulty_errors(tmp_path: Path, capsys) -> None:
    """--builtin picks the generated dataset; a difficulty that the dataset lacks is named with its presets."""
    out = tmp_path / "pf"
    assert (
        main(
            [
                "train",
                *TINY_FLAGS,
                *SMALL,
                "--epochs",
                "1",
                "--warmup-epochs",
                "0",
                "--builtin",
                "pathfinder",
                "--difficulty",
                "easy",
                "--output",
                str(out),
            ]
        )
        == 0
    )
    summary = _summary(out)
    assert summary["dataset"] == "pathfinder-easy (built-in)"
    assert main(["train", *TINY_FLAGS, *SMALL, "--difficulty", "extreme", "--output", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "--difficulty" in err and "easy, default, hard" in err
    assert not (tmp_path / "x").exists()


def test_ema_and_gradient_accumulation(tmp_path: Path) -> None:
    out = tmp_path / "ema"
    argv = [
        "train",
        *TINY_FLAGS,
        *SMALL,
        "--epochs",
        "1",
        "--warmup-epochs",
        "0",
        "--ema",
        "--ema-decay",
        "0.5",
        "--global-batch",
        "32",
        "--output",
        str(out),
    ]
    assert main(argv) == 0
    summary = _summary(out)
    assert summary["evaluated"] == "ema" and summary["global_batch"] == 32 and summary["steps"] == 2
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["resolved"]["accum_steps"] == 2
    state = load_training_state(out / "last.pt")
    assert state["ema"] is not None
    assert any(not torch.equal(state["ema"][k], state["model"][k]) for k in state["model"])
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    assert rows[0]["ema_top1"] != ""


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(tmp_path: Path, capsys) -> None:
    out = tmp_path / "nan"
    base = ["train", *TINY_FLAGS, *SMALL, "--warmup-epochs", "0", "--output", str(out)]
    assert main([*base, "--epochs", "1"]) == 0
    good = (out / "last.pt").read_bytes()
    best = (out / "best.pt").read_bytes()
    capsys.readouterr()
    # continue with an absurd learning rate: the weights explode and the loss becomes non-finite
    assert main([*base, "--epochs", "3", "--lr", "1e30", "--resume", "auto"]) == 1
    err = capsys.readouterr().err
    assert "training stopped: loss is" in err and ("nan" in err or "inf" in err)
    assert "Traceback" not in err
    assert (out / "last.pt").read_bytes() == good  # the last good checkpoint is intact
    assert (out / "best.pt").read_bytes() == best
