"""Bad image folders stop ``hyenapixel train`` before training with a message naming the path (exit code 2);
corrupt images stop it too, or are skipped and counted with --skip-corrupt."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hyenapixel.cli.main import main

TINY = ["--model", "hpx_former_s4", "--dims", "8", "16", "24", "32", "--kernel-sizes", "15", "7", "3", "1"]
FAST = [
    "--input-size",
    "32",
    "--batch-size",
    "4",
    "--epochs",
    "1",
    "--warmup-epochs",
    "0",
    "--workers",
    "0",
    "--progress",
    "none",
    "--threads",
    "1",
]


def _image(path: Path, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(path)


def make_folder(root: Path, classes=("cat", "dog"), per_class: int = 4, splits=("train", "val")) -> Path:
    for split in splits:
        for c, name in enumerate(classes):
            for i in range(per_class):
                _image(root / split / name / f"{i}.png", hash((split, c, i)) % 2**32)
    return root


def _train(tmp_path: Path, data: Path, *extra: str) -> int:
    return main(["train", *TINY, *FAST, "--data", str(data), "--output", str(tmp_path / "run"), *extra])


def _assert_clean_error(capsys: pytest.CaptureFixture, *needles: str) -> None:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in err, err


@pytest.mark.parametrize("missing", ["train", "val"])
def test_missing_split(tmp_path: Path, capsys, missing: str) -> None:
    data = make_folder(tmp_path / "data", splits=tuple(s for s in ("train", "val") if s != missing))
    assert _train(tmp_path, data) == 2
    _assert_clean_error(capsys, "data error", str(data / missing))
    assert not (tmp_path / "run" / "last.pt").exists()


def test_empty_class_folder(tmp_path: Path, capsys) -> None:
    data = make_folder(tmp_path / "data")
    (data / "train" / "empty").mkdir()
    (data / "val" / "empty").mkdir()
    assert _train(tmp_path, data) == 2
    _assert_clean_error(capsys, "data error", "empty")


def test_mismatched_class_sets(tmp_path: Path, capsys) -> None:
    data = make_folder(tmp_path / "data")
    _image(data / "val" / "bird" / "0.png", 1)
    assert _train(tmp_path, data) == 2
    _assert_clean_error(capsys, "data error", "bird")


@pytest.mark.parametrize("workers", ["0", "2"])
def test_corrupt_image_stops_with_its_path(tmp_path: Path, capsys, workers: str) -> None:
    data = make_folder(tmp_path / "data")
    bad = data / "train" / "cat" / "broken.png"
    bad.write_bytes(b"this is not a png")
    assert _train(tmp_path, data, "--workers", workers) == 2  # also when raised in a DataLoader worker
    _assert_clean_error(capsys, "data error", f"{bad}: cannot read image")


@pytest.mark.slow
def test_skip_corrupt_trains_and_counts(tmp_path: Path, capsys) -> None:
    data = make_folder(tmp_path / "data")
    (data / "train" / "cat" / "broken.png").write_bytes(b"garbage")
    (data / "val" / "dog" / "broken.jpg").write_bytes(b"")
    assert _train(tmp_path, data, "--skip-corrupt", "--workers", "2") == 0
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["corrupt_files_skipped"] == 2
    assert summary["num_classes"] == 2 and summary["chance_top1"] == 50.0
    err = capsys.readouterr().err
    assert "skipped 2 corrupt image file(s)" in err and str(data / "train" / "cat" / "broken.png") in err


@pytest.mark.slow
def test_validate_on_a_folder(tmp_path: Path) -> None:
    data = make_folder(tmp_path / "data")
    assert _train(tmp_path, data) == 0
    report = tmp_path / "val.json"
    assert (
        main(
            [
                "validate",
                "--checkpoint",
                str(tmp_path / "run" / "best.pt"),
                "--data",
                str(data),
                "--workers",
                "0",
                "--crop-search",
                "--output-json",
                str(report),
            ]
        )
        == 0
    )
    result = json.loads(report.read_text())
    assert result["count"] == 8 and len(result["results"]) == 5
    # without --data: the folder the checkpoint was trained on
    assert (
        main(
            [
                "validate",
                "--checkpoint",
                str(tmp_path / "run" / "best.pt"),
                "--workers",
                "0",
                "--output-json",
                str(report),
            ]
        )
        == 0
    )
    assert json.loads(report.read_text())["dataset"] == str(data)


@pytest.mark.slow
def test_validate_needs_only_the_val_split(tmp_path: Path, capsys) -> None:
    data = make_folder(tmp_path / "data")
    assert _train(tmp_path, data) == 0
    val_only = make_folder(tmp_path / "val_only", splits=("val",))
    assert (
        main(["validate", "--checkpoint", str(tmp_path / "run" / "last.pt"), "--data", str(val_only), "--workers", "0"])
        == 0
    )
    assert "top-1" in capsys.readouterr().out
    assert main(["validate", "--checkpoint", str(tmp_path / "run" / "last.pt"), "--data", str(tmp_path)]) == 2
    _assert_clean_error(capsys, "data error", "missing 'val' split folder")


@pytest.mark.slow
def test_paper_recipes_run_on_a_folder(tmp_path: Path) -> None:
    """in1k (RandAugment, random erasing, Mixup/CutMix, label smoothing, accumulation) and ft384-style EMA."""
    data = make_folder(tmp_path / "data")
    short = ["--epochs", "1", "--warmup-epochs", "0", "--cooldown-epochs", "0", "--global-batch", "8"]
    assert _train(tmp_path, data, "--recipe", "in1k", *short) == 0
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["global_batch"] == 8 and summary["lr"] == pytest.approx(4e-3 * 8 / 4096)
    start = str(tmp_path / "run" / "last.pt")
    argv = [*TINY, *FAST, "--recipe", "ft384", *short, "--data", str(data), "--initial-checkpoint", start]
    assert main(["train", *argv, "--output", str(tmp_path / "ft")]) == 0
    assert json.loads((tmp_path / "ft" / "summary.json").read_text())["evaluated"] == "ema"


def test_worker_error_leaves_no_worker_behind(tmp_path: Path) -> None:
    """The DataLoader workers ignore SIGTERM (a scheduler's signal must not kill them mid-step), so a worker that
    outlives the failed run makes the process wait for it forever at exit (a pytest run hung so): the loop that
    raised must shut its workers down."""
    import multiprocessing

    data = make_folder(tmp_path / "data")
    (data / "train" / "cat" / "broken.png").write_bytes(b"this is not a png")
    args = [*TINY, *FAST[:-6], "--workers", "2", "--progress", "none", "--threads", "1"]
    assert main(["train", "--data", str(data), *args, "--output", str(tmp_path / "r")]) == 2
    assert multiprocessing.active_children() == []
