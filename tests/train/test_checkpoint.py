"""Crash-safe checkpoints: atomic writes, weights_only loading through the models layer's reader, random states,
newest-checkpoint lookup, self-describing safetensors."""

from __future__ import annotations

import os
import random

import numpy as np
import pytest
import torch
from torch import nn
from train_helpers import make_tiny_model

from hyenapixel.models import WeightsError, load_initial_weights, read_checkpoint
from hyenapixel.models.weights import load_training_state, save_safetensors, save_training_state
from hyenapixel.paths import atomic_write
from hyenapixel.train.state import capture_rng_state, find_resume_checkpoint, restore_rng_state


def test_atomic_write_keeps_old_file_on_failure(tmp_path) -> None:
    path = tmp_path / "last.pt"
    atomic_write(path, lambda f: f.write(b"old"))

    def broken(f) -> None:
        f.write(b"half")
        raise RuntimeError("killed while writing")

    with pytest.raises(RuntimeError):
        atomic_write(path, broken)
    assert path.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["last.pt"]  # no temp file left behind


def test_training_state_round_trip_is_weights_only(tmp_path) -> None:
    model = nn.Linear(3, 2)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.randn(4, 3)).sum().backward()
    opt.step()
    state = {
        "model": model.state_dict(),
        "optimizer": opt.state_dict(),
        "epoch": 3,
        "batch_in_epoch": 0,
        "step": 7,
        "rng": [capture_rng_state()],
        "config": {"run": {"seed": 0}},
        "ema": None,
    }
    save_training_state(tmp_path / "last.pt", state)
    loaded = load_training_state(tmp_path / "last.pt")  # uses weights_only=True
    assert loaded["step"] == 7 and loaded["config"] == {"run": {"seed": 0}}
    opt2 = torch.optim.AdamW(nn.Linear(3, 2).parameters(), lr=1e-3)
    opt2.load_state_dict(loaded["optimizer"])
    assert torch.equal(opt2.state_dict()["state"][0]["exp_avg"], opt.state_dict()["state"][0]["exp_avg"])
    ck = read_checkpoint(tmp_path / "last.pt")  # the models layer reads training states too
    assert ck.kind == "train-state" and torch.equal(ck.state_dict["weight"], model.weight)
    with pytest.raises(WeightsError, match="no 'ema' weights"):
        read_checkpoint(tmp_path / "last.pt", use_ema=True)


def test_not_a_training_state_is_a_weights_error(tmp_path) -> None:
    (tmp_path / "garbage.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError, match="garbage.pt is not a checkpoint that can be loaded safely"):
        load_training_state(tmp_path / "garbage.pt")
    torch.save({"weight": torch.zeros(2)}, tmp_path / "plain.pt")
    with pytest.raises(WeightsError, match="plain.pt is not a training state.*--initial-checkpoint"):
        load_training_state(tmp_path / "plain.pt")
    with pytest.raises(WeightsError, match="checkpoint not found"):
        load_training_state(tmp_path / "missing.pt")


def test_initial_weights_keep_a_new_classifier(tmp_path) -> None:
    """--initial-checkpoint: every weight but a classifier of another shape comes from the file."""
    source = make_tiny_model(num_classes=5)
    save_training_state(tmp_path / "last.pt", {"model": source.state_dict(), "ema": None})
    target = make_tiny_model(num_classes=2)
    fresh_head = target.head.fc2.weight.detach().clone()
    load_initial_weights(target, tmp_path / "last.pt")
    for name, value in target.state_dict().items():
        if name.startswith("head.fc2."):
            continue
        assert torch.equal(value, source.state_dict()[name]), name
    assert torch.equal(target.head.fc2.weight, fresh_head)
    with pytest.raises(WeightsError, match="does not fit|does not match"):
        load_initial_weights(nn.Linear(3, 2), tmp_path / "last.pt")


def test_rng_state_round_trip() -> None:
    state = capture_rng_state()
    a = (random.random(), float(np.random.rand()), torch.rand(3))
    restore_rng_state(state)
    b = (random.random(), float(np.random.rand()), torch.rand(3))
    assert a[0] == b[0] and a[1] == b[1] and torch.equal(a[2], b[2])


def test_find_resume_checkpoint_picks_highest_step(tmp_path) -> None:
    assert find_resume_checkpoint(tmp_path) is None
    save_training_state(tmp_path / "best.pt", {"step": 4})
    save_training_state(tmp_path / "last.pt", {"step": 9})
    save_training_state(tmp_path / "epoch_0001.pt", {"step": 2})
    (tmp_path / "garbage.pt").write_bytes(b"not a checkpoint")
    torch.save({"weights": torch.zeros(1)}, tmp_path / "other.pt")
    assert find_resume_checkpoint(tmp_path) == tmp_path / "last.pt"


def test_resume_auto_names_a_truncated_last_checkpoint(tmp_path, caplog) -> None:
    """A last.pt cut short (a full disk, a killed copy): --resume auto continues from the newest readable state and
    says which file it skipped."""
    save_training_state(tmp_path / "best.pt", {"step": 4})
    save_training_state(tmp_path / "last.pt", {"step": 9})
    data = (tmp_path / "last.pt").read_bytes()
    (tmp_path / "last.pt").write_bytes(data[: len(data) // 2])
    with caplog.at_level("WARNING", logger="hyenapixel"):
        assert find_resume_checkpoint(tmp_path) == tmp_path / "best.pt"
    (warning,) = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warning.startswith(f"--resume auto: skipping {tmp_path / 'last.pt'}, which cannot be read")


def test_safetensors_export_reads_back_with_its_metadata(tmp_path) -> None:
    model = nn.Linear(3, 2)
    spec = {"name": "hpx_former_s4", "kwargs": {"dims": [8, 16, 24, 32]}}
    meta = {"model_spec": '{"name": "hpx_former_s4", "kwargs": {"dims": [8, 16, 24, 32]}}', "num_classes": "2"}
    save_safetensors(tmp_path / "w.safetensors", model.state_dict(), meta)
    ck = read_checkpoint(tmp_path / "w.safetensors")
    assert ck.kind == "safetensors" and torch.equal(ck.state_dict["weight"], model.weight)
    assert ck.spec == spec and ck.meta["num_classes"] == 2
