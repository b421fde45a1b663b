"""Input images for the analysis tools (paper Section 5 and Appendices B-C analyse real photos).

:func:`load_images` reads a folder of photos or, without one, a built-in set: the real photographs that
scikit-image ships inside its wheel (``skimage.data``), so no tool ever downloads anything. Images are resized
(shorter side to the target, bicubic with antialiasing) and centre-cropped to the requested size.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

from hyenapixel.data import DataError, to_rgb
from hyenapixel.data.folder import IMG_EXTENSIONS
from hyenapixel.errors import UserError

__all__ = ["BUILTIN_IMAGES", "ImageSet", "builtin_images", "load_images", "resize_crop"]

#: The built-in set: real photographs bundled in scikit-image's wheel that load without network access (checked
#: with scikit-image 0.26; the ones that need the optional ``pooch`` download are left out). Grayscale photos are
#: repeated over the three colour channels. Order: everyday scenes first, then textures, microscopy, astronomy.
BUILTIN_IMAGES: tuple[str, ...] = (
    "astronaut",
    "chelsea",
    "coffee",
    "rocket",
    "motorcycle",
    "camera",
    "coins",
    "clock",
    "moon",
    "page",
    "text",
    "brick",
    "grass",
    "gravel",
    "retina",
    "immunohistochemistry",
    "hubble_deep_field",
    "cell",
)


@dataclass
class ImageSet:
    """A batch of images at one size.

    Attributes:
        tensor: normalised model input, float32.
        raw: the same images in [0, 1] (for display).
        names: one name per image (file path relative to the folder, or the ``skimage.data`` name).

    Shape:
        tensor, raw: (N, 3, H, W)
    """

    tensor: torch.Tensor
    raw: torch.Tensor
    names: list[str]

    def __len__(self) -> int:
        return len(self.names)

    def batches(self, batch_size: int) -> list[torch.Tensor]:
        """The normalised images in consecutive batches of at most ``batch_size`` (views, no copies).

        Shape:
            -> [(b, 3, H, W), ...]
        """
        return list(self.tensor.split(max(1, int(batch_size))))


def _size_pair(size: int | Sequence[int]) -> tuple[int, int]:
    pair = (size, size) if isinstance(size, int) else tuple(size)
    if len(pair) != 2 or any(not isinstance(s, int) or s < 1 for s in pair):
        raise UserError(f"image size must be a positive int or (height, width), got {size!r}")
    return int(pair[0]), int(pair[1])


def resize_crop(image: torch.Tensor, size: int | Sequence[int]) -> torch.Tensor:
    """Resize so that the image covers ``size`` (the shorter side, relative to the target, fits exactly), bicubic
    with antialiasing, then crop the centre; values are clamped to [0, 1].

    Shape:
        (3, h, w) -> (3, H, W)
    """
    H, W = _size_pair(size)
    h, w = image.shape[-2:]
    scale = max(H / h, W / w)
    nh, nw = max(H, round(h * scale)), max(W, round(w * scale))
    out = F.interpolate(image[None].float(), size=(nh, nw), mode="bicubic", antialias=True, align_corners=False)[0]
    top, left = (nh - H) // 2, (nw - W) // 2
    return out[:, top : top + H, left : left + W].clamp(0, 1)


def _to_chw(array: np.ndarray) -> torch.Tensor:
    """An image array (h, w), (h, w, 3) or (h, w, 4), integer or float, as (3, h, w) float32 in [0, 1]."""
    a = np.asarray(array)
    if a.dtype == bool:
        a = a.astype(np.float32)
    elif np.issubdtype(a.dtype, np.integer):
        a = a.astype(np.float32) / float(np.iinfo(a.dtype).max)
    a = a.astype(np.float32)
    if a.ndim == 2:
        a = np.repeat(a[:, :, None], 3, axis=2)
    a = a[:, :, :3]
    return torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1)))


def _skimage_loaders() -> dict[str, Callable[[], np.ndarray]]:
    try:
        from skimage import data as skdata
    except ImportError as exc:
        raise UserError(
            "the built-in images need scikit-image: install the analysis extra (pip install 'hyenapixel[analysis]')"
            " or pass --images DIR"
        ) from exc
    loaders = {name: getattr(skdata, name) for name in BUILTIN_IMAGES if hasattr(skdata, name)}
    loaders["motorcycle"] = lambda: skdata.stereo_motorcycle()[0]  # left view of the stereo pair
    return loaders


def builtin_images() -> list[tuple[str, torch.Tensor]]:
    """The built-in photos at their own sizes, in :data:`BUILTIN_IMAGES` order (those that fail to load are
    skipped; at least one must load).

    Shape:
        -> [(name, (3, h, w) in [0, 1]), ...]
    """
    loaders = _skimage_loaders()
    images = []
    for name in BUILTIN_IMAGES:
        try:
            images.append((name, _to_chw(loaders[name]())))
        except (KeyError, OSError, ValueError, ModuleNotFoundError):
            continue
    if not images:
        raise UserError("none of the built-in scikit-image photos could be loaded; pass --images DIR")
    return images


def _folder_files(folder: Path) -> list[Path]:
    if not folder.exists():
        raise DataError(f"{folder}: image folder does not exist")
    if not folder.is_dir():
        raise DataError(f"{folder}: not a folder (pass a folder of images)")
    files = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        files += [Path(dirpath, f) for f in filenames if f.lower().endswith(IMG_EXTENSIONS) and f[0] != "."]
    if not files:
        raise DataError(f"{folder}: no images found (looked recursively for {', '.join(IMG_EXTENSIONS)})")
    return sorted(files)


def _read_file(path: Path) -> torch.Tensor:
    from PIL import Image

    try:
        with Image.open(path) as im:
            return _to_chw(np.asarray(to_rgb(im)))
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise DataError(f"{path}: cannot read this image ({exc}); remove or replace the file") from exc


def load_images(
    folder: str | os.PathLike[str] | None = None,
    *,
    size: int | Sequence[int] = 224,
    num: int | None = None,
    mean: Sequence[float] = IMAGENET_DEFAULT_MEAN,
    std: Sequence[float] = IMAGENET_DEFAULT_STD,
    cycle: bool = True,
) -> ImageSet:
    """Load, resize and normalise images for the analysis tools.

    Args:
        folder: a folder read recursively (files ending in :data:`hyenapixel.data.folder.IMG_EXTENSIONS`, sorted
            by path); ``None`` for the built-in photos (:data:`BUILTIN_IMAGES`).
        size: output size, an int or ``(height, width)``.
        num: number of images; the available ones are cycled when ``num`` exceeds them (with ``cycle=False``:
            each taken once, fewer than ``num``) and the first ``num`` taken otherwise (default: all).
        mean / std: per-channel normalisation of :attr:`ImageSet.tensor`.

    Raises :class:`~hyenapixel.errors.UserError` (a :class:`~hyenapixel.data.DataError` for files) for a
    missing or empty folder, an unreadable image (naming the file) or an invalid size or count.

    Shape:
        -> ImageSet with tensor and raw of shape (num, 3, H, W)
    """
    H, W = _size_pair(size)
    if num is not None and (not isinstance(num, int) or num < 1):
        raise UserError(f"number of images must be a positive integer, got {num!r}")
    if folder is None:
        sources: list[tuple[str, Callable[[], torch.Tensor]]] = [
            (name, (lambda img=img: img)) for name, img in builtin_images()
        ]
    else:
        root = Path(folder)
        sources = [(str(p.relative_to(root)), (lambda p=p: _read_file(p))) for p in _folder_files(root)]
    count = num or len(sources)
    if not cycle:
        count = min(count, len(sources))
    resized: dict[int, torch.Tensor] = {}
    raws, names = [], []
    for i in range(count):
        j = i % len(sources)
        if j not in resized:
            resized[j] = resize_crop(sources[j][1](), (H, W))
        raws.append(resized[j])
        names.append(sources[j][0])
    raw = torch.stack(raws)
    m = torch.tensor(list(mean), dtype=torch.float32).view(1, -1, 1, 1)
    s = torch.tensor(list(std), dtype=torch.float32).view(1, -1, 1, 1)
    return ImageSet(tensor=(raw - m) / s, raw=raw, names=names)
