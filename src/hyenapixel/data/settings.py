"""The data of a run from its options: an image folder prepared with the model's data settings, or a built-in task.

:func:`build_data` resolves input size, normalisation and crop (options given, else the model's own settings from
its pretrained cfg, which the caller passes in: paper Section 4.1 evaluates at the model's own settings), checks
names and presets of the built-in datasets, and wraps datasets for the ``--skip-corrupt`` count. Training and
``validate`` build their datasets with it. :class:`RunData` is the one reader of the data a finished run used, as
its checkpoint records it (``validate``, the analysis tools and the ablation's test split start from it).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from hyenapixel.configio import ConfigError
from hyenapixel.constants import DEFAULT_BUILTIN

from .builder import BUILTIN_DATASETS, BUILTIN_SAMPLES, build_datasets
from .folder import ImageFolderDataset, check_split
from .generated import BUILTIN_IMAGE_SIZE
from .loaders import CorruptFileReporter
from .transforms import build_transforms

__all__ = ["BuiltData", "DataSettings", "RunData", "build_data", "default_workers"]

#: DataLoader workers per process for image folders (the built-in data is generated in the main process).
MAX_FOLDER_WORKERS = 8


def default_workers(data: str | None) -> int:
    """Workers when ``--workers`` is not given: 0 for the built-in data, else up to 8 (at most the CPU count)."""
    return 0 if data is None else min(MAX_FOLDER_WORKERS, os.cpu_count() or 1)


@dataclass(frozen=True)
class DataSettings:
    """The resolved data of a run: what the model sees and how the images were prepared."""

    dataset: str
    classes: tuple[str, ...]
    in_chans: int
    train_size: int
    val_size: int
    input_size: int
    crop_pct: float | None
    interpolation: str | None
    mean: tuple[float, ...] | None
    std: tuple[float, ...] | None

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def record(self) -> dict[str, Any]:
        """Plain values for config.yaml (``resolved``), without the class names."""
        return {
            "dataset": self.dataset,
            "num_classes": self.num_classes,
            "in_chans": self.in_chans,
            "train_size": self.train_size,
            "val_size": self.val_size,
            "input_size": self.input_size,
            "crop_pct": self.crop_pct,
            "interpolation": self.interpolation,
            "mean": list(self.mean) if self.mean is not None else None,
            "std": list(self.std) if self.std is not None else None,
        }


@dataclass(frozen=True)
class RunData:
    """The data of a training run of ours, as its checkpoint records it; the defaults are the training defaults.

    ``folder`` is the run's image folder (None: the built-in ``builtin`` task at ``difficulty``, generated from
    ``seed`` with ``train_samples`` / ``val_samples`` images); ``input_size`` is the side length the model trained
    at (None where the file does not say) and ``in_chans`` its input channels.
    """

    folder: str | None = None
    builtin: str = DEFAULT_BUILTIN
    difficulty: str = "default"
    train_samples: int = BUILTIN_SAMPLES[0]
    val_samples: int = BUILTIN_SAMPLES[1]
    seed: int = 0
    input_size: int | None = None
    in_chans: int = 3

    @classmethod
    def from_meta(cls, meta: Mapping[str, Any]) -> RunData | None:
        """The run data in a checkpoint's metadata (``Checkpoint.meta``: the run's ``config``, ``input_size``,
        ``in_chans``); None for weight files that no training run of ours wrote."""
        config = meta.get("config")
        if not isinstance(config, Mapping) or not config:
            return None
        data, run = config.get("data") or {}, config.get("run") or {}
        size = meta.get("input_size") or data.get("input_size")
        given = {
            "folder": data.get("data"),
            "builtin": data.get("builtin"),
            "difficulty": data.get("difficulty"),
            "train_samples": data.get("train_samples"),
            "val_samples": data.get("val_samples"),
            "seed": run.get("seed"),
            "input_size": size[-1] if isinstance(size, (list, tuple)) else size,
            "in_chans": meta.get("in_chans"),
        }
        return cls(**{k: (v if isinstance(v, str) else int(v)) for k, v in given.items() if v is not None})

    def describe(self) -> str:
        """The folder, or ``built-in <task>-<difficulty>``."""
        return self.folder or f"built-in {self.builtin}-{self.difficulty}"


class BuiltData(NamedTuple):
    """Training and validation datasets (``train`` is None for a validation-only folder) and their settings."""

    train: Any
    val: Any
    settings: DataSettings


def build_data(
    data: str | None,
    *,
    defaults: Mapping[str, Any],
    input_size: int | None,
    crop_pct: float | None,
    interpolation: str,
    mean: tuple[float, ...] | None,
    std: tuple[float, ...] | None,
    train_samples: int,
    val_samples: int,
    seed: int,
    skip_corrupt: bool,
    aug: Any | None,
    builtin: str,
    difficulty: str = "default",
    val_only: bool = False,
) -> BuiltData:
    """Datasets and the resolved data settings; raises ``hyenapixel.data.DataError`` before any training.

    ``defaults`` are the model's data settings (``hyenapixel.models.data_config``: ``input_size``, ``crop_pct``,
    ``mean``, ``std``), used for an image folder where an option is None. ``aug`` is an
    :class:`~hyenapixel.train.config.AugConfig` (training transforms) or None. With ``val_only`` an image folder
    needs only its ``val/`` split (``train`` is then None).
    """
    if data is None:
        if builtin not in BUILTIN_DATASETS:
            raise ConfigError("builtin", f"invalid choice {builtin!r}; choose from {', '.join(BUILTIN_DATASETS)}")
        presets = BUILTIN_DATASETS[builtin].difficulties
        if difficulty not in presets:
            raise ConfigError("difficulty", f"invalid choice {difficulty!r}; choose from {', '.join(presets)}")
        # the generated dataset yields normalised tensors of its own: no image transforms, no crop
        size = input_size or BUILTIN_IMAGE_SIZE
        resolved: dict[str, Any] = dict(input_size=size, crop_pct=None, interpolation=None, mean=None, std=None)
        train_tf = val_tf = None
    else:
        size = input_size or defaults["input_size"]
        resolved = {
            "input_size": size,
            "crop_pct": crop_pct if crop_pct is not None else defaults["crop_pct"],
            "interpolation": interpolation,
            "mean": tuple(mean) if mean is not None else defaults["mean"],
            "std": tuple(std) if std is not None else defaults["std"],
        }
        common = {k: resolved[k] for k in ("interpolation", "mean", "std")}
        val_tf = build_transforms(False, size, crop_pct=resolved["crop_pct"], **common)
        train_tf = val_tf
        if aug is not None:
            train_tf = build_transforms(
                True,
                size,
                auto_augment=aug.auto_augment,
                re_prob=aug.re_prob,
                re_mode=aug.re_mode,
                crop_pct=resolved["crop_pct"],
                **common,
            )
    if val_only and data is not None and not (Path(data) / "train").is_dir():
        classes = check_split(data, "val")
        val_ds = ImageFolderDataset(Path(data) / "val", classes, val_tf, skip_corrupt=skip_corrupt)
        if skip_corrupt:
            val_ds = CorruptFileReporter(val_ds)
        settings = DataSettings(
            dataset=str(data), classes=tuple(classes), in_chans=3, train_size=0, val_size=len(val_ds), **resolved
        )
        return BuiltData(None, val_ds, settings)
    train_ds, val_ds, classes = build_datasets(
        data,
        input_size=size,
        skip_corrupt=skip_corrupt,
        train_transform=train_tf,
        val_transform=val_tf,
        builtin_train_samples=train_samples,
        builtin_val_samples=val_samples,
        builtin=builtin,
        builtin_difficulty=difficulty,
        seed=seed,
    )
    if data is None:  # record the generated data's own normalisation, so that tools can feed the model image files
        resolved["mean"] = tuple(float(v) for v in val_ds.mean.flatten())
        resolved["std"] = tuple(float(v) for v in val_ds.std.flatten())
    if skip_corrupt:
        train_ds, val_ds = CorruptFileReporter(train_ds), CorruptFileReporter(val_ds)
    in_chans = int(getattr(train_ds, "in_chans", 0) or getattr(val_ds, "in_chans", 0) or 3)
    settings = DataSettings(
        dataset=f"{builtin}-{difficulty} (built-in)" if data is None else str(data),
        classes=tuple(classes),
        in_chans=in_chans,
        train_size=len(train_ds),
        val_size=len(val_ds),
        **resolved,
    )
    return BuiltData(train_ds, val_ds, settings)
