"""``--model NAME [--checkpoint PATH | --pretrained]``, repeatable: the model options of the tool subcommands.

Each ``--model`` starts a new entry; a ``--checkpoint`` or ``--pretrained`` that follows it belongs to that entry::

    hyenapixel erf --model hpx_former_s18 --checkpoint hpx.bin --model convformer_s18 --pretrained

Parsing imports nothing heavy (no torch, no timm), so ``--help`` and usage errors stay fast; :func:`build_models`
builds the networks when the command runs.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["ModelRequest", "add_model_arguments", "build_models", "check_model_names", "weights_by_label"]


@dataclass
class ModelRequest:
    """One ``--model`` entry of the command line."""

    name: str | None
    checkpoint: str | None = None
    pretrained: bool = False
    suffix: str = ""  # set by build_models when two entries would share a label
    weights: str = ""
    """Set by :func:`build_models`: which weights the model got, for figure titles and reports."""
    run_input_size: int | None = None
    """Set by :func:`build_models`: the image side a checkpoint of ours was trained at (None for other weights)."""

    @property
    def label(self) -> str:
        """How the model is named in tables, legends and file names (unique among the built entries)."""
        return (self.name or (self.checkpoint or "model")) + self.suffix


def _explicit_entries(namespace: argparse.Namespace) -> list[ModelRequest]:
    """The entries given so far on the command line (the default list is dropped at the first option)."""
    if not getattr(namespace, "_models_given", False):
        namespace._models_given = True
        return []
    return list(namespace.models)


class _ModelAction(argparse.Action):
    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        entries = _explicit_entries(namespace)
        entries.append(ModelRequest(values))
        setattr(namespace, self.dest, entries)


class _AttachAction(argparse.Action):
    """``--checkpoint`` / ``--pretrained``: attached to the latest ``--model`` (or a new entry without a name)."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        entries = _explicit_entries(namespace)
        if option_string == "--pretrained" and entries and entries[-1].name and entries[-1].checkpoint:
            parser.error(
                f"--model {entries[-1].name} has a --checkpoint already; --checkpoint and --pretrained conflict "
                "(give one of them, or start another entry with --model NAME)"
            )
        if not entries or entries[-1].checkpoint or entries[-1].pretrained:
            if option_string == "--pretrained":
                parser.error("--pretrained must follow a --model NAME")
            entries.append(ModelRequest(None))
        if option_string == "--pretrained":
            entries[-1].pretrained = True
        else:
            entries[-1].checkpoint = values
        namespace.models = entries


def add_model_arguments(parser: argparse.ArgumentParser, *, default: Sequence[str] = (), several: bool = True) -> None:
    """Add ``--model``, ``--checkpoint`` and ``--pretrained`` (repeatable, grouped by position; ``several=False``
    for commands that take one model)."""
    group = parser.add_argument_group("models (repeat --model to compare several)" if several else "model")
    group.add_argument(
        "--model",
        dest="models",
        action=_ModelAction,
        metavar="NAME",
        default=[ModelRequest(n) for n in default],
        help="a timm model name (HyenaPixel names after `import hyenapixel`)"
        + (f"; default: {' '.join(default)}" if default else ""),
    )
    group.add_argument(
        "--checkpoint",
        action=_AttachAction,
        metavar="PATH",
        help="weights for the preceding --model: a run's .pt/.safetensors (which also names the model) or an "
        "official checkpoint",
    )
    group.add_argument(
        "--pretrained", action=_AttachAction, nargs=0, help="hub weights for the preceding --model (needs network)"
    )


def check_model_names(names: Sequence[str | None]) -> None:
    """Raise a :class:`hyenapixel.configio.ConfigError` for the first ``--model`` name that no registry knows, with
    close matches (None entries are skipped). It reads the registries' sources, so a typo answers before torch and
    timm are imported; every command checks its ``--model`` names here."""
    from hyenapixel.configio import ConfigError
    from hyenapixel.modelnames import unknown_model_problem

    for name in names:
        problem = unknown_model_problem(name) if name else None
        if problem:
            raise ConfigError("model", problem)


def build_models(requests: Sequence[ModelRequest], **kwargs: Any) -> list[tuple[ModelRequest, Any]]:
    """Create each requested model (eval mode) with :func:`hyenapixel.models.load_model`; kwargs go to timm. Each
    request learns which weights its model got (:attr:`ModelRequest.weights`) and, for a checkpoint of ours, the
    image size its run trained at (:attr:`ModelRequest.run_input_size`)."""
    from hyenapixel.models import input_side, load_model, read_checkpoint

    models = []
    for req in requests:
        checkpoint = read_checkpoint(req.checkpoint) if req.checkpoint else None
        model = load_model(req.name, checkpoint=checkpoint, pretrained=req.pretrained, **kwargs).eval()
        req.weights = _describe_weights(req, checkpoint)
        if checkpoint is not None and checkpoint.spec is not None:
            req.run_input_size = input_side(checkpoint.meta.get("input_size"))
        if req.name is None:
            req.name = getattr(model, "default_cfg", {}).get("architecture") or type(model).__name__
        models.append((req, model))
    _distinct_labels([req for req, _ in models])
    return models


def weights_by_label(models: Sequence[tuple[ModelRequest, Any]]) -> dict[str, str]:
    """Which weights each built model has, by label (what the reports write under their figures)."""
    return {req.label: req.weights for req, _ in models}


def _describe_weights(req: ModelRequest, checkpoint: Any) -> str:
    """``checkpoint best.pt (epoch 6)``, ``pretrained hub weights`` or ``random initialisation``."""
    from pathlib import Path

    if checkpoint is None:
        return "pretrained hub weights" if req.pretrained else "random initialisation"
    epoch = checkpoint.meta.get("epoch")
    return f"checkpoint {Path(checkpoint.path).name}" + (f" (epoch {epoch})" if epoch is not None else "")


def _distinct_labels(requests: Sequence[ModelRequest]) -> None:
    """Give entries that share a label a suffix: the checkpoint's file name, else ``#2``, ``#3``, ..."""
    from pathlib import Path

    def clashes() -> dict[str, list[ModelRequest]]:
        groups: dict[str, list[ModelRequest]] = {}
        for req in requests:
            groups.setdefault(req.label, []).append(req)
        return {k: v for k, v in groups.items() if len(v) > 1}

    for group in clashes().values():
        for req in group:
            if req.name and req.checkpoint:
                req.suffix = f" ({Path(req.checkpoint).name})"
            elif req.name and req.pretrained:
                req.suffix = " (pretrained)"
    for group in clashes().values():
        for i, req in enumerate(group[1:], start=2):
            req.suffix += f" #{i}"
