"""Tests of the image-folder checks and loader: layout errors, corrupt files, and build_datasets."""

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from hyenapixel.data import (
    DataError,
    ImageFolderDataset,
    PathfinderDataset,
    build_datasets,
    build_transforms,
    check_image_folder,
    check_split,
)


def write_image(path: Path, color: int, fmt: str = "PNG") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((12, 10, 3), color, dtype=np.uint8)).save(path, format=fmt)
    return path


def make_folder(root: Path, classes=("cat", "dog"), per_class: int = 2) -> Path:
    for split in ("train", "val"):
        for c, name in enumerate(classes):
            for i in range(per_class):
                fmt, ext = ("JPEG", "jpg") if i % 2 else ("PNG", "png")
                write_image(root / split / name / f"{i}.{ext}", 40 * c + i, fmt)
    return root


def test_check_image_folder_ok(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "data", classes=("zebra", "ant", "moth"))
    (root / "train" / "ant" / "notes.txt").write_text("not an image")
    assert check_image_folder(root) == ["ant", "moth", "zebra"]


def test_check_split_alone(tmp_path: Path) -> None:
    """One split is checked like check_image_folder checks each (used when evaluating without train/)."""
    root = make_folder(tmp_path / "data", classes=("b", "a"))
    assert check_split(root, "val") == ["a", "b"]
    (root / "val" / "empty").mkdir()
    with pytest.raises(DataError, match=str(root / "val" / "empty")):
        check_split(root, "val")
    with pytest.raises(DataError, match="missing 'test' split folder"):
        check_split(root, "test")


def test_missing_root(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="nowhere"):
        check_image_folder(tmp_path / "nowhere")


@pytest.mark.parametrize("split", ["train", "val"])
def test_missing_split(tmp_path: Path, split: str) -> None:
    root = make_folder(tmp_path / "data")
    for f in (root / split).rglob("*"):
        if f.is_file():
            f.unlink()
    for d in sorted((root / split).rglob("*"), reverse=True):
        d.rmdir()
    (root / split).rmdir()
    with pytest.raises(DataError, match=str(root / split)):
        check_image_folder(root)


def test_empty_class_folder(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "data")
    empty = root / "val" / "emu"
    empty.mkdir()
    (empty / "readme.txt").write_text("no images here")
    (root / "train" / "emu").mkdir()
    write_image(root / "train" / "emu" / "a.png", 1)
    with pytest.raises(DataError, match=str(empty)):
        check_image_folder(root)


def test_mismatched_classes_named(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "data")
    write_image(root / "train" / "owl" / "a.png", 1)
    write_image(root / "val" / "bat" / "a.png", 1)
    with pytest.raises(DataError) as err:
        check_image_folder(root)
    msg = str(err.value)
    assert str(root) in msg and "only in train: ['owl']" in msg and "only in val: ['bat']" in msg


def test_dataset_loads_rgb_with_labels(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "data")
    gray = root / "train" / "dog" / "gray.png"
    Image.fromarray(np.zeros((5, 5), dtype=np.uint8)).save(gray)
    classes = check_image_folder(root)
    ds = ImageFolderDataset(root / "train", classes)
    assert len(ds) == 5 and ds.targets == [0, 0, 1, 1, 1]
    image, label = ds[4]
    assert image.mode == "RGB" and label == 1
    ds_t = ImageFolderDataset(root / "val", classes, transform=build_transforms(False, 16))
    x, y = ds_t[0]
    assert x.shape == (3, 16, 16) and x.dtype == torch.float32 and y == 0


def corrupt_folder(tmp_path: Path) -> tuple[Path, Path, Path]:
    root = make_folder(tmp_path / "data")
    garbage = root / "train" / "cat" / "0_garbage.png"
    garbage.write_bytes(b"this is not a png at all")
    good_jpeg = write_image(tmp_path / "big.jpg", 99, "JPEG")
    truncated = root / "train" / "cat" / "1_truncated.jpg"
    truncated.write_bytes(good_jpeg.read_bytes()[:200])
    return root, garbage, truncated


def test_corrupt_file_raises_naming_it(tmp_path: Path) -> None:
    root, garbage, truncated = corrupt_folder(tmp_path)
    ds = ImageFolderDataset(root / "train", check_image_folder(root))
    files = [p for p, _ in ds.samples]
    with pytest.raises(DataError, match=str(garbage)):
        ds[files.index(garbage)]
    with pytest.raises(DataError, match=str(truncated)):
        ds[files.index(truncated)]
    with pytest.raises(DataError, match=str(garbage)):
        ds.verify()


def test_skip_corrupt_warns_counts_and_substitutes(tmp_path: Path) -> None:
    root, garbage, truncated = corrupt_folder(tmp_path)
    ds = ImageFolderDataset(root / "train", check_image_folder(root), skip_corrupt=True)
    files = [p for p, _ in ds.samples]
    i = files.index(garbage)
    with pytest.warns(UserWarning, match=str(garbage)):
        image, label = ds[i]
    # substitute: the next readable sample, with its own label
    expected_path, expected_label = next((p, lab) for p, lab in ds.samples[i + 1 :] if p not in (garbage, truncated))
    assert label == expected_label
    assert np.array_equal(np.asarray(image), np.asarray(Image.open(expected_path).convert("RGB")))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a file already reported is not reported again
        ds[i]
    with pytest.warns(UserWarning, match=str(truncated)):
        bad = ds.verify()
    assert set(bad) == {garbage, truncated}
    assert ds.corrupt_files == [garbage, truncated]
    assert len(ds) == len(files) - 2 and garbage not in [p for p, _ in ds.samples]


def test_all_corrupt_raises(tmp_path: Path) -> None:
    folder = tmp_path / "split" / "a"
    folder.mkdir(parents=True)
    (folder / "x.png").write_bytes(b"junk")
    ds = ImageFolderDataset(tmp_path / "split", ["a"], skip_corrupt=True)
    with pytest.warns(UserWarning), pytest.raises(DataError, match=str(tmp_path / "split")):
        ds[0]


def test_dataset_missing_class_folder(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "data")
    with pytest.raises(DataError, match=str(root / "train" / "gnu")):
        ImageFolderDataset(root / "train", ["cat", "gnu"])


def test_build_datasets_folder(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "data", classes=("b", "a"))
    train, val, names = build_datasets(str(root), input_size=24, seed=0)
    assert names == ["a", "b"] and len(train) == 4 and len(val) == 4
    assert train[0][0].shape == (3, 24, 24) and val[3][0].shape == (3, 24, 24)
    with pytest.raises(DataError, match=str(root)):
        build_datasets(root, input_size=24, num_classes=10)


def test_build_datasets_builtin() -> None:
    train, val, names = build_datasets(
        None, input_size=32, builtin="pathfinder", builtin_train_samples=8, builtin_val_samples=4, seed=1
    )
    assert isinstance(train, PathfinderDataset) and isinstance(val, PathfinderDataset)
    assert (len(train), len(val)) == (8, 4) and names == ["disconnected", "connected"]
    assert train[0][0].shape == (3, 32, 32) and train.seed != val.seed
    with pytest.raises(DataError, match="built-in"):
        build_datasets(None, num_classes=1000)


def test_a_split_without_one_readable_image_is_named_with_counts(tmp_path: Path) -> None:
    """A folder of broken .jpg files and text files: the check says no image can be read, with how many files were
    passed over and an example of each kind, before any training starts."""
    root = make_folder(tmp_path / "data")
    for cls in ("cat", "dog"):
        for f in (root / "train" / cls).iterdir():
            f.unlink()
        (root / "train" / cls / "broken.jpg").write_bytes(b"not a jpeg")
        (root / "train" / cls / "notes.txt").write_text("hello")
    with pytest.raises(DataError) as err:
        check_image_folder(root)
    message = str(err.value)
    assert message.startswith(f"{root / 'train'}: no readable images: all 2 image file(s) fail to open")
    assert "broken.jpg" in message and "2 other file(s) are not images by name" in message and "notes.txt" in message
    # one readable image is enough for the check (unreadable ones are the loader's business, see skip_corrupt)
    write_image(root / "train" / "dog" / "ok.png", 50)
    assert check_image_folder(root) == ["cat", "dog"]
