"""Dense prediction with HyenaPixel backbones (paper Section 4.3): backbones at detection/segmentation sizes with
per-stage norms and two kernel policies, torchvision Mask/Faster R-CNN, segmentation_models_pytorch UPerNet, the
built-in shapes run, and (in :mod:`hyenapixel.dense.mm`) the MMDetection/MMSegmentation plugin.

This layer sits above ``models`` and ``data`` and never imports ``train``, ``analysis``, ``export`` or ``cli``.
Optional frameworks (segmentation_models_pytorch, pycocotools, torchmetrics, mmengine/mmdet/mmseg) are imported only
inside the functions that need them.
"""

from hyenapixel.dense.backbone import (
    KERNEL_POLICIES,
    CoverKernels,
    DenseBackbone,
    DenseInputError,
    KernelPolicy,
    PaperKernels,
    StageNorm,
    backbone,
)
from hyenapixel.dense.detection import BackboneWithFPN, faster_rcnn, mask_rcnn
from hyenapixel.dense.segmentation import upernet

__all__ = [
    "KERNEL_POLICIES",
    "BackboneWithFPN",
    "CoverKernels",
    "DenseBackbone",
    "DenseInputError",
    "KernelPolicy",
    "PaperKernels",
    "StageNorm",
    "backbone",
    "faster_rcnn",
    "mask_rcnn",
    "upernet",
]
