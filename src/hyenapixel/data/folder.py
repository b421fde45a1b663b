"""Image folders in the ImageNet layout ``ROOT/{train,val}/<class>/<image>``: checks up front and a loader.

:func:`check_image_folder` finds every layout problem before training starts. :class:`ImageFolderDataset`
loads images with PIL and deals with unreadable files explicitly: it either raises :class:`DataError` naming
the file, or (with ``skip_corrupt=True``) warns, records the file and substitutes the next readable image
together with that image's own label, so a label never goes with the wrong image.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from PIL import Image
from torch.utils.data import Dataset

from .errors import DataError

__all__ = ["IMG_EXTENSIONS", "SPLITS", "ImageFolderDataset", "check_image_folder", "check_split", "to_rgb"]

IMG_EXTENSIONS: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
"""File name endings (compared in lower case) that count as images."""

SPLITS: tuple[str, str] = ("train", "val")
"""The split folders an image-folder root must hold."""

#: Split folders with at most this many image files are opened file by file by :func:`check_split` (PIL reads only
#: the header), so a folder without a single readable image is reported before training; larger ones are not.
HEADER_CHECK_MAX_FILES = 20_000

# what PIL raises for unreadable files: OSError (UnidentifiedImageError, truncated data), ValueError and
# SyntaxError (malformed headers), DecompressionBombError (absurd sizes)
_LOAD_ERRORS = (OSError, ValueError, SyntaxError, Image.DecompressionBombError)


def _image_files(folder: Path) -> list[Path]:
    """All image files under ``folder`` (recursively, following links), sorted by path."""
    found = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        found += [Path(dirpath, f) for f in filenames if f.lower().endswith(IMG_EXTENSIONS) and f[0] != "."]
    return sorted(found)


def _class_images(folder: Path) -> list[Path]:
    """The image files of one class folder; raises :class:`DataError` if it is missing or holds none."""
    if not folder.is_dir():
        raise DataError(f"{folder}: class folder does not exist")
    files = _image_files(folder)
    if not files:
        raise DataError(f"{folder}: class folder holds no image files ({', '.join(IMG_EXTENSIONS)})")
    return files


def check_split(root: str | os.PathLike[str], split: str) -> list[str]:
    """Check one split folder ``root/split`` and return its sorted class names.

    Raises :class:`DataError`, naming the offending path, when the split folder is missing, holds no class
    folders, a class folder holds no image file, or (for splits of at most :data:`HEADER_CHECK_MAX_FILES` images)
    not one image file opens. :func:`check_image_folder` runs this for both splits;
    evaluation on a folder without ``train/`` runs it for ``val`` alone.
    """
    split_dir = Path(root) / split
    if not split_dir.is_dir():
        raise DataError(f"{split_dir}: missing '{split}' split folder (expected {root}/{split}/<class>/<images>)")
    names = sorted(e.name for e in split_dir.iterdir() if e.is_dir() and not e.name.startswith("."))
    if not names:
        raise DataError(f"{split_dir}: no class folders (expected {split_dir}/<class>/<images>)")
    files = [f for name in names for f in _class_images(split_dir / name)]
    if len(files) <= HEADER_CHECK_MAX_FILES:
        _check_some_readable(split_dir, files)
    return names


def _open_problem(path: Path) -> str | None:
    """Why PIL cannot identify ``path`` as an image (it reads the header only), or None."""
    try:
        with Image.open(path):
            return None
    except _LOAD_ERRORS as exc:
        return f"{type(exc).__name__}: {exc}"


def _check_some_readable(split_dir: Path, files: list[Path]) -> None:
    """Raise :class:`DataError` if not one of ``files`` opens as an image, with the counts and one example of each
    kind of file that was passed over."""
    first_problem = None
    for f in files:
        problem = _open_problem(f)
        if problem is None:
            return
        first_problem = first_problem or f"{f}: {problem}"
    others = [Path(d, n) for d, _, names in os.walk(split_dir, followlinks=True) for n in names]
    others = sorted(f for f in others if not f.name.lower().endswith(IMG_EXTENSIONS))
    message = f"{split_dir}: no readable images: all {len(files)} image file(s) fail to open (e.g. {first_problem})"
    if others:
        message += f"; {len(others)} other file(s) are not images by name (e.g. {others[0]})"
    raise DataError(message + f"; expected {', '.join(IMG_EXTENSIONS)} files that PIL can read")


def check_image_folder(root: str | os.PathLike[str]) -> list[str]:
    """Check an ImageNet-style folder before training and return its sorted class names.

    The layout is ``root/train/<class>/...`` and ``root/val/<class>/...``; image files may sit in subfolders
    of a class folder. Raises :class:`DataError`, naming the offending path, when ``root`` or a split folder
    is missing, a split has no class folders, a class folder holds no image file (see
    :data:`IMG_EXTENSIONS`), or ``train`` and ``val`` have different class folders (the message lists the
    classes found in only one of them), or a small split holds no image that opens (see :func:`check_split`);
    files are not decoded here, see :meth:`ImageFolderDataset.verify`.
    """
    root = Path(root)
    if not root.exists():
        raise DataError(f"{root}: data folder does not exist")
    if not root.is_dir():
        raise DataError(f"{root}: data path is not a folder (expected {root}/train/<class>/ and {root}/val/<class>/)")
    classes = {split: check_split(root, split) for split in SPLITS}
    train, val = (set(classes[s]) for s in SPLITS)
    if train != val:
        raise DataError(
            f"{root}: class folders differ between train/ and val/: "
            f"only in train: {sorted(train - val)}; only in val: {sorted(val - train)}"
        )
    return classes["train"]


def to_rgb(image: Image.Image) -> Image.Image:
    """``image`` as 8-bit RGB. 16-bit greyscale (PIL modes ``I;16*``, and ``I`` as 16-bit PNGs open) is scaled
    from its full range (65535 -> 255); PIL's ``convert("RGB")`` alone would clip it at 255 (almost all white).
    Larger ``I`` values are scaled from the 32-bit range."""
    if image.mode.startswith("I;16") or image.mode == "I":
        import numpy as np

        values = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I;16") or values.max(initial=0) <= 65535 else 2.0**32 - 1
        image = Image.fromarray(np.clip(values * (255.0 / top) + 0.5, 0, 255).astype(np.uint8), mode="L")
    return image.convert("RGB")


class ImageFolderDataset(Dataset):
    """Images of one split folder, ``root/<class>/...``, with labels given by the order of ``classes``.

    Images are loaded with PIL and converted to RGB, then ``transform`` (if any) is applied. An unreadable
    file raises :class:`DataError` naming it, unless ``skip_corrupt`` is set: then a warning names the file,
    the file is added to :attr:`corrupt_files` and the next readable sample (with its own label) is returned
    instead. :attr:`corrupt_files` only sees the files this process read; with DataLoader workers, call
    :meth:`verify` first in the main process for a complete count.

    Args:
        root: the split folder, e.g. ``DATA/train``.
        classes: class folder names; class ``i`` gets label ``i`` (use :func:`check_image_folder`).
        transform: applied to the PIL image (e.g. from :func:`~hyenapixel.data.build_transforms`).
        skip_corrupt: substitute unreadable images instead of raising.

    Shape:
        ``dataset[i]`` -> (transform(image), label: int); with a timm transform the image is (3, H, W) float32.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        classes: Sequence[str],
        transform: Callable[[Image.Image], Any] | None = None,
        skip_corrupt: bool = False,
    ) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise DataError(f"{self.root}: split folder does not exist")
        self.classes = list(classes)
        if not self.classes:
            raise DataError(f"{self.root}: no classes given")
        self.class_to_idx = {name: i for i, name in enumerate(self.classes)}
        self.samples: list[tuple[Path, int]] = []
        for name, label in self.class_to_idx.items():
            self.samples += [(f, label) for f in _class_images(self.root / name)]
        self.transform = transform
        self.skip_corrupt = skip_corrupt
        self.corrupt_files: list[Path] = []
        """Unreadable files met so far by this process, each listed once."""

    @property
    def targets(self) -> list[int]:
        """The label of every sample, in order."""
        return [label for _, label in self.samples]

    def __len__(self) -> int:
        return len(self.samples)

    @staticmethod
    def load(path: Path) -> Image.Image:
        """Read one image fully and convert it to RGB; raises :class:`DataError` naming ``path`` on failure."""
        try:
            with Image.open(path) as image:
                return to_rgb(image)  # convert() decodes all of the data
        except _LOAD_ERRORS as exc:
            raise DataError(f"{path}: cannot read image ({type(exc).__name__}: {exc})") from exc

    def _load_or_record(self, path: Path) -> Image.Image | None:
        """:meth:`load`, or with ``skip_corrupt`` ``None`` after warning about an unreadable file once and recording
        it in :attr:`corrupt_files`."""
        try:
            return self.load(path)
        except DataError as err:
            if not self.skip_corrupt:
                raise
            if path not in self.corrupt_files:
                self.corrupt_files.append(path)
                warnings.warn(f"skipping corrupt image: {err}", stacklevel=4)
            return None

    def __getitem__(self, index: int) -> tuple[Any, int]:
        """Shape: -> (transform(RGB image), label)."""
        n = len(self.samples)
        for step in range(n if self.skip_corrupt else 1):
            path, label = self.samples[(index + step) % n]
            image = self._load_or_record(path)
            if image is not None:
                return (self.transform(image) if self.transform is not None else image), label
        raise DataError(f"{self.root}: no readable image left ({len(self.corrupt_files)} corrupt files)")

    def verify(self) -> list[Path]:
        """Read every file once and return the unreadable ones.

        Without ``skip_corrupt`` the first unreadable file raises :class:`DataError` naming it. With it, each
        one is warned about, added to :attr:`corrupt_files` and dropped from :attr:`samples`, so later reads
        never meet it. This decodes every image: meant for small datasets or a one-off check.
        """
        bad = []
        for path, _ in self.samples:
            if self._load_or_record(path) is None:
                bad.append(path)
        if bad:
            dropped = set(bad)
            self.samples = [(p, label) for p, label in self.samples if p not in dropped]
            if not self.samples:
                raise DataError(f"{self.root}: no readable image ({len(bad)} corrupt files)")
        return bad

    def __repr__(self) -> str:
        return f"{type(self).__name__}(root={str(self.root)!r}, samples={len(self)}, classes={len(self.classes)})"
