"""Data layer of hyenapixel: image folders, timm transforms and mixup, and the built-in generated datasets.

Public API (used by ``hyenapixel.train``):

- :class:`DataError`: any bad data; the message names the offending path.
- :data:`BUILTIN_DATASETS`: the generated two-class long-range tasks used when no data folder is given, by name:
  ``balance`` (:class:`BalanceDataset`, the default: is the left or the right half heavier?) and ``pathfinder``
  (:class:`PathfinderDataset`: are two dots joined by a curve?) and ``echo`` (:class:`EchoDataset`: is the right
  half the left half moved down by half the image? a task only long kernels can solve), each with its difficulty
  presets (:data:`BALANCE_DIFFICULTIES`, :data:`PATHFINDER_DIFFICULTIES`, :data:`ECHO_DIFFICULTIES`) at
  :data:`BUILTIN_IMAGE_SIZE` pixels.
- :func:`check_image_folder` (:func:`check_split` for one split), :class:`ImageFolderDataset`: ImageNet-style
  folders, checked before training.
- :func:`build_transforms`, :func:`build_mixup`: timm augmentation for image folders.
- :func:`build_datasets`: ``(train_ds, val_ds, class_names)`` from a path or ``None`` (built-in).
- :mod:`hyenapixel.data.settings`: the datasets of a training or validation run with their resolved settings
  (:func:`~hyenapixel.data.settings.build_data`); :mod:`hyenapixel.data.loaders`: samplers for mid-epoch resume and
  sharded evaluation, per-sample seeds, reports of skipped files and seeded loaders.

This package imports only torch, torchvision, timm, PIL and numpy, never ``hyenapixel.models``.
"""

from .balance import BALANCE_DIFFICULTIES, BalanceDataset, BalanceDifficulty, BalanceSample
from .builder import BUILTIN_DATASETS, BUILTIN_SAMPLES, DEFAULT_BUILTIN, build_datasets
from .echo import ECHO_DIFFICULTIES, EchoDataset, EchoDifficulty, EchoSample
from .errors import DataError
from .folder import IMG_EXTENSIONS, ImageFolderDataset, check_image_folder, check_split, to_rgb
from .generated import BUILTIN_IMAGE_SIZE, GeneratedDataset
from .pathfinder import PATHFINDER_DIFFICULTIES, PathfinderDataset, PathfinderDifficulty, PathfinderSample
from .transforms import build_mixup, build_transforms

__all__ = [
    "BALANCE_DIFFICULTIES",
    "BUILTIN_DATASETS",
    "BUILTIN_IMAGE_SIZE",
    "ECHO_DIFFICULTIES",
    "BUILTIN_SAMPLES",
    "DEFAULT_BUILTIN",
    "IMG_EXTENSIONS",
    "PATHFINDER_DIFFICULTIES",
    "BalanceDataset",
    "BalanceDifficulty",
    "BalanceSample",
    "DataError",
    "EchoDataset",
    "EchoDifficulty",
    "EchoSample",
    "GeneratedDataset",
    "ImageFolderDataset",
    "PathfinderDataset",
    "PathfinderDifficulty",
    "PathfinderSample",
    "build_datasets",
    "build_mixup",
    "build_transforms",
    "check_image_folder",
    "check_split",
    "to_rgb",
]
