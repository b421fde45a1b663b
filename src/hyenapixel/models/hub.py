"""Hub weights (paper Section 4.1 checkpoints on the Hugging Face hub): find out quickly whether they can be had.

``timm.create_model(name, pretrained=True)`` retries a download for about a minute when there is no network and
then fails with a long traceback; a model without published weights fails with a ``RuntimeError``. Before that
happens, :func:`check_pretrained_available` answers in at most a few seconds: the weights are local (a file, a
state dict, or already in the hub / torch cache), or the hub can be reached (a TCP connect with a short
timeout), or a :class:`~hyenapixel.models.weights.WeightsError` says what is missing and how to use a local file.
``HF_HUB_OFFLINE=1`` is respected: then only cached weights count.

:func:`save_hub_folder` goes the other way: it writes a checkpoint of ours as a timm hub folder (``config.json``
beside ``model.safetensors``), which ``timm.create_model("local-dir:FOLDER", pretrained=True)`` rebuilds and which
``timm.models.push_to_hf_hub`` publishes.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from hyenapixel.errors import UserError
from hyenapixel.models.weights import Checkpoint, WeightsError, load_model, read_checkpoint

__all__ = [
    "CONNECT_TIMEOUT_S",
    "HUB_FOLDER_FILES",
    "check_pretrained_available",
    "hub_offline",
    "reachable",
    "save_hub_folder",
]

#: The files of a timm hub folder that :func:`save_hub_folder` writes.
HUB_FOLDER_FILES = ("config.json", "model.safetensors")

#: Seconds a TCP connect to the hub (or proxy) may take before the hub counts as unreachable.
CONNECT_TIMEOUT_S = 2.0

_HUB_FILES = ("model.safetensors", "pytorch_model.bin", "open_clip_pytorch_model.bin")


def hub_offline() -> bool:
    """Whether ``HF_HUB_OFFLINE`` asks for no network access."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in ("1", "ON", "YES", "TRUE")


def reachable(url: str, timeout: float = CONNECT_TIMEOUT_S) -> bool:
    """Whether a TCP connection to ``url``'s host (or to the HTTPS proxy, if one is set) opens within ``timeout``."""
    proxy = os.environ.get("HTTPS_PROXY") or os.environ.get("https_proxy")
    target = urlparse(proxy if proxy and urlparse(url).scheme == "https" else url)
    if not target.hostname:
        return False
    port = target.port or (443 if target.scheme == "https" else 80)
    try:
        with socket.create_connection((target.hostname, port), timeout=timeout):
            return True
    except OSError:
        return False


def _local_message(name: str) -> str:
    return (
        "Use a local weights file instead: --checkpoint FILE (validate and the tools) or --initial-checkpoint FILE "
        f"(train); in Python timm.create_model({name!r}, pretrained=True, "
        "pretrained_cfg_overlay=dict(file='FILE'))"
    )


def _hub_cached(repo: str, filename: str | None) -> bool:
    from huggingface_hub import try_to_load_from_cache

    repo_id, _, revision = repo.partition("@")
    for candidate in [filename] if filename else _HUB_FILES:
        found = try_to_load_from_cache(repo_id, candidate, revision=revision or None)
        if isinstance(found, str):
            return True
    return False


def check_pretrained_available(name: str, overlay: Mapping[str, Any] | None = None) -> None:
    """Raise :class:`WeightsError` within a few seconds if ``pretrained=True`` cannot get weights for ``name``.

    Args:
        name: a timm model name (optionally with a pretrained tag, ``convformer_s18.sail_in1k``).
        overlay: the ``pretrained_cfg_overlay`` passed to timm, if any (``file=...`` makes the weights local).
    """
    import timm

    cfg = timm.models.get_pretrained_cfg(name, allow_unregistered=True)
    values: dict[str, Any] = dict(cfg.to_dict() if cfg is not None else {})
    values.update(overlay or {})
    if values.get("state_dict") is not None or values.get("file"):
        return
    hf_hub_id, url = values.get("hf_hub_id"), values.get("url")
    if not hf_hub_id and not url:
        raise WeightsError(f"{name} has no published pretrained weights. {_local_message(name)}")
    if hf_hub_id and _hub_cached(hf_hub_id, values.get("hf_hub_filename")):
        return
    if url and not hf_hub_id:
        from timm.models._hub import get_cache_dir

        if (Path(get_cache_dir()) / os.path.basename(urlparse(url).path)).is_file():
            return
    if hf_hub_id and hub_offline():
        raise WeightsError(
            f"{name}: its pretrained weights ({hf_hub_id}) are not in the local hub cache and HF_HUB_OFFLINE is set. "
            f"{_local_message(name)}"
        )
    server = os.environ.get("HF_ENDPOINT", "https://huggingface.co") if hf_hub_id else url
    if not reachable(server):
        raise WeightsError(
            f"{name}: cannot download its pretrained weights, {urlparse(server).hostname} is unreachable (no "
            f"network?; checked with a {CONNECT_TIMEOUT_S:g} s connect). {_local_message(name)}"
        )


def save_hub_folder(
    checkpoint: str | os.PathLike | Checkpoint,
    folder: str | os.PathLike,
    *,
    name: str | None = None,
    use_ema: bool = False,
    overwrite: bool = False,
) -> Path:
    """Write the model of ``checkpoint`` as a timm hub folder and return the folder.

    ``folder/config.json`` holds the architecture, ``model_args`` (custom ``dims``, ``kernel_sizes``, ``in_chans``,
    ``num_classes`` ...), the label names of a run of ours and a ``pretrained_cfg`` with the input size, mean and std
    the model was trained with; ``folder/model.safetensors`` holds the weights. After ``import hyenapixel``,
    ``timm.create_model("local-dir:FOLDER", pretrained=True)`` rebuilds the model with bitwise-identical weights, and
    ``timm.data.resolve_data_config(model=...)`` gives its data settings. Publish the folder's model with
    ``timm.models.push_to_hf_hub`` (see docs/training.md).

    Args:
        checkpoint: a run's ``best.pt``/``last.pt``/``best.safetensors`` (or any file :func:`load_model` reads).
        folder: created if missing; other files in it are left alone.
        name: the model name, for a file that does not say (an official checkpoint); files of ours name it.
        use_ema: a training state's EMA weights.
        overwrite: replace the hub files of an earlier export in ``folder`` (without it they are refused).

    Raises:
        WeightsError: an unreadable checkpoint; UserError: ``folder`` is a file or holds a hub export already.
    """
    from timm.models import save_for_hf

    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise UserError(f"{folder} is a file; give a folder for the hub files ({', '.join(HUB_FOLDER_FILES)})")
    existing = [f for f in HUB_FOLDER_FILES if (folder / f).exists()]
    if existing and not overwrite:
        raise UserError(f"{folder} holds {', '.join(existing)} already; choose another folder or pass overwrite")
    ck = checkpoint if isinstance(checkpoint, Checkpoint) else read_checkpoint(checkpoint, use_ema=use_ema)
    model = load_model(name, checkpoint=ck).eval()
    model_args = {k: list(v) if isinstance(v, tuple) else v for k, v in ((ck.spec or {}).get("kwargs") or {}).items()}
    model_config: dict[str, Any] = {}
    if ck.meta.get("class_names"):
        model_config["label_names"] = [str(c) for c in ck.meta["class_names"]]
    save_for_hf(model, str(folder), model_config=model_config, model_args=model_args, safe_serialization=True)
    return folder
