"""The analysis layer's shared plumbing: images, output folders, reports and the input-size check."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import timm
import torch
from PIL import Image

from hyenapixel.analysis import (
    BUILTIN_IMAGES,
    check_image_size,
    load_images,
    output_dir,
    resize_crop,
    save_report,
    to_jsonable,
)
from hyenapixel.errors import UserError

pytest.importorskip("skimage")


def test_builtin_images_normalised_and_cycled():
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    images = load_images(size=(40, 56), num=len(BUILTIN_IMAGES) + 3, mean=mean, std=std)
    n = len(BUILTIN_IMAGES) + 3
    assert images.tensor.shape == images.raw.shape == (n, 3, 40, 56)
    assert images.tensor.dtype == torch.float32
    assert 0 <= images.raw.min() and images.raw.max() <= 1
    m, s = torch.tensor(mean).view(1, 3, 1, 1), torch.tensor(std).view(1, 3, 1, 1)
    torch.testing.assert_close(images.tensor * s + m, images.raw)
    assert images.names[: len(BUILTIN_IMAGES)] == list(BUILTIN_IMAGES)  # every listed photo loads offline
    assert images.names[-3:] == list(BUILTIN_IMAGES[:3])
    torch.testing.assert_close(images.raw[-3:], images.raw[:3])
    cam = images.raw[images.names.index("camera")]  # a grayscale photo: the three channels are equal
    torch.testing.assert_close(cam[0], cam[1])
    torch.testing.assert_close(cam[0], cam[2])
    assert len(load_images(size=32, num=2)) == 2


def test_resize_crop_keeps_the_centre():
    # a 20 x 60 image whose middle third is white: covering 30 x 30 scales by 1.5 and keeps only the white middle
    image = torch.zeros(3, 20, 60)
    image[:, :, 20:40] = 1
    out = resize_crop(image, 30)
    assert out.shape == (3, 30, 30)
    assert out[:, :, 2:-2].min() > 0.99
    # same size: the identity
    x = torch.rand(3, 17, 23)
    torch.testing.assert_close(resize_crop(x, (17, 23)), x)


def _write(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def test_folder_read_recursively(tmp_path):
    red = np.zeros((30, 40, 3), np.uint8)
    red[..., 0] = 255
    gray = np.full((50, 50), 128, np.uint8)
    _write(tmp_path / "b" / "x.png", red)
    _write(tmp_path / "a.JPG", np.stack([gray] * 3, -1))
    _write(tmp_path / "c" / "d" / "g.bmp", gray)
    (tmp_path / "notes.txt").write_text("not an image")
    images = load_images(tmp_path, size=16, mean=(0, 0, 0), std=(1, 1, 1))
    assert images.names == ["a.JPG", "b/x.png", "c/d/g.bmp"]
    torch.testing.assert_close(images.raw[1], torch.tensor([1.0, 0, 0]).view(3, 1, 1).expand(3, 16, 16))
    torch.testing.assert_close(images.raw[2], torch.full((3, 16, 16), 128 / 255))
    torch.testing.assert_close(images.tensor, images.raw)
    assert load_images(tmp_path, size=16, num=5).names[3:] == ["a.JPG", "b/x.png"]


def test_folder_errors(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        load_images(tmp_path / "missing")
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    with pytest.raises(UserError, match="no images found"):
        load_images(tmp_path / "empty")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "broken.png").write_bytes(b"not a png")
    with pytest.raises(UserError, match="broken.png"):
        load_images(tmp_path / "bad")
    with pytest.raises(UserError, match="positive integer"):
        load_images(size=32, num=0)
    with pytest.raises(UserError, match="image size"):
        load_images(size=(32, 0))


def test_output_dir_never_overwrites(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    first = output_dir("erf")
    assert first.parent == tmp_path / "analysis" or first.parent.resolve() == (tmp_path / "analysis").resolve()
    assert first.name.startswith("erf-") and not first.exists()  # created when the report is written
    first.mkdir(parents=True)
    (first / "erf.json").write_text("{}")
    stamp = first.name
    # the same second again: a new folder, the old one untouched
    import hyenapixel.analysis.report as report

    monkeypatch.setattr(report, "timestamp", lambda: stamp[len("erf-") :])
    second = output_dir("erf")
    assert second != first and second.name == f"{stamp}-2" and (first / "erf.json").read_text() == "{}"
    explicit = output_dir("erf", tmp_path / "given" / "deep")
    assert explicit == tmp_path / "given" / "deep" and not explicit.exists()
    explicit.mkdir(parents=True)
    (explicit / "notes.txt").write_text("mine")
    assert output_dir("erf", explicit) == explicit  # explicit: used even if not empty ...
    with pytest.raises(UserError, match="holds the report of an earlier erf run"):
        output_dir("erf", first)  # ... but not over a report of the same tool
    assert output_dir("erf", first, overwrite=True) == first and (first / "erf.json").read_text() == "{}"
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError, match="not a folder"):
        output_dir("erf", tmp_path / "file")
    with pytest.raises(UserError, match="is a file, not a folder"):
        output_dir("erf", tmp_path / "file" / "below")


def test_a_failed_tool_leaves_no_output_folder(tmp_path, monkeypatch):
    """The folder appears with the report, not before: a run that fails after choosing it leaves nothing behind."""
    from matplotlib.figure import Figure

    monkeypatch.chdir(tmp_path)
    out = output_dir("kernels")
    assert not (tmp_path / "analysis").exists()
    json_path, png_path = save_report(out, "kernels", {"a": 1}, Figure())
    assert json_path.parent == out and out.is_dir() and png_path.is_file()


@dataclasses.dataclass
class _Result:
    name: str
    values: torch.Tensor
    ratio: float
    extra: dict


def test_save_report_writes_plain_json_and_png(tmp_path):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(2, 1.5), dpi=50)
    fig.add_subplot().plot([0, 1], [1, 0])
    result = _Result("m", torch.arange(3.0), float("nan"), {"a": np.float32(0.5), "b": (1, np.int64(2))})
    json_path, png_path = save_report(tmp_path / "out", "tool", [result], fig)
    assert json_path == tmp_path / "out" / "tool.json" and png_path == tmp_path / "out" / "tool.png"
    data = json.loads(json_path.read_text())
    assert data == [{"name": "m", "values": [0.0, 1.0, 2.0], "ratio": None, "extra": {"a": 0.5, "b": [1, 2]}}]
    with Image.open(png_path) as im:
        assert im.format == "PNG" and im.width > 20 and im.height > 20
    with pytest.raises(TypeError):
        to_jsonable(object())


def test_check_image_size_matches_what_the_model_runs():
    model = timm.create_model("hpx_former_s4", dims=(8, 8, 16, 16), num_classes=3).eval()
    assert check_image_size(model, (32, 47)) == (32, 47)
    with torch.inference_mode():
        assert model(torch.zeros(1, 3, 32, 47)).shape == (1, 3)  # the smallest accepted size really runs
    with pytest.raises(UserError, match="at least 32 px"):
        check_image_size(model, 31)
    with pytest.raises(ValueError):  # and the model itself refuses what the check refuses
        model(torch.zeros(1, 3, 31, 64))
    vit = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=2, depth=1)
    assert check_image_size(vit, 224) == (224, 224)
    with pytest.raises(UserError, match="only 224x224"):
        check_image_size(vit, 256)


def test_optional_frameworks_stay_lazy():
    import subprocess
    import sys

    code = (
        "import sys, hyenapixel.analysis; from hyenapixel.cli.main import build_parser; build_parser(); "
        "print(sorted(k for k in ('matplotlib', 'fvcore', 'skimage') if k in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_save_report_writes_the_weights_under_the_figure(tmp_path):
    from matplotlib.figure import Figure

    fig = Figure()
    fig.subplots().plot([0, 1])
    weights = {"hpx_former_s4": "random initialisation", "hpx_former_s4 (best.pt)": "checkpoint best.pt (epoch 6)"}
    save_report(tmp_path, "kernels", {"a": 1}, fig, weights=weights)
    (text,) = [t.get_text() for t in fig.texts]
    assert text == (
        "weights: hpx_former_s4: random initialisation; hpx_former_s4 (best.pt): checkpoint best.pt (epoch 6)"
    )
