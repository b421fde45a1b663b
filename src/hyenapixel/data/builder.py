"""One entry point for the trainer: train and validation datasets from a data path, or a built-in generated task."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from torch.utils.data import Dataset

from hyenapixel.constants import DEFAULT_BUILTIN

from .balance import BalanceDataset
from .echo import EchoDataset
from .errors import DataError
from .folder import ImageFolderDataset, check_image_folder
from .generated import BUILTIN_IMAGE_SIZE, GeneratedDataset
from .pathfinder import PathfinderDataset
from .transforms import build_transforms

__all__ = ["BUILTIN_DATASETS", "BUILTIN_SAMPLES", "DEFAULT_BUILTIN", "build_datasets"]

BUILTIN_DATASETS: dict[str, type[GeneratedDataset]] = {
    "balance": BalanceDataset,
    "pathfinder": PathfinderDataset,
    "echo": EchoDataset,
}
"""The built-in generated datasets by name (``--builtin``); each class lists its ``difficulties`` presets."""

BUILTIN_SAMPLES = (8_000, 2_000)
"""Default (train, validation) sample counts of a built-in dataset (the defaults of ``--train-samples`` and
``--val-samples`` too, which a test keeps equal)."""


def build_datasets(
    data: str | os.PathLike[str] | None,
    *,
    input_size: int = BUILTIN_IMAGE_SIZE,
    num_classes: int | None = None,
    skip_corrupt: bool = False,
    train_transform: Callable[[Any], Any] | None = None,
    val_transform: Callable[[Any], Any] | None = None,
    builtin_train_samples: int = BUILTIN_SAMPLES[0],
    builtin_val_samples: int = BUILTIN_SAMPLES[1],
    builtin: str = DEFAULT_BUILTIN,
    builtin_difficulty: Any = "default",
    in_chans: int = 3,
    seed: int = 0,
) -> tuple[Dataset, Dataset, list[str]]:
    """Build ``(train_ds, val_ds, class_names)``.

    ``data=None`` selects the built-in generated dataset named ``builtin`` (a key of :data:`BUILTIN_DATASETS`:
    two classes, images of ``input_size`` pixels, ``builtin_*`` samples and difficulty preset, train and
    validation seeds derived from ``seed``); it yields normalised tensors, so the transforms are not used, and it
    is meant for small inputs (``input_size`` 32, where a small model learns it in minutes on a CPU).

    Otherwise ``data`` is an ImageNet-style folder, checked with :func:`check_image_folder` before anything is
    loaded, and read with :class:`ImageFolderDataset`; missing transforms default to :func:`build_transforms`
    for ``input_size``.

    Raises :class:`DataError` (naming the path) for any layout problem, and when ``num_classes`` is given but
    differs from the number of classes found.

    Shape:
        each dataset item is (image (in_chans, input_size, input_size) float32, label int) with timm transforms.
    """
    if data is None:
        if builtin not in BUILTIN_DATASETS:
            raise ValueError(f"unknown built-in dataset {builtin!r}; choose from {', '.join(BUILTIN_DATASETS)}")
        cls = BUILTIN_DATASETS[builtin]
        if num_classes is not None and num_classes != cls.num_classes:
            raise DataError(
                f"<built-in {builtin}> (data=None) has {cls.num_classes} classes, "
                f"but num_classes={num_classes} was asked for"
            )
        train_ds, val_ds = cls.splits(
            builtin_train_samples,
            builtin_val_samples,
            seed=seed,
            image_size=input_size,
            difficulty=builtin_difficulty,
            in_chans=in_chans,
        )
        return train_ds, val_ds, list(cls.classes)

    root = Path(data)
    classes = check_image_folder(root)
    if num_classes is not None and num_classes != len(classes):
        raise DataError(f"{root}: found {len(classes)} class folders, but num_classes={num_classes} was asked for")
    if train_transform is None:
        train_transform = build_transforms(True, input_size)
    if val_transform is None:
        val_transform = build_transforms(False, input_size)
    train_ds = ImageFolderDataset(root / "train", classes, train_transform, skip_corrupt=skip_corrupt)
    val_ds = ImageFolderDataset(root / "val", classes, val_transform, skip_corrupt=skip_corrupt)
    return train_ds, val_ds, classes
