"""Weight files: read any checkpoint safely, build a model from it, and write the files of a run (paper Section 4.1
checkpoints).

One reader for every layer above the models (training, evaluation, analysis, dense prediction, export):

* :func:`read_checkpoint` opens a training state of ours (``last.pt``, ``best.pt``), exported weights of ours
  (``best.safetensors``, whose metadata holds the model spec), an official checkpoint (``.bin`` / ``.pth`` /
  ``.safetensors``) or any plain state dict. Nothing is unpickled (``weights_only=True`` or safetensors); a
  missing, corrupt or unsafe file is a :class:`WeightsError` naming the file and the problem.
* :func:`load_model` builds the network a checkpoint belongs to (``timm.create_model`` with the stored spec:
  custom ``dims``, ``kernel_sizes`` ...) and loads the weights through timm's pretrained path, so
  ``features_only=True`` and a new ``num_classes`` work as with hub weights.
* :func:`save_training_state` and :func:`save_safetensors` write a run's files atomically (a temporary file in the
  same folder, ``fsync``, ``os.replace``): a crash leaves the old file or the new one, never a torn one. A training
  state holds plain tensors, numbers, strings, lists and dicts only; exported safetensors carry JSON metadata that
  names the model (``model_spec``, ``num_classes``, ``in_chans``, ``input_size``, ``config``), so that
  :func:`read_checkpoint` reads every file a run writes with no extra options.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from hyenapixel.errors import UserError, error_lines, shorten
from hyenapixel.modelnames import close_model_matches, unknown_model_problem
from hyenapixel.paths import atomic_write

__all__ = [
    "TRAIN_STATE_FORMAT",
    "Checkpoint",
    "WeightsError",
    "check_model_name",
    "is_training_state",
    "load_model",
    "load_training_state",
    "read_checkpoint",
    "read_weights",
    "save_safetensors",
    "save_training_state",
]

#: Marker stored in every training state written by ``hyenapixel.train``.
TRAIN_STATE_FORMAT = "hyenapixel-train-state-v1"

_WEIGHT_KEYS = ("model", "ema", "optimizer", "scaler", "rng")


class WeightsError(UserError, ValueError):
    """A checkpoint that is missing, unreadable, unsafe, or does not fit the model it is loaded into."""


def read_weights(path: str | os.PathLike) -> Any:
    """The raw content of a weights file: safetensors, or a torch file read with ``weights_only=True``.

    Raises:
        WeightsError: the file does not exist, is not a checkpoint, is corrupt or holds pickled code.
    """
    path = Path(path)
    if path.is_dir():
        raise WeightsError(f"{path} is a folder; give a checkpoint file in it (a run's best.pt, for example)")
    if not path.is_file():
        raise WeightsError(f"checkpoint not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as exc:  # corrupt header, truncated file
            raise WeightsError(f"{path} is not a readable safetensors file ({error_lines(exc)})") from None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle errors, zip errors, unsafe globals
        raise WeightsError(
            f"{path} is not a checkpoint that can be loaded safely: only tensor files are accepted "
            f"(weights_only=True / safetensors); it is corrupt, not a checkpoint, or holds pickled objects "
            f"({type(exc).__name__}: {_torch_load_reason(exc)})"
        ) from None


def _torch_load_reason(exc: BaseException) -> str:
    """torch's reason, without its advice to load with ``weights_only=False`` (which would unpickle code)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    detail = [line for line in lines if line.startswith(("WeightsUnpickler error", "Unsupported"))]
    if detail:
        return shorten(detail[0])
    if lines and lines[0].startswith("Weights only load failed"):
        return "not a tensor file written by torch.save"
    return error_lines(exc)


def _safetensors_metadata(path: Path) -> dict[str, str]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return dict(f.metadata() or {})
    except Exception:  # read_weights has already reported unreadable files
        return {}


@dataclass
class Checkpoint:
    """What a weights file holds: the state dict, and where known the model it belongs to.

    Attributes:
        path: the file.
        state_dict: parameter and buffer tensors (a training state's ``model`` or ``ema`` weights).
        spec: ``{"name": ..., "kwargs": {...}}`` for files written by a run of ours, else None.
        meta: everything else stored beside the weights (``config``, ``class_names``, ``num_classes``, ...).
        kind: ``"train-state"``, ``"safetensors"`` or ``"plain"`` (official or other state dicts).
    """

    path: Path
    state_dict: dict[str, torch.Tensor]
    spec: dict[str, Any] | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    kind: str = "plain"

    @property
    def model_name(self) -> str | None:
        return (self.spec or {}).get("name")


def is_training_state(obj: Any) -> bool:
    """Whether a loaded object is a training state of ours."""
    return isinstance(obj, dict) and obj.get("format") == TRAIN_STATE_FORMAT


def read_checkpoint(path: str | os.PathLike, *, use_ema: bool = False) -> Checkpoint:
    """Read any supported weights file (see the module docstring) into a :class:`Checkpoint`.

    Args:
        use_ema: take a training state's EMA weights instead of the model's.
    """
    path = Path(path)
    obj = read_weights(path)
    if is_training_state(obj):
        key = "ema" if use_ema else "model"
        if obj.get(key) is None:
            hint = " (the run was trained without --ema)" if use_ema else ""
            raise WeightsError(f"{path} holds no {key!r} weights{hint}")
        meta = {k: v for k, v in obj.items() if k not in _WEIGHT_KEYS}
        return Checkpoint(path, dict(obj[key]), obj.get("model_spec"), meta, "train-state")
    if use_ema:
        raise WeightsError(f"EMA weights need a training checkpoint (last.pt/best.pt); {path} is a plain weights file")
    if not isinstance(obj, Mapping):
        raise WeightsError(f"{path} holds a {type(obj).__name__}, not a state dict")
    if path.suffix == ".safetensors":
        raw = _safetensors_metadata(path)
        meta: dict[str, Any] = {}
        for k, v in raw.items():
            try:
                meta[k] = json.loads(v)
            except (TypeError, ValueError):
                meta[k] = v
        spec = meta.pop("model_spec", None)
        return Checkpoint(path, dict(obj), spec if isinstance(spec, dict) else None, meta, "safetensors")
    from hyenapixel.models.convert import unwrap_state_dict

    return Checkpoint(path, dict(unwrap_state_dict(obj)), None, {}, "plain")  # {"state_dict": ...} and the like


# ----------------------------------------------------------------------------------------------------------------
# Writing (atomically: a crash leaves the old file or the new one, never a torn one)
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


def check_model_name(name: str) -> None:
    """Raise a :class:`UserError` naming close matches if timm does not know ``name``."""
    import timm

    if timm.is_model(name):
        return
    problem = unknown_model_problem(name)  # the words of the command line's check before timm is imported
    if problem is None:
        close = close_model_matches(name, timm.list_models())
        hint = f"close matches: {', '.join(close)}" if close else "see timm.list_models()"
        problem = f"unknown model {name!r}; {hint}"
    raise UserError(problem)


def _classifier_outputs(name: str, state_dict: Mapping[str, torch.Tensor]) -> int | None:
    """Number of classes of the classifier in ``state_dict`` (by the model's ``pretrained_cfg['classifier']``)."""
    import timm

    cfg = timm.models.get_pretrained_cfg(name)
    classifiers = (getattr(cfg, "classifier", None) if cfg else None) or "head.fc"
    for classifier in [classifiers] if isinstance(classifiers, str) else list(classifiers):
        for key in (f"{classifier}.weight", f"{classifier}.fc2.weight", "head.fc2.weight", "head.fc.weight"):
            w = state_dict.get(key)
            if isinstance(w, torch.Tensor) and w.ndim >= 1:
                return int(w.shape[0])
    return None


#: Normalisation of the built-in generated datasets, for run files that trained on them but do not record it.
_BUILTIN_MEAN_STD = (0.5, 0.5)


def _run_normalisation(meta: dict[str, Any], in_chans: int) -> dict[str, Any]:
    """The ``pretrained_cfg`` entries (mean, std, crop_pct, interpolation) of the data a run of ours trained on,
    so that timm's data config and the analysis tools prepare images as the run did; ``{}`` for other files."""
    config = meta.get("config")
    if not isinstance(config, dict) or not isinstance(config.get("resolved"), dict):
        return {}
    resolved = config["resolved"]
    out = {k: resolved[k] for k in ("crop_pct", "interpolation") if resolved.get(k) is not None}
    mean, std = resolved.get("mean"), resolved.get("std")
    if mean is None and (config.get("data") or {}).get("data") is None:  # built-in data, older files
        mean, std = ((v,) * in_chans for v in _BUILTIN_MEAN_STD)
    if mean is not None and std is not None:
        out.update(mean=tuple(float(v) for v in mean), std=tuple(float(v) for v in std))
    return out


def load_model(
    name: str | None = None,
    *,
    checkpoint: str | os.PathLike | Checkpoint | None = None,
    pretrained: bool = False,
    use_ema: bool = False,
    **kwargs: Any,
) -> nn.Module:
    """Build a timm model, from the hub, from a local checkpoint, or with random weights.

    Args:
        name: a timm model name; may be None when ``checkpoint`` is a file of ours (its spec names the model).
        checkpoint: a training state, exported safetensors or official/plain weights file. Files of ours rebuild
            the exact architecture they were trained with (custom dims, depths, kernel sizes, input channels) and
            class count. Official HyenaPixel keys are converted and filters of another kernel size resampled.
            A :class:`Checkpoint` from :func:`read_checkpoint` is used as it is (the file is not read again;
            ``use_ema`` was applied when it was read).
        pretrained: load the hub weights (``timm.create_model(..., pretrained=True)``); not with ``checkpoint``.
        use_ema: a training state's EMA weights.
        kwargs: passed to ``timm.create_model`` (``features_only=True``, ``num_classes=N`` for a new head, ...).

    Raises:
        UserError: unknown model name; WeightsError: unreadable checkpoint, a checkpoint of another variant, or
        weights that do not fit.
    """
    import timm

    import hyenapixel.models  # noqa: F401  (registers the HyenaPixel models in timm)

    if checkpoint is not None and pretrained:
        raise UserError("give either a checkpoint or pretrained=True, not both")
    if checkpoint is None:
        if name is None:
            raise UserError("load_model needs a model name or a checkpoint")
        check_model_name(name)
        if pretrained:
            from hyenapixel.models.hub import check_pretrained_available

            check_pretrained_available(name, kwargs.get("pretrained_cfg_overlay"))
        return timm.create_model(name, pretrained=pretrained, **kwargs)

    ck = checkpoint if isinstance(checkpoint, Checkpoint) else read_checkpoint(checkpoint, use_ema=use_ema)
    if ck.spec is not None:
        if name is not None and name != ck.model_name:
            raise WeightsError(f"{ck.path} holds a {ck.model_name} model, not {name}; pass --model {ck.model_name}")
        name = ck.model_name
        arch = {k: tuple(v) if isinstance(v, list) else v for k, v in (ck.spec.get("kwargs") or {}).items()}
        if ck.meta.get("in_chans") is not None:
            arch["in_chans"] = int(ck.meta["in_chans"])
        kwargs = {**arch, **kwargs}
    if name is None:
        raise WeightsError(f"{ck.path} does not say which model it belongs to; give the model name (--model NAME)")
    check_model_name(name)
    overlay: dict[str, Any] = {"state_dict": ck.state_dict}
    classes = ck.meta.get("num_classes") or _classifier_outputs(name, ck.state_dict)
    if classes is not None:
        overlay["num_classes"] = int(classes)
        kwargs.setdefault("num_classes", int(classes))
    size = ck.meta.get("input_size")
    if size is not None:  # (C, H, W) as timm writes it, or the side of a square image
        size = [kwargs.get("in_chans", 3), size, size] if isinstance(size, int) else size
        overlay["input_size"] = tuple(int(v) for v in size)
    overlay.update(_run_normalisation(ck.meta, int(kwargs.get("in_chans", 3))))
    try:
        return timm.create_model(name, pretrained=True, pretrained_cfg_overlay=overlay, **kwargs)
    except (RuntimeError, ValueError, KeyError) as exc:
        if isinstance(exc, UserError):
            raise
        raise WeightsError(f"{ck.path} does not fit {name}: {error_lines(exc, count=4, limit=600)}") from None
