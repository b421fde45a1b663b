"""Samplers, dataset wrappers and data loaders for resumable, distributed training and evaluation (paper Section
4.1 recipes).

* :class:`ResumableDistributedSampler` is torch's ``DistributedSampler`` (one shard per rank, a new
  permutation per epoch from ``seed + epoch``) that can start in the middle of an epoch, so that a resumed run
  sees exactly the batches it had not seen yet.
* :class:`ShardSampler` splits the validation set over ranks without padding, so summed metrics are exact.
* :class:`SeededSamples` (``--deterministic``) draws every sample's augmentation from a seed of
  ``(seed, epoch, index)``: the augmented images do not depend on workers, batch order or interruptions.
* Loaders get their own ``torch.Generator`` so that creating one never advances the global random state
  (which drives dropout and stochastic depth).
"""

from __future__ import annotations

import math
import random
import signal
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler

__all__ = [
    "CorruptFileReporter",
    "ResumableDistributedSampler",
    "SeededSamples",
    "ShardSampler",
    "batches_per_epoch",
    "make_loader",
    "skipped_files",
]


class ResumableDistributedSampler(DistributedSampler):
    """``DistributedSampler`` that skips the first ``start_index`` indices of this rank's shard once.

    Call :meth:`set_epoch` at the start of every epoch and :meth:`set_start` after it to resume mid-epoch.
    """

    def __init__(self, dataset: Dataset, num_replicas: int, rank: int, *, shuffle: bool = True, seed: int = 0):
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed, drop_last=False)
        self.start_index = 0

    def set_start(self, start_index: int) -> None:
        """Skip this many indices of the shard in the next iteration (then reset to 0)."""
        self.start_index = max(0, int(start_index))

    def __iter__(self) -> Iterator[int]:
        indices = list(super().__iter__())[self.start_index :]
        self.start_index = 0
        return iter(indices)

    def __len__(self) -> int:
        return self.num_samples - self.start_index


class ShardSampler(Sampler[int]):
    """Indices ``rank, rank + world, ...`` in order: every sample exactly once over all ranks, no padding."""

    def __init__(self, length: int, num_replicas: int = 1, rank: int = 0) -> None:
        self.indices = list(range(rank, length, num_replicas))

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """A 63-bit seed that depends only on ``(seed, epoch, index)``."""
    hi, lo = np.random.SeedSequence([seed, epoch, index]).generate_state(2, np.uint32)
    return (int(hi) << 31) ^ int(lo)


class SeededSamples(Dataset):
    """Wrap a dataset so that sample ``i`` of epoch ``e`` is loaded under random seeds from ``(seed, e, i)``.

    Python, numpy and torch global random states are seeded before and restored after each sample, so the
    caller's random streams (dropout, stochastic depth, Mixup) are not touched.
    """

    def __init__(self, dataset: Dataset, seed: int) -> None:
        self.dataset = dataset
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getattr__(self, name: str) -> Any:
        if name == "dataset":  # not yet set (unpickling)
            raise AttributeError(name)
        return getattr(self.dataset, name)

    def __getitem__(self, index: int) -> Any:
        s = sample_seed(self.seed, self.epoch, index)
        py_state, np_state = random.getstate(), np.random.get_state()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(s)
            random.seed(s)
            np.random.seed(s % 2**32)
            try:
                return self.dataset[index]
            finally:
                random.setstate(py_state)
                np.random.set_state(np_state)


class CorruptFileReporter(Dataset):
    """Forward the unreadable files a dataset skips (``dataset.corrupt_files``) from any worker to the caller.

    ``ImageFolderDataset(skip_corrupt=True)`` records skipped files per process; DataLoader workers are separate
    processes, so the wrapper puts every newly recorded path on a multiprocessing queue that the training
    process drains with :meth:`collect`.
    """

    def __init__(self, dataset: Dataset) -> None:
        import torch.multiprocessing as mp

        self.dataset = dataset
        self.queue = mp.get_context().SimpleQueue()
        self.found: set[str] = set()

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getattr__(self, name: str) -> Any:
        if name == "dataset":
            raise AttributeError(name)
        return getattr(self.dataset, name)

    def __getitem__(self, index: int) -> Any:
        corrupt = getattr(self.dataset, "corrupt_files", None)
        before = len(corrupt) if corrupt is not None else 0
        item = self.dataset[index]
        if corrupt is not None and len(corrupt) > before:
            for path in corrupt[before:]:
                self.queue.put(str(path))
        return item

    def collect(self) -> set[str]:
        """All skipped files reported so far (by any process)."""
        while not self.queue.empty():
            self.found.add(self.queue.get())
        return self.found


def skipped_files(*datasets: Dataset) -> set[str]:
    """The unreadable files that the :class:`CorruptFileReporter` among ``datasets`` (or wrapped in
    :class:`SeededSamples`) have reported so far, by any worker."""
    found: set[str] = set()
    for ds in datasets:
        while isinstance(ds, SeededSamples):
            ds = ds.dataset
        if isinstance(ds, CorruptFileReporter):
            found |= ds.collect()
    return found


def _init_worker(worker_id: int) -> None:
    """Seed a worker's python and numpy from its torch seed, and let it ignore SIGTERM.

    A scheduler (Slurm) signals every process of a job: the workers must outlive the SIGTERM so that the training
    process can finish its step and save (they stop with the loader, or when the training process is gone).
    """
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def make_loader(
    dataset: Dataset,
    sampler: Sampler[int],
    *,
    batch_size: int,
    workers: int,
    drop_last: bool,
    pin_memory: bool,
    seed: int,
) -> DataLoader:
    """A DataLoader with its own generator (seeded by ``seed``) and seeded workers that ignore SIGTERM."""
    generator = torch.Generator()
    generator.manual_seed(seed)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=workers,
        drop_last=drop_last,
        pin_memory=pin_memory,
        generator=generator,
        worker_init_fn=_init_worker if workers > 0 else None,
        persistent_workers=False,
    )


def batches_per_epoch(num_samples: int, world_size: int, batch_size: int) -> int:
    """Full micro-batches per rank and epoch (the loader drops the incomplete last one)."""
    return math.ceil(num_samples / world_size) // batch_size
