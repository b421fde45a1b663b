"""What the command line does with input a user gets wrong: nothing saved is overwritten or lost, every problem is
one line that names what to change, and checks that can run before the work do (export, analysis tools,
dense-train, the console script itself)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import timm
from PIL import Image

from hyenapixel.cli.main import main


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def _run(argv: list[str], capsys: pytest.CaptureFixture) -> tuple[int, str]:
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out + captured.err


EXPORT = ["export", "--model", "hpx_former_s4", "--img-size", "32"]


def test_export_never_replaces_a_file_unasked(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    kept = tmp_path / "model.onnx"
    kept.write_bytes(b"an earlier export")
    code, text = _run([*EXPORT, "--output", str(kept)], capsys)
    assert code == 2 and "exists" in text and "--overwrite" in text and "Traceback" not in text
    assert kept.read_bytes() == b"an earlier export"


def test_export_refuses_to_write_over_its_own_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    ck = tmp_path / "weights.pth"
    ck.write_bytes(b"weights")
    for extra in ([], ["--overwrite"]):  # not even when replacing files is allowed
        code, text = _run([*EXPORT[:3], "--checkpoint", str(ck), "--output", str(ck), *extra], capsys)
        assert code == 2 and "is the --checkpoint file" in text
        assert ck.read_bytes() == b"weights"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--opset", "5"], "opset 5 is not supported"),
        (["--tolerance", "-1"], "--tolerance must be >= 0"),
        (["--verify", "--images", "no/such/folder"], "image path not found"),
    ],
)
def test_export_checks_options_before_exporting(
    tmp_path: Path, capsys: pytest.CaptureFixture, extra: list[str], message: str
) -> None:
    out = tmp_path / "m.onnx"
    code, text = _run([*EXPORT, "--output", str(out), *extra], capsys)
    assert code == 2 and message in text
    assert not out.exists()  # nothing was exported before the problem was found


def test_checkpoint_and_pretrained_of_one_model_conflict(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit):
        main([*EXPORT, "--checkpoint", "a.pth", "--pretrained", "--output", "x.onnx"])
    assert "--checkpoint and --pretrained conflict" in capsys.readouterr().err


def test_analysis_tools_keep_an_earlier_report(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "macs"
    argv = ["macs", "--model", "hpx_former_s4", "--img-size", "32", "--output", str(out)]
    assert main(argv) == 0
    before = _md5(out / "macs.json")
    (out / "notes.txt").write_text("mine")
    code, text = _run(argv, capsys)
    assert code == 2 and "holds the report of an earlier macs run" in text and "--overwrite" in text
    assert _md5(out / "macs.json") == before
    assert main([*argv, "--overwrite"]) == 0
    assert (out / "notes.txt").read_text() == "mine"  # only the tool's own files are replaced


def test_analysis_output_is_checked_before_the_work(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    a_file = tmp_path / "afile"
    a_file.write_text("x")
    code, text = _run(["erf", "--model", "hpx_former_s4", "--img-size", "64", "--output", str(a_file)], capsys)
    assert code == 2 and "exists and is not a folder" in text
    assert "not reached" not in text and "%" not in text  # no ERF was computed first


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["bench", "--device", "tpu0", "--sizes", "32"], "--device tpu0: not a device name"),
        (["bench", "--batch-size", "0", "--sizes", "32"], "--batch-size must be at least 1"),
        (["kernel-size", "--model", "hpx_former_s4", "--img-size", "0"], "--input-size must be positive"),
        (["bench", "--mode", "models", "--sizes", "64"], "--sizes is an option of --mode mixers; this is"),
        (["bench", "--model", "hpx_former_s4", "--sizes", "64"], "--model is an option of --mode models"),
        (["kernel-size", "--model", "hpx_former_s4", "--workers", "-1"], "--workers must be >= 0"),
    ],
)
def test_tool_options_are_checked(tmp_path: Path, capsys: pytest.CaptureFixture, argv: list[str], message: str) -> None:
    code, text = _run([*argv, "--output", str(tmp_path / "out")], capsys)
    assert code == 2 and message in text and "Traceback" not in text


def test_same_model_twice_gets_two_labels(tmp_path: Path) -> None:
    from hyenapixel.cli.model_args import ModelRequest, build_models

    built = build_models([ModelRequest("hpx_former_s4"), ModelRequest("hpx_former_s4"), ModelRequest("resnet18")])
    assert [req.label for req, _ in built] == ["hpx_former_s4", "hpx_former_s4 #2", "resnet18"]


def test_dense_train_keeps_an_earlier_run(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from hyenapixel.dense.builtin import DenseRunConfig, _output_folder

    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.csv").write_text("epoch\n1\n")
    code, text = _run(["dense-train", "--epochs", "1", "--output", str(run)], capsys)
    assert code == 2 and "already holds a run (metrics.csv)" in text and "--overwrite" in text
    assert (run / "metrics.csv").read_text() == "epoch\n1\n"
    assert _output_folder(DenseRunConfig(output=str(run), overwrite=True)) == run
    assert _output_folder(DenseRunConfig(output=str(tmp_path / "new" / "run"))).is_dir()


def test_unknown_command_suggests_the_close_one(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["trian"])
    assert exc.value.code == 2
    assert "unknown command 'trian'; did you mean train?" in capsys.readouterr().err


def test_file_system_errors_are_one_line(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    import hyenapixel.cli.macs as macs

    def refuse(args: object) -> int:
        raise PermissionError(13, "Permission denied", "/readonly/macs.json")

    monkeypatch.setattr(macs, "run", refuse)
    code, text = _run(["macs"], capsys)
    assert code == 2
    assert text.strip() == "hyenapixel macs: error: Permission denied: /readonly/macs.json"


def test_sixteen_bit_images_keep_their_range(tmp_path: Path) -> None:
    from hyenapixel.data import to_rgb

    values = (np.arange(16 * 16).reshape(16, 16) * 257).astype(np.uint16)  # 0 .. 65535 in steps of 257
    Image.fromarray(values).save(tmp_path / "g16.png")
    with Image.open(tmp_path / "g16.png") as im:
        rgb = np.asarray(to_rgb(im))
    assert rgb.dtype == np.uint8 and rgb.shape == (16, 16, 3)
    np.testing.assert_array_equal(rgb[..., 0], np.arange(256).reshape(16, 16))  # v * 257 -> v, not clipped at 255
    with Image.open(tmp_path / "g16.png") as im:
        assert np.asarray(im.convert("RGB"))[..., 0].mean() > 250  # what plain PIL conversion gives instead


def test_kernel_size_checks_every_model_and_folder_first(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    base = ["kernel-size", "--model", "hpx_former_s4", "--img-size", "64", "--output", str(tmp_path / "o")]
    code, text = _run([*base, "--model", "hb_former_s4", "--stages", "5"], capsys)
    assert code == 2 and "hpx_former_s4 has no long-convolution mixer in stage 5 (counted from 1)" in text
    assert "mean coverage" not in text  # refused before the first model was measured
    code, text = _run([*base, "--data", str(tmp_path / "no_such")], capsys)
    assert code == 2 and "data folder not found" in text


def test_explain_takes_each_image_once_and_a_positive_std(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from hyenapixel.analysis import load_images

    for i in range(2):
        Image.fromarray(np.full((40, 40, 3), 60 * i, np.uint8)).save(tmp_path / f"{i}.png")
    assert load_images(tmp_path, size=32, num=5).names == ["0.png", "1.png", "0.png", "1.png", "0.png"]
    assert load_images(tmp_path, size=32, num=5, cycle=False).names == ["0.png", "1.png"]
    argv = ["explain", "--model", "hpx_former_s4", "--images", str(tmp_path), "--std", "1", "0", "1"]
    code, text = _run(argv, capsys)
    assert code == 2 and "--std must be positive" in text
    code, text = _run([*argv[:5], "--lam-factor", "0.5"], capsys)
    assert code == 2 and text.strip() == "hyenapixel explain: error: --lam-factor must be > 1, got 0.5"


def test_checkpoint_errors_name_the_problem(tmp_path: Path) -> None:
    from hyenapixel.errors import shorten as _shorten
    from hyenapixel.models import WeightsError, read_checkpoint

    with pytest.raises(WeightsError, match="is a folder; give a checkpoint file in it"):
        read_checkpoint(tmp_path)
    long = "First sentence. " + "x" * 300
    assert _shorten(long) == "First sentence."
    assert _shorten("y" * 300) == "y" * 197 + "..." and _shorten("short") == "short"


def test_to_onnx_replaces_only_onnx_files(tmp_path: Path) -> None:
    pytest.importorskip("onnxscript")
    from hyenapixel.export import ExportError, to_onnx

    model = timm.create_model("hpx_former_s4", depths=(1, 1, 1, 1), dims=(8, 8, 16, 16)).eval()
    for name in ("weights.pth", "best.safetensors", "notes"):
        kept = tmp_path / name
        kept.write_bytes(b"keep me")
        with pytest.raises(ExportError, match="is not an .onnx file"):
            to_onnx(model, kept, 32)
        assert kept.read_bytes() == b"keep me"
    earlier = tmp_path / "model.onnx"
    earlier.write_bytes(b"an earlier export")
    assert to_onnx(model, earlier, 32) == earlier and earlier.read_bytes() != b"an earlier export"
