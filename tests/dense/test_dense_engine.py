"""Metrics and the dense-train command: mIoU against a direct computation, the run folder, bad options."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from hyenapixel.cli.main import main
from hyenapixel.dense.engine import background_miou, evaluate_miou

pytest.importorskip("torchmetrics")


def numpy_miou(pred: np.ndarray, target: np.ndarray, num_classes: int) -> float:
    """Mean over classes of |pred = c and target = c| / |pred = c or target = c| (classes absent from both: 0)."""
    ious = []
    for c in range(num_classes):
        union = np.logical_or(pred == c, target == c).sum()
        ious.append(np.logical_and(pred == c, target == c).sum() / union if union else 0.0)
    return float(np.mean(ious))


class FixedLogits(nn.Module):
    def __init__(self, logits: torch.Tensor) -> None:
        super().__init__()
        self.logits = logits

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits


def test_miou_matches_direct_computation():
    g = torch.Generator().manual_seed(0)
    target = torch.randint(0, 4, (2, 16, 16), generator=g)
    logits = torch.randn(2, 4, 16, 16, generator=g)
    loader = [(torch.zeros(2, 3, 16, 16), target)]
    got = evaluate_miou(FixedLogits(logits), loader, 4)
    assert got == pytest.approx(numpy_miou(logits.argmax(1).numpy(), target.numpy(), 4), abs=1e-6)
    assert evaluate_miou(FixedLogits(nn.functional.one_hot(target, 4).permute(0, 3, 1, 2).float()), loader, 4) == 1.0
    base = background_miou(loader, 4)
    assert base == pytest.approx(numpy_miou(np.zeros_like(target.numpy()), target.numpy(), 4), abs=1e-6)


def test_dense_train_writes_run_folder(tmp_path, capsys):
    out = tmp_path / "run"
    rc = main(["dense-train", "--epochs", "1", "--train-samples", "8", "--val-samples", "4", "--image-size", "32",
               "--batch-size", "4", "--output", str(out)])  # fmt: skip
    assert rc == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["metric"] == "mIoU" and 0.0 <= summary["value"] <= 1.0 and 0.0 < summary["baseline"] < 1.0
    assert (out / "config.yaml").is_file() and (out / "metrics.csv").read_text().startswith("epoch,train_loss,val_miou")
    assert (out / "predictions.png").stat().st_size > 1000
    assert "baseline, predict background everywhere" in capsys.readouterr().out


@pytest.mark.slow
def test_dense_train_detection(tmp_path):
    out = tmp_path / "det"
    rc = main(["dense-train", "--task", "detection", "--epochs", "1", "--train-samples", "4", "--val-samples", "2",
               "--image-size", "32", "--batch-size", "2", "--output", str(out)])  # fmt: skip
    assert rc == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["metric"] == "mask AP" and {"val_bbox_map", "val_segm_map"} <= set(summary["history"][0])


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--image-size", "50"], "--input-size: must be a multiple of 32"),  # an alias of --input-size
        (["--model", "hpx_fromer_s4"], "unknown model 'hpx_fromer_s4'"),
        (["--model", "hb_former_s4"], "1D Hyena filters"),
        (["--batch-size", "1"], "--batch-size: must be >= 2"),
        (["--dims", "32,64"], "--dims: needs four positive channel counts"),
        (["--dims", "32", "64"], "--dims: needs four positive channel counts"),
        (["--dims", "a,b,c,d"], "--dims: invalid value"),
    ],
)
def test_dense_train_bad_options(argv, message, tmp_path, capsys):
    rc = main(["dense-train", "--output", str(tmp_path / "x"), *argv])
    err = capsys.readouterr().err
    assert rc == 2 and message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_dense_train_options_come_from_the_config() -> None:
    """Every field of DenseRunConfig is a flag with its default in the help, and both spellings of --dims and of the
    image size (--input-size, --img-size, --image-size) reach the same field."""
    import dataclasses

    from hyenapixel.cli.args import explicit_options
    from hyenapixel.cli.main import build_parser
    from hyenapixel.configio import build_config, flag_name
    from hyenapixel.dense.config import DenseRunConfig

    parser = build_parser()
    text = parser.parse_args(["dense-train"])._parser.format_help()
    for f in dataclasses.fields(DenseRunConfig):
        assert flag_name(f.name) in text
    for argv in (["--dims", "8,16,24,32", "--img-size", "96"], ["--dims", "8", "16", "24", "32", "--input-size", "96"]):
        args = parser.parse_args(["dense-train", *argv])
        cfg = build_config(DenseRunConfig, explicit_options(args, DenseRunConfig))
        assert cfg.dims == (8, 16, 24, 32) and cfg.input_size == 96 and cfg.epochs == DenseRunConfig().epochs
    args = parser.parse_args(["dense-train", "--dims", "none"])
    assert build_config(DenseRunConfig, explicit_options(args, DenseRunConfig)).dims is None


class Oracle(nn.Module):
    """Returns the ground truth of the images it was built for, as a torchvision detector would in eval mode."""

    def __init__(self, targets: list[dict]) -> None:
        super().__init__()
        self.targets = targets

    def forward(self, images: list[torch.Tensor]) -> list[dict]:
        return [
            {
                "boxes": t["boxes"],
                "labels": t["labels"],
                "scores": torch.ones(len(t["labels"])),
                "masks": t["masks"][:, None].float(),
            }
            for t in self.targets
        ]


def test_coco_ap_of_perfect_and_trivial_predictions():
    pytest.importorskip("pycocotools")
    from hyenapixel.data.shapes import ShapesDataset, collate_detection
    from hyenapixel.dense.engine import evaluate_coco_ap, full_image_ap

    images, targets = collate_detection([ShapesDataset(4, image_size=48, seed=2)[i] for i in range(4)])
    loader = [(images, targets)]
    perfect = evaluate_coco_ap(Oracle(targets), loader)
    assert perfect["bbox_map"] == pytest.approx(1.0) and perfect["segm_map"] == pytest.approx(1.0)
    trivial = full_image_ap(loader, 4)
    assert 0.0 <= trivial["bbox_map"] < 0.2 and 0.0 <= trivial["segm_map"] < 0.2
