"""Data layer of hyenapixel: image folders, timm transforms and mixup, and the built-in Pathfinder dataset.

Public API (used by ``hyenapixel.train``):

- :class:`DataError`: any bad data; the message names the offending path.
- :class:`PathfinderDataset` (with :class:`PathfinderDifficulty`, :data:`PATHFINDER_DIFFICULTIES` and
  :data:`BUILTIN_IMAGE_SIZE`): the generated two-class long-range task used when no data folder is given.
- :func:`check_image_folder`, :class:`ImageFolderDataset`: ImageNet-style folders, checked before training.
- :func:`build_transforms`, :func:`build_mixup`: timm augmentation for image folders.
- :func:`build_datasets`: ``(train_ds, val_ds, class_names)`` from a path or ``None`` (built-in).

This package imports only torch, torchvision, timm, PIL and numpy, never ``hyenapixel.models``.
"""

from .builder import build_datasets
from .errors import DataError
from .folder import IMG_EXTENSIONS, ImageFolderDataset, check_image_folder
from .pathfinder import (
    BUILTIN_IMAGE_SIZE,
    PATHFINDER_DIFFICULTIES,
    PathfinderDataset,
    PathfinderDifficulty,
    PathfinderSample,
)
from .transforms import build_mixup, build_transforms

__all__ = [
    "BUILTIN_IMAGE_SIZE",
    "IMG_EXTENSIONS",
    "PATHFINDER_DIFFICULTIES",
    "DataError",
    "ImageFolderDataset",
    "PathfinderDataset",
    "PathfinderDifficulty",
    "PathfinderSample",
    "build_datasets",
    "build_mixup",
    "build_transforms",
    "check_image_folder",
]
