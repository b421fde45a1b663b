"""Inputs for checking an exported model against PyTorch: random tensors, image files preprocessed as the model's
timm data config says, and the built-in rendered images (paper Section 3 models at a fixed export size).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from hyenapixel.data import IMG_EXTENSIONS, BalanceDataset, DataError, to_rgb

__all__ = ["balance_images", "image_files", "preprocessed_images", "random_images"]


def random_images(batch: int, in_chans: int, size: tuple[int, int], seed: int = 0) -> torch.Tensor:
    """Standard-normal images (the scale of normalised inputs).

    Shape:
        -> (batch, in_chans, H, W)
    """
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, in_chans, *size, generator=g)


def balance_images(batch: int, in_chans: int, size: tuple[int, int], seed: int = 0) -> torch.Tensor:
    """Rendered images of the built-in Balance task (objects on a background, not noise), normalised to [-1, 1]
    and resized to ``size``: structured inputs when no image files are at hand.

    Shape:
        -> (batch, in_chans, H, W)
    """
    side = max(size)
    ds = BalanceDataset(batch, image_size=max(side, BalanceDataset.min_image_size), seed=seed, in_chans=in_chans)
    x = torch.stack([ds[i][0] for i in range(batch)])
    if tuple(x.shape[-2:]) != tuple(size):
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
    return x


def image_files(paths: Sequence[str | os.PathLike], limit: int | None = None) -> list[Path]:
    """Image files from files and folders (folders searched recursively, sorted), at most ``limit``.

    Raises:
        DataError: a path that does not exist, or no image file among them.
    """
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            files += sorted(f for f in p.rglob("*") if f.suffix.lower() in IMG_EXTENSIONS and f.is_file())
        elif p.is_file():
            files.append(p)
        else:
            raise DataError(f"image path not found: {p}")
    if not files:
        raise DataError(f"no image files ({', '.join(IMG_EXTENSIONS)}) in {', '.join(map(str, paths))}")
    return files[:limit] if limit else files


def preprocessed_images(
    paths: Sequence[str | os.PathLike], model: nn.Module, size: tuple[int, int], in_chans: int, limit: int = 16
) -> torch.Tensor:
    """Image files preprocessed with the model's timm eval transform (resize, center crop, normalise) at ``size``.

    Raises:
        DataError: a missing or unreadable image.

    Shape:
        -> (N, in_chans, H, W)
    """
    from PIL import Image, UnidentifiedImageError
    from timm.data import create_transform, resolve_data_config

    cfg = resolve_data_config({"input_size": (in_chans, *size)}, model=model)
    transform = create_transform(**cfg, is_training=False)
    images = []
    for f in image_files(paths, limit):
        try:
            with Image.open(f) as img:
                img = to_rgb(img)
                x = transform(img)
        except (OSError, UnidentifiedImageError) as exc:
            raise DataError(f"cannot read image {f}: {exc}") from None
        if in_chans != x.shape[0]:
            x = x.mean(0, keepdim=True).expand(in_chans, -1, -1)
        images.append(x)
    return torch.stack(images)
