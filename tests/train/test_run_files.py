"""A run's folder and files: never overwritten by accident, named after model and data, self-describing weights,
readable curves, a run-wide ETA, and the exact command that continues a stopped run."""

from __future__ import annotations

import csv
import io
import json
import shlex
import shutil
from pathlib import Path

import pytest
import torch
from train_helpers import TINY_FLAGS

from hyenapixel import progress as progress_module
from hyenapixel.cli.main import build_parser, main
from hyenapixel.cli.train import resume_command
from hyenapixel.models import load_model, read_checkpoint
from hyenapixel.progress import Progress
from hyenapixel.train.recipes import resolve_train_config
from hyenapixel.train.rundir import default_output

SMALL = [*TINY_FLAGS, "--train-samples", "32", "--val-samples", "16", "--batch-size", "16", "--epochs", "1"]
SMALL += ["--warmup-epochs", "0", "--threads", "1", "--progress", "none"]


def _train(out: Path, *extra: str) -> int:
    return main(["train", *SMALL, "--output", str(out), *extra])


def test_a_folder_with_a_run_is_never_overwritten(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "run"
    assert _train(out) == 0
    first = (out / "summary.json").read_text()
    capsys.readouterr()
    assert _train(out, "--seed", "1") == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        f"hyenapixel train: error: --output: {out} already holds a run; continue it with --resume auto, or choose "
        "another --output (or pass --overwrite to replace it)"
    )
    assert (out / "summary.json").read_text() == first
    # an unfinished run (only a checkpoint) counts too
    partial = tmp_path / "partial"
    partial.mkdir()
    shutil.copy(out / "last.pt", partial / "last.pt")
    assert _train(partial) == 2

    # --resume auto continues it: one more epoch on top of the finished one
    assert _train(out, "--epochs", "2", "--resume", "auto") == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["epochs"] == 2 and summary["steps"] == 2 * 2  # 32 images / batch 16 per epoch
    assert [r["epoch"] for r in csv.DictReader((out / "metrics.csv").open())] == ["1", "2"]


def test_overwrite_replaces_every_run_file(tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert _train(out, "--epochs", "2", "--checkpoint-every", "1") == 0
    notes = out / "notes.txt"
    notes.write_text("mine")
    assert _train(out, "--overwrite") == 0
    assert not list(out.glob("epoch_*.pt"))  # old checkpoints would otherwise win --resume auto
    assert json.loads((out / "summary.json").read_text())["epochs"] == 1
    assert [r["epoch"] for r in csv.DictReader((out / "metrics.csv").open())] == ["1"]
    assert (out / "train.log").read_text().count("summary") == 1  # the old log is gone too
    assert notes.read_text() == "mine"  # files that are not a run's stay


def test_default_folder_names_model_and_data_and_never_collides(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    cfg = resolve_train_config(None, {})
    first = default_output(cfg)
    assert first.parent == Path("runs") and first.name.endswith("-hpx_former_s4-balance")
    first.mkdir(parents=True)
    second = default_output(cfg)
    assert second.name == first.name + "-2"
    easy = resolve_train_config(None, {"builtin": "pathfinder", "difficulty": "easy"})
    assert default_output(easy).name.endswith("-hpx_former_s4-pathfinder-easy")
    folder = resolve_train_config(None, {"data": str(tmp_path / "imagenet")})
    assert default_output(folder).name.endswith("-hpx_former_s4-imagenet")


def test_best_safetensors_describes_itself(tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert _train(out) == 0
    ck = read_checkpoint(out / "best.safetensors")
    assert ck.spec == {"name": "hpx_former_s4", "kwargs": {"dims": [8, 16, 24, 32], "kernel_sizes": [15, 7, 3, 1]}}
    assert ck.meta["num_classes"] == 2 and ck.meta["in_chans"] == 3 and ck.meta["input_size"] == [3, 32, 32]
    assert ck.meta["config"]["data"]["builtin"] == "balance"
    model = load_model(checkpoint=out / "best.safetensors").eval()  # no name, no dims: the file says
    state = torch.load(out / "best.pt", weights_only=True)["model"]
    assert model.dims == [8, 16, 24, 32] and all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
    assert model.pretrained_cfg["input_size"] == (3, 32, 32)


def test_curves_have_a_title_chance_line_and_readable_axes_for_one_epoch(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    import matplotlib
    import matplotlib.pyplot as plt
    from matplotlib import image

    from hyenapixel.train.plots import draw_training_curves, plot_training_curves

    backend, figures = matplotlib.get_backend(), plt.get_fignums()
    row = {"epoch": "1", "train_loss": "0.6", "val_loss": "0.55", "val_top1": "91.1", "val_top5": "100.0"}
    fig = draw_training_curves([row], title="hpx_former_s4 on balance-default (built-in)", chance=50.0)
    assert fig.get_suptitle() == "hpx_former_s4 on balance-default (built-in)"
    loss_ax, acc_ax = fig.axes
    assert [ax.get_xlabel() for ax in fig.axes] == ["epoch", "epoch"]
    assert loss_ax.get_xlim() == acc_ax.get_xlim() == (0.5, 1.5)  # a one-epoch run is a dot in the middle
    labels = [t.get_text() for t in acc_ax.get_legend().get_texts()]
    assert labels == ["top-1", "chance (50%)"]
    low, high = acc_ax.get_ylim()
    assert low <= 45.0 and 91.1 < high <= 100.5  # chance and the result both in view
    # drawn off-screen: matplotlib's backend and pyplot's figures are the caller's, untouched
    assert matplotlib.get_backend() == backend and plt.get_fignums() == figures

    csv_path = tmp_path / "metrics.csv"
    csv_path.write_text("epoch,train_loss,val_loss,val_top1\n1,0.6,0.55,91.1\n")
    pixels = image.imread(plot_training_curves(csv_path, tmp_path / "curves.png", title="t", chance=50.0))
    assert pixels.shape[:2] == (396, 990)  # 9 x 3.6 inches at 110 dpi
    assert plt.get_fignums() == figures


def test_bar_shows_the_eta_of_the_whole_run(monkeypatch: pytest.MonkeyPatch) -> None:
    """4 of 10 steps of this epoch in 8 s, 30 more steps in later epochs: 2 s per step x 36 steps = 72 s."""
    monkeypatch.setattr(progress_module.sys, "stderr", io.StringIO())
    now = [0.0]
    p = Progress(10, "epoch 2/4", mode="bar", run_remaining_steps=30, clock=lambda: now[0])
    for _ in range(4):
        now[0] += 2.0
        p.update(16, loss=0.5)
    assert p.shown["run eta"] == "0:01:12"
    p.close()
    plain = Progress(10, "crop 0.875", mode="bar", clock=lambda: now[0])  # not part of a run: tqdm's own ETA only
    plain.update(16)
    assert "run eta" not in plain.shown
    plain.close()


def test_resume_command_replaces_output_resume_and_overwrite() -> None:
    """The options as argparse parsed them (abbreviations and ``--flag=value`` included), minus the placement."""
    argv = ["train", "--epochs", "3", "--out", "old", "--resume=last.pt", "--overwrite", "--data", "my dir"]
    argv += ["--dims", "8", "16", "--no-ema", "--recipe", "in1k"]
    command = resume_command(build_parser().parse_args(argv), "runs/new run")
    expected = " train --recipe in1k --epochs 3 --data 'my dir' --dims 8 16 --no-ema --output 'runs/new run' --resume"
    assert command.endswith(expected + " auto"), command
    assert shlex.split(command)[-9:-4] == ["my dir", "--dims", "8", "16", "--no-ema"]
    assert resume_command(build_parser().parse_args(["train"]), "x", distributed=True).startswith(
        "torchrun <same options> -m hyenapixel train --output x"
    )


def test_sigterm_during_evaluation_stops_after_the_epochs_checkpoint(tmp_path: Path, monkeypatch) -> None:
    """A real SIGTERM to this process while the first epoch is evaluated: the epoch ends, is saved, the run stops."""
    import os
    import signal

    from hyenapixel.models.weights import load_training_state
    from hyenapixel.train import fit as fit_module

    real_evaluate = fit_module.evaluate

    def evaluate_while_terminated(*args: object, **kwargs: object) -> object:
        os.kill(os.getpid(), signal.SIGTERM)
        return real_evaluate(*args, **kwargs)

    out = tmp_path / "run"
    monkeypatch.setattr(fit_module, "evaluate", evaluate_while_terminated)
    assert _train(out, "--epochs", "2") == 143
    state = load_training_state(out / "last.pt")
    assert (state["epoch"], state["batch_in_epoch"], state["step"]) == (1, 0, 2)
    assert not (out / "summary.json").exists()
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # the run's handler is gone again
    monkeypatch.undo()
    assert _train(out, "--epochs", "2", "--resume", "auto") == 0
    assert [r["epoch"] for r in csv.DictReader((out / "metrics.csv").open())] == ["1", "2"]


def test_a_run_leaves_the_process_as_it_found_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--threads and --deterministic hold for the run only: thread count, deterministic algorithms, cuDNN flags, the
    cuBLAS workspace variable, the SIGTERM handler, matplotlib's backend and pyplot's figures are restored."""
    pytest.importorskip("matplotlib")
    import os
    import signal

    import matplotlib
    import matplotlib.pyplot as plt

    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    session_threads = torch.get_num_threads()
    torch.set_num_threads(2 if session_threads != 2 else 3)

    def process() -> tuple:
        return (
            torch.get_num_threads(),
            torch.are_deterministic_algorithms_enabled(),
            torch.backends.cudnn.benchmark,
            torch.backends.cudnn.deterministic,
            os.environ.get("CUBLAS_WORKSPACE_CONFIG"),
            signal.getsignal(signal.SIGTERM),
            matplotlib.get_backend(),
            plt.get_fignums(),
        )

    try:
        before = process()
        assert _train(tmp_path / "run", "--deterministic") == 0
        assert (tmp_path / "run" / "curves.png").is_file()
        assert process() == before
    finally:
        torch.set_num_threads(session_threads)
