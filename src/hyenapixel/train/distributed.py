"""torch.distributed set-up for ``torchrun`` (the paper trained on several GPUs with a global batch of 4096).

``torchrun`` sets ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` (read by :func:`hyenapixel.train.launch.torchrun_env`);
without them the run is a single process. NCCL is
used on GPUs and gloo on CPUs. Only rank 0 writes files and prints; metrics are summed over ranks.
"""

from __future__ import annotations

import datetime
import hashlib
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from hyenapixel.train.errors import ConfigError
from hyenapixel.train.launch import torchrun_env

__all__ = [
    "DistInfo",
    "all_reduce_sum",
    "any_rank",
    "assert_replicas_in_sync",
    "broadcast_object",
    "cleanup_distributed",
    "gather_objects",
    "resolve_device",
    "setup_distributed",
]


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits: ``rank`` of ``world_size``, ``local_rank`` on its node, and its device."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def resolve_device(device: str, local_rank: int = 0) -> torch.device:
    """``auto`` -> cuda (this process's GPU) if available, else cpu."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError("device", "cuda requested but CUDA is not available here; use --device cpu or auto")
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    return torch.device(device)


def setup_distributed(device: str = "auto", timeout_s: float = 1800.0) -> DistInfo:
    """Initialise the process group from the ``torchrun`` environment (or return a single-process info)."""
    rank, world_size, local_rank = torchrun_env()
    dev = resolve_device(device, local_rank)
    if world_size > 1 and not dist.is_initialized():
        backend = "nccl" if dev.type == "cuda" else "gloo"
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        dist.init_process_group(
            backend=backend,
            timeout=datetime.timedelta(seconds=timeout_s),
            **({"device_id": dev} if dev.type == "cuda" else {}),
        )
    return DistInfo(rank=rank, world_size=world_size, local_rank=local_rank, device=dev)


def cleanup_distributed() -> None:
    """Destroy the process group if one was created."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_sum(tensor: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Sum ``tensor`` over ranks in place (no-op for one process)."""
    if info.distributed:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def any_rank(flag: bool, info: DistInfo) -> bool:
    """True if ``flag`` is true on any rank (so that all ranks stop together)."""
    if not info.distributed:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=info.device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def broadcast_object(obj: Any, info: DistInfo) -> Any:
    """Rank 0's ``obj`` on every rank."""
    if not info.distributed:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0, device=info.device if info.device.type == "cuda" else None)
    return box[0]


def gather_objects(obj: Any, info: DistInfo) -> list[Any]:
    """Every rank's ``obj``, in rank order, on every rank (``[obj]`` for one process)."""
    if not info.distributed:
        return [obj]
    everyone: list[Any] = [None] * info.world_size
    dist.all_gather_object(everyone, obj)
    return everyone


def parameter_digest(model: nn.Module) -> str:
    """SHA-256 of all parameters and buffers (bitwise)."""
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def assert_replicas_in_sync(model: nn.Module, info: DistInfo, step: int) -> str:
    """Raise if the ranks' weights differ bitwise (debugging aid for DDP); return this rank's digest."""
    digest = parameter_digest(model)
    digests = gather_objects(digest, info)
    if len(set(digests)) != 1:
        raise RuntimeError(f"ranks hold different weights after step {step}: {digests}")
    return digest
