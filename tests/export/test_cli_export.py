"""``hyenapixel export``: a run's checkpoint to ONNX with --verify on random and real images, and the one-line
errors (exit 2) for an unknown model, a missing checkpoint and an input size the model cannot take."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from PIL import Image
from safetensors.torch import save_file

from hyenapixel.cli.main import main
from hyenapixel.models import load_model

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

ARCH = {"depths": [1, 1, 1, 1], "dims": [16, 16, 32, 32]}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """A run's exported weights (safetensors with the model spec), a reduced hb_a_former with 7 classes."""
    torch.manual_seed(0)
    model = timm.create_model("hb_a_former_s4", num_classes=7, **ARCH)
    path = tmp_path_factory.mktemp("ck") / "best.safetensors"
    meta = {"model_spec": json.dumps({"name": "hb_a_former_s4", "kwargs": ARCH}), "num_classes": "7"}
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path), metadata=meta)
    return path


@pytest.mark.slow
def test_export_and_verify(checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "m.onnx"
    assert main(["export", "--checkpoint", str(checkpoint), "--img-size", "48", "64", "-o", str(out), "--verify"]) == 0
    text = capsys.readouterr().out
    assert "verify random: batch 4" in text and "verify built-in rendered images" in text
    assert "verification passed" in text
    # independent check of the file: onnxruntime against the checkpoint loaded the normal way
    import onnxruntime as ort

    model = load_model(checkpoint=checkpoint).eval()
    x = torch.randn(5, 3, 48, 64)
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    got = torch.from_numpy(session.run(None, {session.get_inputs()[0].name: x.numpy()})[0])
    with torch.no_grad():
        ref = model(x)
    assert got.shape == (5, 7) and (got - ref).abs().max().item() <= 1e-4


@pytest.mark.slow
def test_real_images_static_batch_and_failed_tolerance(
    checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    images = tmp_path / "images"
    (images / "sub").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i, folder in enumerate([images, images, images / "sub"]):
        Image.fromarray((rng.random((50, 70, 3)) * 255).astype("uint8")).save(folder / f"{i}.png")
    out = tmp_path / "m.onnx"
    argv = ["export", "--checkpoint", str(checkpoint), "--img-size", "40", "-o", str(out), "--static-batch"]
    assert main([*argv, "--verify", "--images", str(images)]) == 0
    assert "verify images (3 files): batch 3" in capsys.readouterr().out
    dims = onnx.load(str(out)).graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_value for d in dims] == [1, 3, 40, 40]
    # a tolerance no float32 computation meets: the command reports the failure with exit status 1
    assert main([*argv, "--verify", "--tolerance", "0", "--overwrite"]) == 1
    assert "verification FAILED" in capsys.readouterr().out


@pytest.mark.slow
def test_no_scan(checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    # at 112 px stage 1 has 28 x 28 tokens: by default its Hyena convolution runs image by image (an ONNX Scan);
    # --no-scan exports it batched. Both verify against PyTorch.
    counts = {}
    for flags in ([], ["--no-scan"]):
        out = tmp_path / f"m{len(flags)}.onnx"
        assert (
            main(["export", "--checkpoint", str(checkpoint), "--img-size", "112", "-o", str(out), "--verify", *flags])
            == 0
        )
        assert "verification passed" in capsys.readouterr().out
        counts[len(flags)] = [n.op_type for n in onnx.load(str(out)).graph.node].count("Scan")
    assert counts == {0: 1, 1: 0}


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--model", "hpx_formr_s18"], "unknown model 'hpx_formr_s18'; close matches: hpx_former_s18"),
        (["--model", "hpx_former_s4", "--checkpoint", "missing.pt"], "checkpoint not found: missing.pt"),
        (["--model", "hpx_former_s4", "--img-size", "16", "64"], "at least 32 pixels; export at 32 x 32 or more"),
        (["--model", "hpx_former_s4", "--img-size", "64", "64", "64"], "--input-size takes H or H W"),
        (["--model", "hpx_former_s4", "--model", "hb_former_s4"], "exactly one --model"),
        (["--model", "hpx_former_s4", "--images", "x"], "--images is used by --verify"),
        (
            ["--model", "hpx_former_s4", "--pretrained"],
            "hpx_former_s4 has no published pretrained weights. Use a local weights file instead",
        ),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    argv: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    assert main(["export", *argv, "-o", str(tmp_path / "m.onnx")]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "m.onnx").exists()


def test_help(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["export", "--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    assert "--img-size" in text and "--verify" in text and "--checkpoint" in text


def test_format_timm_writes_a_hub_folder_timm_loads(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """`export --format timm` of a run's checkpoint: a folder that timm's local-dir loader rebuilds bitwise; the ONNX
    options are refused with it, and so is a model without a checkpoint."""
    from safetensors.torch import load_file

    model = timm.create_model("hpx_former_s4", num_classes=2, dims=(8, 8, 16, 16))
    run = tmp_path / "best.safetensors"  # as a run writes it: the model spec in the metadata
    meta = {"model_spec": {"name": "hpx_former_s4", "kwargs": {"dims": [8, 8, 16, 16]}}, "num_classes": 2}
    save_file(model.state_dict(), run, metadata={k: json.dumps(v) for k, v in meta.items()})
    out = tmp_path / "hub"
    assert main(["export", "--format", "timm", "--checkpoint", str(run), "--output", str(out)]) == 0
    assert f"local-dir:{out}" in capsys.readouterr().out
    loaded = timm.create_model(f"local-dir:{out}", pretrained=True)
    saved = load_file(out / "model.safetensors")
    assert all(torch.equal(saved[k], v) for k, v in model.state_dict().items())
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in saved.items())
    assert main(["export", "--format", "timm", "--checkpoint", str(run), "--output", str(out), "--verify"]) == 2
    assert "--verify: ONNX options" in capsys.readouterr().err
    assert main(["export", "--format", "timm", "--model", "hpx_former_s4", "--output", str(tmp_path / "x")]) == 2
    assert "--format timm needs a --checkpoint" in capsys.readouterr().err
