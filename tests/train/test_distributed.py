"""``torchrun`` with 2 CPU processes (gloo): ranks hold identical weights after every step (checked in the run by
``--check-sync-every 1``, with gradient accumulation and ``no_sync``), and only rank 0 writes files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from train_helpers import TINY_FLAGS

from hyenapixel.models.weights import load_training_state

pytestmark = [pytest.mark.slow, pytest.mark.distributed]


def test_torchrun_two_processes(tmp_path: Path) -> None:
    out = tmp_path / "ddp"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "hyenapixel",
        "train",
        *TINY_FLAGS,
        "--epochs",
        "2",
        "--warmup-epochs",
        "0",
        "--train-samples",
        "128",
        "--val-samples",
        "41",
        "--batch-size",
        "8",
        "--global-batch",
        "32",
        "--drop-path",
        "0.1",
        "--check-sync-every",
        "1",
        "--device",
        "cpu",
        "--progress",
        "log",
        "--output",
        str(out),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stderr[-4000:]

    files = sorted(p.name for p in out.iterdir())
    assert files == [
        "best.pt",
        "best.safetensors",
        "config.yaml",
        "curves.png",
        "last.pt",
        "metrics.csv",
        "summary.json",
        "train.log",
    ]
    assert list(tmp_path.iterdir()) == [out]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["global_batch"] == 32
    assert summary["steps"] == 2 * 4  # 2 epochs of 128 images / 32 per step
    assert summary["val_count"] == 41  # exact metrics over unevenly sharded validation data
    state = load_training_state(out / "last.pt")
    assert len(state["rng"]) == 2  # both ranks' random states, for exact resume
    assert state["accum_steps"] == 2
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())
    assert proc.stderr.count("epoch 2/2: train loss") == 1  # only rank 0 reports


def test_replica_check_detects_divergence(monkeypatch: pytest.MonkeyPatch) -> None:
    """The check behind --check-sync-every compares every rank's bitwise digest (here rank 1 is faked)."""
    from hyenapixel.train import distributed

    model = torch.nn.Linear(2, 2)
    info = distributed.DistInfo(rank=0, world_size=2)

    def gather(out: list, obj: str, other: str) -> None:
        out[:] = [obj, other]

    digest = distributed.parameter_digest(model)
    monkeypatch.setattr(distributed.dist, "all_gather_object", lambda out, obj: gather(out, obj, digest))
    assert distributed.assert_replicas_in_sync(model, info, step=3) == digest
    monkeypatch.setattr(distributed.dist, "all_gather_object", lambda out, obj: gather(out, obj, "0" * 64))
    with pytest.raises(RuntimeError, match="ranks hold different weights after step 3"):
        distributed.assert_replicas_in_sync(model, info, step=3)
    with torch.no_grad():
        model.weight[0, 0] += 1e-7
    assert distributed.parameter_digest(model) != digest  # bitwise
