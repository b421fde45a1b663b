"""Crash-safe checkpoints of a training run (resumable runs for the recipes of paper Section 4.1).

* Every file is written atomically: a temporary file in the same directory, ``fsync``, ``os.replace``, then an
  ``fsync`` of the directory. A crash at any moment leaves either the old or the new file, never a torn one.
* A training state holds plain tensors, numbers, strings, lists and dicts only, so it loads with
  ``torch.load(..., weights_only=True)``; nothing is unpickled. The config is stored as a plain dict.
* It restores everything a resumed run needs: model, optimizer, schedule, grad scaler, EMA, epoch, step, the
  position in the epoch, and the python / numpy / torch / cuda random states.
* Exported weights (``best.safetensors``) are safetensors whose metadata names the model (``model_spec``,
  ``num_classes``, ``in_chans``, ``input_size``, ``config`` as JSON strings), so every file a run writes is read
  back by :func:`hyenapixel.models.read_checkpoint` / :func:`hyenapixel.models.load_model` with no extra options.
* Reading is the models layer's (:func:`hyenapixel.models.read_weights`): one reader, one error type
  (:class:`hyenapixel.models.WeightsError`) for every weights file.
"""

from __future__ import annotations

import logging
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hyenapixel.errors import error_lines
from hyenapixel.models.weights import TRAIN_STATE_FORMAT, WeightsError, is_training_state, read_weights
from hyenapixel.paths import atomic_write

log = logging.getLogger("hyenapixel")

__all__ = [
    "capture_rng_state",
    "find_resume_checkpoint",
    "load_training_state",
    "restore_rng_state",
    "save_safetensors",
    "save_training_state",
]


# ----------------------------------------------------------------------------------------------------------------
# Random states as plain data
# ----------------------------------------------------------------------------------------------------------------


def capture_rng_state() -> dict[str, Any]:
    """Python, numpy, torch and (if initialised) cuda random states, as weights_only-safe plain data."""
    py_version, py_state, py_gauss = random.getstate()
    np_kind, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    state: dict[str, Any] = {
        "python": [py_version, torch.tensor(py_state, dtype=torch.int64), py_gauss],
        "numpy": [np_kind, torch.from_numpy(np_keys.astype(np.int64)), int(np_pos), int(np_has_gauss), float(np_gauss)],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng_state`."""
    py_version, py_state, py_gauss = state["python"]
    random.setstate((int(py_version), tuple(int(v) for v in py_state.tolist()), py_gauss))
    np_kind, np_keys, np_pos, np_has_gauss, np_gauss = state["numpy"]
    np.random.set_state((np_kind, np_keys.numpy().astype(np.uint32), np_pos, np_has_gauss, np_gauss))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        cuda_states = state["cuda"]
        if len(cuda_states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda_states)


# ----------------------------------------------------------------------------------------------------------------
# Training state
# ----------------------------------------------------------------------------------------------------------------


def _cpu(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {k: _cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_cpu(v) for v in obj)
    return obj


def save_training_state(path: str | os.PathLike, state: dict[str, Any]) -> Path:
    """Atomically ``torch.save`` a training state (plain data only; tensors are moved to CPU)."""
    state = {"format": TRAIN_STATE_FORMAT, **_cpu(state)}
    return atomic_write(path, lambda f: torch.save(state, f))


def load_training_state(path: str | os.PathLike) -> dict[str, Any]:
    """Load a training state safely (``weights_only=True``).

    Raises:
        WeightsError: the file is missing or unreadable, or is a weights file rather than a training state.
    """
    state = read_weights(path)
    if not is_training_state(state):
        raise WeightsError(
            f"{path} is not a training state of a hyenapixel run (last.pt, best.pt, epoch_N.pt); it cannot be "
            "resumed. To start from its weights use --initial-checkpoint"
        )
    return state


def find_resume_checkpoint(output_dir: str | os.PathLike) -> Path | None:
    """The newest training state in a run directory (by the step stored inside, then mtime), or None.

    Candidates are only peeked at (memory-mapped), not read in full. Unreadable files (a ``last.pt`` cut short by a
    full disk or a killed copy) are no candidates; each one is named in a warning, so that continuing from an older
    checkpoint is never silent.
    """
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        return None
    best: tuple[int, float, Path] | None = None
    for path in output_dir.glob("*.pt"):
        try:
            state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except Exception as exc:  # unreadable: not a candidate, but said
            log.warning("--resume auto: skipping %s, which cannot be read (%s)", path, error_lines(exc, limit=120))
            continue
        if not is_training_state(state):
            continue
        key = (int(state.get("step", 0)), path.stat().st_mtime, path)
        if best is None or key[:2] > best[:2]:
            best = key
    return best[2] if best else None


def save_safetensors(path: str | os.PathLike, state_dict: dict[str, torch.Tensor], metadata: dict[str, str]) -> Path:
    """Atomically write weights as safetensors (shared storage is cloned apart)."""
    from safetensors.torch import save

    tensors: dict[str, torch.Tensor] = {}
    seen: set[int] = set()
    for key, value in state_dict.items():
        t = value.detach().cpu().contiguous()
        ptr = t.untyped_storage().data_ptr()
        if ptr in seen:
            t = t.clone()
        seen.add(t.untyped_storage().data_ptr())
        tensors[key] = t
    data = save(tensors, metadata=metadata)
    return atomic_write(path, lambda f: f.write(data))
