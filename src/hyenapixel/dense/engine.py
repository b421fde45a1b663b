"""Training and evaluation for the built-in dense run (a CPU-sized stand-in for paper Section 4.3): UPerNet scored by
mean IoU (torchmetrics' ``MulticlassJaccardIndex``) and Mask R-CNN scored by COCO AP (torchmetrics'
``MeanAveragePrecision`` on pycocotools), each against the trivial baseline computed with the same metric. The
optimizer steps and the learning-rate schedule are the training package's (:mod:`hyenapixel.models.training`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import torch
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from torch import nn
from torch.utils.data import DataLoader

from hyenapixel.errors import UserError
from hyenapixel.models.evaluation import model_device
from hyenapixel.models.training import LRSchedule, train_one_epoch

__all__ = [
    "DenseTrainResult",
    "background_miou",
    "evaluate_coco_ap",
    "evaluate_miou",
    "full_image_ap",
    "normalise",
    "segmentation_loader",
    "train_dense",
]


def _need(module: str, what: str):  # noqa: ANN202 - returns a module
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise UserError(f"{what} needs {module.split('.')[0]}: pip install 'hyenapixel[dense]'") from exc


@dataclass
class DenseTrainResult:
    """What a built-in dense run reports."""

    metric: str
    value: float
    baseline: float
    history: list[dict] = field(default_factory=list)
    seconds: float = 0.0


def normalise(images: torch.Tensor) -> torch.Tensor:
    """ImageNet mean/std normalisation of images in [0, 1] (what the backbones were trained on).

    Shape:
        (B, 3, H, W) -> (B, 3, H, W)
    """
    mean = torch.tensor(IMAGENET_DEFAULT_MEAN, dtype=images.dtype).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_DEFAULT_STD, dtype=images.dtype).view(1, 3, 1, 1)
    return (images - mean) / std


def _collate_semantic(batch: list) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.stack([b[0] for b in batch]), torch.stack([b[1]["semantic"] for b in batch])


def segmentation_loader(dataset, batch_size: int, shuffle: bool, seed: int = 0) -> DataLoader:  # noqa: ANN001
    """Batches ``(images (B, 3, H, W) in [0, 1], semantic maps (B, H, W))`` of a :class:`ShapesDataset`."""
    g = torch.Generator().manual_seed(seed)
    return DataLoader(
        dataset, batch_size, shuffle=shuffle, collate_fn=_collate_semantic, generator=g, drop_last=shuffle
    )


@torch.no_grad()
def evaluate_miou(model: nn.Module, loader: Iterable, num_classes: int) -> float:
    """Mean IoU over ``num_classes`` (background included) of ``model``'s argmax predictions on ``loader``."""
    tm = _need("torchmetrics.classification", "the mIoU evaluation")
    metric = tm.MulticlassJaccardIndex(num_classes=num_classes, average="macro")
    was_training = model.training
    model.eval()
    for images, semantic in loader:
        metric.update(model(normalise(images)).argmax(1), semantic)
    model.train(was_training)
    return float(metric.compute())


def background_miou(loader: Iterable, num_classes: int) -> float:
    """The trivial baseline: mean IoU of predicting background (class 0) everywhere, with the same metric."""
    tm = _need("torchmetrics.classification", "the mIoU evaluation")
    metric = tm.MulticlassJaccardIndex(num_classes=num_classes, average="macro")
    for _, semantic in loader:
        metric.update(torch.zeros_like(semantic), semantic)
    return float(metric.compute())


def _coco_metric():  # noqa: ANN202
    det = _need("torchmetrics.detection", "the COCO AP evaluation")
    _need("pycocotools", "the COCO AP evaluation")
    return det.MeanAveragePrecision(iou_type=("bbox", "segm"), backend="pycocotools")


def _coco_targets(targets: list[dict]) -> list[dict]:
    return [{"boxes": t["boxes"], "labels": t["labels"], "masks": t["masks"].bool()} for t in targets]


def _coco_scores(metric) -> dict[str, float]:  # noqa: ANN001
    out = metric.compute()
    return {k: float(out[k]) for k in ("bbox_map", "bbox_map_50", "segm_map", "segm_map_50")}


@torch.no_grad()
def evaluate_coco_ap(model: nn.Module, loader: Iterable) -> dict[str, float]:
    """COCO box and mask AP (IoU 0.5:0.95) and AP50 of a torchvision Mask R-CNN on ``loader``."""
    metric = _coco_metric()
    was_training = model.training
    model.eval()
    for images, targets in loader:
        preds = [
            {"boxes": p["boxes"], "scores": p["scores"], "labels": p["labels"], "masks": p["masks"][:, 0] > 0.5}
            for p in model(images)
        ]
        metric.update(preds, _coco_targets(targets))
    model.train(was_training)
    return _coco_scores(metric)


def full_image_ap(loader: Iterable, num_classes: int) -> dict[str, float]:
    """The trivial baseline: for every image, one whole-image box and mask per class, scored by the same metric."""
    metric = _coco_metric()
    for images, targets in loader:
        preds = []
        for image in images:
            h, w = image.shape[-2:]
            k = num_classes - 1
            preds.append(
                {
                    "boxes": torch.tensor([[0.0, 0.0, w, h]]).repeat(k, 1),
                    "scores": torch.ones(k),
                    "labels": torch.arange(1, num_classes),
                    "masks": torch.ones(k, h, w, dtype=torch.bool),
                }
            )
        metric.update(preds, _coco_targets(targets))
    return _coco_scores(metric)


def _segmentation_loss(model: nn.Module, images: torch.Tensor, semantic: torch.Tensor) -> torch.Tensor:
    return nn.functional.cross_entropy(model(normalise(images)), semantic)


def _detection_loss(model: nn.Module, images: list[torch.Tensor], targets: list[dict]) -> torch.Tensor:
    loss_dict = model(images, [{k: t[k] for k in ("boxes", "labels", "masks")} for t in targets])
    return sum(loss_dict.values())


class _Task(NamedTuple):
    """What a dense task trains on and how it is scored: its loss, the validation numbers of a row, the key of the
    one reported, the trivial baseline and the log line."""

    metric: str
    key: str
    loss: Callable[[nn.Module, Any, Any], torch.Tensor]
    scores: Callable[[nn.Module, Iterable, int], dict[str, float]]
    baseline: Callable[[Iterable, int], float]
    describe: Callable[[dict], str]


_TASKS = {
    "segmentation": _Task(
        "mIoU",
        "val_miou",
        _segmentation_loss,
        lambda model, loader, num_classes: {"val_miou": evaluate_miou(model, loader, num_classes)},
        background_miou,
        lambda row: f"val mIoU {row['val_miou']:.4f}",
    ),
    "detection": _Task(
        "mask AP",
        "val_segm_map",
        _detection_loss,
        lambda model, loader, _: {f"val_{k}": v for k, v in evaluate_coco_ap(model, loader).items()},
        lambda loader, num_classes: full_image_ap(loader, num_classes)["segm_map"],
        lambda row: f"box AP {row['val_bbox_map']:.4f}  mask AP {row['val_segm_map']:.4f}",
    ),
}


def train_dense(
    task: str,
    model: nn.Module,
    train_loader: DataLoader,
    val_loader: DataLoader,
    *,
    num_classes: int,
    epochs: int,
    lr: float,
    weight_decay: float = 0.05,
    warmup_fraction: float = 0.1,
    log: Callable[[str], None] = print,
) -> DenseTrainResult:
    """Train a semantic segmenter (``task="segmentation"``: cross-entropy, scored by mIoU) or a torchvision Mask
    R-CNN (``"detection"``: the sum of its losses, scored by COCO mask AP) and evaluate after every epoch.

    AdamW with a linear warm-up from ``lr / W`` to ``lr`` over the first ``W`` steps (``warmup_fraction`` of all),
    then a cosine decay to zero, stepped by :func:`hyenapixel.models.training.train_one_epoch`.

    Shape:
        segmentation: (B, 3, H, W) images in [0, 1] (normalised here) -> (B, num_classes, H, W) logits;
        detection: lists of (3, H, W) images and target dicts, as torchvision's detectors take them.
    """
    t = _TASKS[task]
    baseline = t.baseline(val_loader, num_classes)
    start = time.perf_counter()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr, weight_decay=weight_decay)
    total = epochs * len(train_loader)
    warmup = max(1, int(warmup_fraction * total))
    schedule = LRSchedule(lr, total, warmup_epochs=warmup - 1, warmup_lr=lr / warmup)  # counted in steps
    history = []
    for epoch in range(epochs):
        stats = train_one_epoch(model, train_loader, optimizer, t.loss, schedule, device=model_device(model),
                                epoch=epoch + 1)  # fmt: skip
        row = {"epoch": epoch + 1, "train_loss": stats.train_loss, **t.scores(model, val_loader, num_classes)}
        row["seconds"] = round(time.perf_counter() - start, 1)
        history.append(row)
        log(f"epoch {epoch + 1}/{epochs}  loss {row['train_loss']:.4f}  {t.describe(row)}  ({row['seconds']}s)")
    return DenseTrainResult(t.metric, history[-1][t.key], baseline, history, time.perf_counter() - start)
