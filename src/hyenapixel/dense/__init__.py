"""Dense prediction with HyenaPixel backbones (paper Section 4.3): backbones at detection/segmentation sizes with
per-stage norms and two kernel policies, torchvision Mask/Faster R-CNN, segmentation_models_pytorch UPerNet, the
built-in shapes run, and (in :mod:`hyenapixel.dense.mm`) the MMDetection/MMSegmentation plugin.

This layer sits above ``models`` and ``data`` and never imports ``train``, ``analysis``, ``export`` or ``cli``.
Optional frameworks (segmentation_models_pytorch, pycocotools, torchmetrics, mmengine/mmdet/mmseg) are imported only
inside the functions that need them.

The names below are loaded on first access (PEP 562), so that :mod:`hyenapixel.dense.config` (the typed settings of
``hyenapixel dense-train``) imports without torch.
"""

from __future__ import annotations

from hyenapixel.lazy import lazy_attributes

#: Public name -> module that defines it.
_LAZY = {
    "KERNEL_POLICIES": "hyenapixel.dense.backbones",
    "BackboneWithFPN": "hyenapixel.dense.detection",
    "CoverKernels": "hyenapixel.dense.backbones",
    "DenseBackbone": "hyenapixel.dense.backbones",
    "DenseInputError": "hyenapixel.dense.backbones",
    "DenseRunConfig": "hyenapixel.dense.config",
    "KernelPolicy": "hyenapixel.dense.backbones",
    "PaperKernels": "hyenapixel.dense.backbones",
    "StageNorm": "hyenapixel.dense.backbones",
    "backbone": "hyenapixel.dense.backbones",
    "faster_rcnn": "hyenapixel.dense.detection",
    "mask_rcnn": "hyenapixel.dense.detection",
    "upernet": "hyenapixel.dense.segmentation",
}

__all__ = sorted(_LAZY)


__getattr__, __dir__ = lazy_attributes(__name__, _LAZY)
