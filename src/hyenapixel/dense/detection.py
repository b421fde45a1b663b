"""torchvision Mask R-CNN and Faster R-CNN with a HyenaPixel backbone and FPN (paper Section 4.3, "Object detection
and instance segmentation on MS COCO": the FPN takes the four normalised stage outputs).

The paper's own numbers come from MMDetection's Cascade Mask R-CNN (see :mod:`hyenapixel.dense.mm`); these builders
give the same backbone + FPN inside torchvision's two-stage detectors, which need no extra framework.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from hyenapixel.dense.backbone import DenseBackbone, DenseInputError, KernelPolicy, backbone, padded_size
from hyenapixel.models import data_config

__all__ = ["BackboneWithFPN", "faster_rcnn", "mask_rcnn"]


class BackboneWithFPN(nn.Module):
    """A :class:`DenseBackbone` followed by torchvision's FPN with an extra max-pooled level (P2-P6).

    Attributes:
        out_channels: channels of every pyramid level (torchvision's detectors read this).

    Shape:
        (B, C_in, H, W) -> {"0": (B, out_channels, h_0, w_0), ..., "3": ..., "pool": (B, out_channels, h_3/2, w_3/2)}
    """

    def __init__(self, body: DenseBackbone, out_channels: int = 256) -> None:
        from torchvision.ops.feature_pyramid_network import FeaturePyramidNetwork, LastLevelMaxPool

        super().__init__()
        self.body = body
        self.fpn = FeaturePyramidNetwork(body.out_channels, out_channels, extra_blocks=LastLevelMaxPool())
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        feats = self.body(x)
        return self.fpn(OrderedDict((str(i), f) for i, f in enumerate(feats)))


def _backbone_with_fpn(
    name: str | DenseBackbone,
    checkpoint: str | None,
    pretrained: bool,
    kernel_policy: str | KernelPolicy,
    img_size: int | Sequence[int] | None,
    max_size: int,
    fpn_channels: int,
    backbone_kwargs: dict[str, Any] | None,
) -> BackboneWithFPN:
    if isinstance(name, DenseBackbone):
        if checkpoint is not None or pretrained or backbone_kwargs:
            raise DenseInputError("give the backbone's weights and options to dense.backbone(), not with an instance")
        body = name
    else:
        if kernel_policy == "cover" and img_size is None:
            img_size = padded_size(max_size)  # resized long side <= max_size, batches padded to a multiple of 32
        body = backbone(
            name,
            checkpoint=checkpoint,
            pretrained=pretrained,
            kernel_policy=kernel_policy,
            img_size=img_size,
            **(backbone_kwargs or {}),
        )
    if len(body.out_channels) != 4:
        raise DenseInputError(f"the FPN detectors need the four stage outputs, got out_indices {body.out_indices}")
    return BackboneWithFPN(body, fpn_channels)


def _mean_std(body: DenseBackbone) -> tuple[list[float], list[float]]:
    cfg = data_config(body.metaformer)
    mean, std = list(cfg["mean"]), list(cfg["std"])
    if len(mean) != body.in_chans:
        mean, std = [sum(mean) / len(mean)] * body.in_chans, [sum(std) / len(std)] * body.in_chans
    return mean, std


def _build(
    detector: str,
    backbone_name: str | DenseBackbone,
    num_classes: int,
    checkpoint: str | None,
    pretrained: bool,
    kernel_policy: str | KernelPolicy,
    img_size: int | Sequence[int] | None,
    min_size: int | Sequence[int],
    max_size: int,
    fpn_channels: int,
    backbone_kwargs: dict[str, Any] | None,
    kwargs: dict[str, Any],
) -> nn.Module:
    from torchvision.models.detection import FasterRCNN, MaskRCNN

    if num_classes < 2:
        raise DenseInputError(f"num_classes counts the background too, so it must be >= 2; got {num_classes}")
    body = _backbone_with_fpn(
        backbone_name, checkpoint, pretrained, kernel_policy, img_size, max_size, fpn_channels, backbone_kwargs
    )
    mean, std = _mean_std(body.body)
    kwargs.setdefault("image_mean", mean)
    kwargs.setdefault("image_std", std)
    cls = MaskRCNN if detector == "mask" else FasterRCNN
    return cls(body, num_classes=num_classes, min_size=min_size, max_size=max_size, **kwargs)


def mask_rcnn(
    backbone: str | DenseBackbone = "hpx_former_s18",
    num_classes: int = 91,
    *,
    checkpoint: str | None = None,
    pretrained: bool = False,
    kernel_policy: str | KernelPolicy = "paper",
    img_size: int | Sequence[int] | None = None,
    min_size: int | Sequence[int] = 800,
    max_size: int = 1333,
    fpn_channels: int = 256,
    backbone_kwargs: dict[str, Any] | None = None,
    **kwargs: Any,
) -> nn.Module:
    """torchvision's Mask R-CNN on a HyenaPixel backbone + FPN.

    Args:
        backbone: a model name (see :func:`hyenapixel.dense.backbone`) or a built :class:`DenseBackbone`.
        num_classes: object classes + 1 for the background.
        checkpoint / pretrained: ImageNet weights for the backbone (official file, a run of ours, or the hub).
        kernel_policy / img_size: see :mod:`hyenapixel.dense.backbone`; ``"cover"`` defaults ``img_size`` to
            ``max_size`` rounded up to 32 (the largest padded batch).
        min_size / max_size: torchvision's resizing (short side, long-side limit); the paper trains at 480-800 /
            1333.
        fpn_channels: FPN width (256 as in the paper's FPN).
        backbone_kwargs: for ``timm.create_model`` (``drop_path_rate=0.4`` as the paper, ``depths``, ``dims``, ...).
        kwargs: for ``torchvision.models.detection.MaskRCNN`` (``box_detections_per_img``, ...).

    Returns:
        The detector: in train mode ``model(images, targets)`` returns torchvision's loss dict (``loss_classifier``,
        ``loss_box_reg``, ``loss_mask``, ``loss_objectness``, ``loss_rpn_box_reg``); in eval mode ``model(images)``
        returns one dict per image with ``boxes`` (N, 4) xyxy, ``labels`` (N,), ``scores`` (N,), ``masks``
        (N, 1, H, W) probabilities.
    """
    return _build(
        "mask", backbone, num_classes, checkpoint, pretrained, kernel_policy, img_size, min_size, max_size,
        fpn_channels, backbone_kwargs, kwargs,
    )  # fmt: skip


def faster_rcnn(
    backbone: str | DenseBackbone = "hpx_former_s18",
    num_classes: int = 91,
    *,
    checkpoint: str | None = None,
    pretrained: bool = False,
    kernel_policy: str | KernelPolicy = "paper",
    img_size: int | Sequence[int] | None = None,
    min_size: int | Sequence[int] = 800,
    max_size: int = 1333,
    fpn_channels: int = 256,
    backbone_kwargs: dict[str, Any] | None = None,
    **kwargs: Any,
) -> nn.Module:
    """torchvision's Faster R-CNN on a HyenaPixel backbone + FPN; arguments as :func:`mask_rcnn` (no masks)."""
    return _build(
        "faster", backbone, num_classes, checkpoint, pretrained, kernel_policy, img_size, min_size, max_size,
        fpn_channels, backbone_kwargs, kwargs,
    )  # fmt: skip
