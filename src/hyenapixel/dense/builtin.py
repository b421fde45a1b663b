"""The built-in dense run: UPerNet (segmentation_models_pytorch) or Mask R-CNN (torchvision) with a HyenaPixel
backbone, trained from scratch on the generated shapes task (:mod:`hyenapixel.data.shapes`) on a CPU (the default
run's result and wall time: docs/dense.md): a small, checkable version of the paper's Section 4.3 setups. Writes a
run folder: ``config.yaml``, ``metrics.csv``, ``summary.json`` and ``predictions.png``.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn

from hyenapixel.data.shapes import SHAPE_CLASSES, ShapesDataset, collate_detection
from hyenapixel.dense.backbones import DenseInputError
from hyenapixel.dense.config import TASKS, DenseRunConfig
from hyenapixel.dense.detection import mask_rcnn
from hyenapixel.dense.engine import segmentation_loader, train_dense
from hyenapixel.dense.segmentation import upernet
from hyenapixel.ops.parallel import intra_op_threads
from hyenapixel.paths import held_files, numbered_folder, timestamp

__all__ = ["TASKS", "DenseRunConfig", "run_builtin"]

log = logging.getLogger("hyenapixel.dense")


def _model(cfg: DenseRunConfig) -> nn.Module:
    policy = dict(kernel_policy=cfg.kernel_policy, img_size=cfg.input_size if cfg.kernel_policy == "cover" else None)
    arch = {"dims": tuple(cfg.dims)} if cfg.dims is not None and cfg.checkpoint is None else {}
    if cfg.task == "segmentation":
        return upernet(
            cfg.model,
            len(SHAPE_CLASSES),
            checkpoint=cfg.checkpoint,
            decoder_channels=cfg.decoder_channels,
            backbone_kwargs=arch,
            **policy,
        )
    return mask_rcnn(
        cfg.model,
        len(SHAPE_CLASSES),
        checkpoint=cfg.checkpoint,
        backbone_kwargs=arch,
        rpn_pre_nms_top_n_train=500,
        rpn_post_nms_top_n_train=250,
        box_batch_size_per_image=64,
        min_size=cfg.input_size,
        max_size=cfg.input_size,
        fpn_channels=cfg.decoder_channels,
        rpn_anchor_generator=_small_anchors(),
        box_detections_per_img=20,
        **policy,
    )


def _small_anchors():  # noqa: ANN202
    """Anchors for objects of 6-40 px (torchvision's 32-512 defaults are sized for COCO at 800 px)."""
    from torchvision.models.detection.anchor_utils import AnchorGenerator

    return AnchorGenerator(sizes=((8,), (16,), (32,), (64,), (128,)), aspect_ratios=((0.5, 1.0, 2.0),) * 5)


def _write_csv(path: Path, rows: list[dict]) -> None:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


#: Files that mark a folder as holding a run (of ``dense-train`` or of ``hyenapixel train``).
RUN_MARKERS = ("config.yaml", "metrics.csv", "summary.json", "predictions.png", "last.pt", "best.pt")


def _output_folder(cfg: DenseRunConfig) -> Path:
    """The run folder, created: ``cfg.output``, refused if it holds a run (unless ``cfg.overwrite``), or a new
    ``runs/<time>-dense-<task>-<model>[-N]``."""
    if cfg.output is None:
        out = numbered_folder(Path("runs") / f"{timestamp()}-dense-{cfg.task}-{cfg.model}")
    else:
        out = Path(cfg.output)
        if out.exists() and not out.is_dir():
            raise DenseInputError(f"--output {out} is a file; give a folder")
        held = [path.name for path in held_files(out, RUN_MARKERS)]
        if held and not cfg.overwrite:
            raise DenseInputError(
                f"--output {out} already holds a run ({', '.join(held)}); choose another --output or pass "
                "--overwrite to replace its files"
            )
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DenseInputError(f"cannot create the run folder {out}: {exc.strerror or exc}") from None
    return out


def run_builtin(cfg: DenseRunConfig) -> dict[str, Any]:
    """Train and evaluate as configured, write the run folder, return the summary. Torch runs on ``cfg.threads``
    intra-op threads during the run; the process's thread count is restored afterwards."""
    with intra_op_threads(cfg.threads):
        return _run(cfg)


def _run(cfg: DenseRunConfig) -> dict[str, Any]:
    import yaml

    out = _output_folder(cfg)
    torch.manual_seed(cfg.seed)
    record = dataclasses.asdict(cfg) | {"output": str(out)}
    if cfg.checkpoint is not None:
        record["dims"] = None  # the checkpoint's architecture is used, not --dims
    (out / "config.yaml").write_text(yaml.safe_dump(record, sort_keys=False))
    train_ds, val_ds = ShapesDataset.splits(
        cfg.train_samples, cfg.val_samples, seed=cfg.seed, image_size=cfg.input_size
    )
    model = _model(cfg)
    log.info("%s: %s with %s, %d train / %d val images of %d px", out, cfg.task, cfg.model, len(train_ds),
             len(val_ds), cfg.input_size)  # fmt: skip
    if cfg.task == "segmentation":
        train_loader = segmentation_loader(train_ds, cfg.batch_size, shuffle=True, seed=cfg.seed)
        val_loader = segmentation_loader(val_ds, cfg.batch_size, shuffle=False)
    else:
        g = torch.Generator().manual_seed(cfg.seed)
        from torch.utils.data import DataLoader

        train_loader = DataLoader(train_ds, cfg.batch_size, shuffle=True, collate_fn=collate_detection, generator=g)
        val_loader = DataLoader(val_ds, cfg.batch_size, collate_fn=collate_detection)
    result = train_dense(cfg.task, model, train_loader, val_loader, num_classes=len(SHAPE_CLASSES), epochs=cfg.epochs,
                         lr=cfg.lr, weight_decay=cfg.weight_decay, log=log.info)  # fmt: skip
    _write_csv(out / "metrics.csv", result.history)
    summary = {
        "task": cfg.task,
        "model": cfg.model,
        "metric": result.metric,
        "value": result.value,
        "baseline": result.baseline,
        "baseline_is": "predict background everywhere"
        if cfg.task == "segmentation"
        else "one whole-image box/mask per class",
        "seconds": round(result.seconds, 1),
        "torch_threads": cfg.threads,
        "output": str(out),
        "history": result.history,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    try:
        draw_predictions(model, val_ds, cfg.task, out / "predictions.png")
    except ImportError:
        log.warning("matplotlib is not installed: no predictions.png")
    return summary


@torch.no_grad()
def draw_predictions(model: nn.Module, dataset: ShapesDataset, task: str, path: Path, n: int = 4) -> Path:
    """A picture of ``n`` validation images: image, ground truth and prediction (segmentation maps, or the detected
    instances' masks and boxes with score >= 0.5). Drawn on an off-screen Agg canvas: matplotlib's backend and
    pyplot's figures are left alone."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.colors import ListedColormap
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    from hyenapixel.dense.engine import normalise

    cmap = ListedColormap(["black", "tab:red", "tab:green", "tab:blue"])
    n = min(n, len(dataset))
    model.eval()
    fig = Figure(figsize=(2.2 * n, 6.6))
    FigureCanvasAgg(fig)
    axes = fig.subplots(3, n, squeeze=False)
    for j in range(n):
        image, target = dataset[j]
        axes[0, j].imshow(image.permute(1, 2, 0).numpy())
        axes[1, j].imshow(target["semantic"].numpy(), cmap=cmap, vmin=0, vmax=3, interpolation="nearest")
        if task == "segmentation":
            pred = model(normalise(image[None])).argmax(1)[0]
        else:
            det = model([image])[0]
            keep = det["scores"] >= 0.5
            pred = torch.zeros(image.shape[-2:], dtype=torch.long)
            for mask, label in zip(det["masks"][keep][:, 0].flip(0), det["labels"][keep].flip(0)):
                pred[mask > 0.5] = label
            for (x0, y0, x1, y1), label in zip(det["boxes"][keep].tolist(), det["labels"][keep].tolist()):
                axes[2, j].add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, lw=1, ec=cmap(label)))
        axes[2, j].imshow(pred.numpy(), cmap=cmap, vmin=0, vmax=3, interpolation="nearest")
    for ax, title in zip(axes[:, 0], ("image", "ground truth", "prediction")):
        ax.set_ylabel(title)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle("red: circle, green: square, blue: triangle", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return path
