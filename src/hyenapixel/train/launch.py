"""Where this process sits in a ``torchrun`` launch (the paper trained on several GPUs), read from the
environment in this one place. Torch-free, so that the command line can ask before importing torch.
"""

from __future__ import annotations

import os
from typing import NamedTuple

__all__ = ["Launch", "torchrun_env"]


class Launch(NamedTuple):
    """``rank`` of ``world_size`` processes, ``local_rank`` on its node; one process without ``torchrun``."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def torchrun_env() -> Launch:
    """``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` as set by ``torchrun`` (defaults: a single process)."""
    env = os.environ
    return Launch(int(env.get("RANK", "0")), int(env.get("WORLD_SIZE", "1")), int(env.get("LOCAL_RANK", "0")))
