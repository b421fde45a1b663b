"""Samplers for mid-epoch resume and exact distributed evaluation; per-sample seeds for --deterministic."""

from __future__ import annotations

import random

import torch
from torch.utils.data import Dataset

from hyenapixel.data.loaders import ResumableDistributedSampler, SeededSamples, ShardSampler, make_loader


class _Noise(Dataset):
    def __len__(self) -> int:
        return 10

    def __getitem__(self, i: int) -> tuple[torch.Tensor, float]:
        return torch.rand(2), random.random()


def test_resumable_sampler_continues_the_same_permutation() -> None:
    data = list(range(23))
    for rank in range(2):
        s = ResumableDistributedSampler(data, 2, rank, seed=5)
        s.set_epoch(3)
        full = list(s)
        s.set_epoch(3)
        s.set_start(7)
        assert len(s) == len(full) - 7
        assert list(s) == full[7:]
        assert list(s) == full  # the start applies once


def test_shard_sampler_covers_every_sample_once() -> None:
    shards = [list(ShardSampler(11, 3, r)) for r in range(3)]
    assert sorted(sum(shards, [])) == list(range(11))


def test_seeded_samples_do_not_depend_on_order_or_global_state() -> None:
    ds = SeededSamples(_Noise(), seed=1)
    ds.set_epoch(2)
    a = [ds[i] for i in range(10)]
    torch.manual_seed(123)
    random.seed(9)
    b = [ds[i] for i in reversed(range(10))][::-1]
    assert all(torch.equal(x[0], y[0]) and x[1] == y[1] for x, y in zip(a, b))
    ds.set_epoch(3)
    assert not torch.equal(ds[0][0], a[0][0])  # new epoch, new augmentation
    state = torch.get_rng_state()
    ds[0]
    assert torch.equal(state, torch.get_rng_state())  # the caller's stream is untouched


def test_loader_does_not_consume_global_rng() -> None:
    loader = make_loader(
        list(range(8)), ShardSampler(8), batch_size=4, workers=0, drop_last=True, pin_memory=False, seed=0
    )
    state = torch.get_rng_state()
    list(loader)
    assert torch.equal(state, torch.get_rng_state())


class _WorkerSignals(Dataset):
    """Sample i: whether SIGTERM is ignored in the process that loads it, and that process's id."""

    def __len__(self) -> int:
        return 4

    def __getitem__(self, index: int) -> tuple[bool, int]:
        import os
        import signal

        return signal.getsignal(signal.SIGTERM) == signal.SIG_IGN, os.getpid()


def test_loader_workers_outlive_a_sigterm() -> None:
    """Slurm signals every process of a job; the workers ignore SIGTERM so that the run can save its step."""
    import os
    import signal

    loader = make_loader(
        _WorkerSignals(), ShardSampler(4), batch_size=2, workers=2, drop_last=False, pin_memory=False, seed=0
    )
    ignored, pids = (torch.cat(t) for t in zip(*loader))
    assert ignored.all() and os.getpid() not in pids.tolist()
    assert signal.getsignal(signal.SIGTERM) != signal.SIG_IGN  # the training process itself still reacts
