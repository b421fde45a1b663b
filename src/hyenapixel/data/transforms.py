"""Image transforms and mixup/cutmix for image folders: thin wrappers over ``timm.data``.

Training: random resized crop, horizontal flip, RandAugment (``auto_augment``, e.g. ``rand-m9-mstd0.5-inc1``)
or colour jitter, normalisation and random erasing. Evaluation: resize to ``input_size / crop_pct``, centre
crop, normalisation. As in MetaFormer and HyenaPixel training (timm's ImageNet recipe).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from timm.data import DEFAULT_CROP_PCT, IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, Mixup, create_transform

__all__ = ["RE_MODES", "build_mixup", "build_transforms"]

RE_MODES: tuple[str, ...] = ("const", "rand", "pixel")
"""Random-erasing fill modes understood by timm."""


def build_transforms(
    is_training: bool,
    input_size: int,
    *,
    auto_augment: str | None = None,
    re_prob: float = 0.0,
    re_mode: str = "pixel",
    crop_pct: float = DEFAULT_CROP_PCT,
    interpolation: str = "bicubic",
    mean: Sequence[float] = IMAGENET_DEFAULT_MEAN,
    std: Sequence[float] = IMAGENET_DEFAULT_STD,
) -> Callable[[Any], Any]:
    """The timm transform for training or evaluation on PIL images.

    Args:
        is_training: random augmentation for training, else a deterministic resize and centre crop.
        input_size: side of the square output.
        auto_augment: timm auto-augment string (``"rand-m9-mstd0.5-inc1"`` is RandAugment as in the paper);
            None uses colour jitter 0.4 instead. Training only.
        re_prob: random-erasing probability. Training only.
        re_mode: random-erasing fill, one of :data:`RE_MODES`. Training only.
        crop_pct: evaluation resizes the short side to ``input_size / crop_pct`` before the centre crop.
        interpolation: ``"bicubic"``, ``"bilinear"``, ``"nearest"`` (or ``"random"`` for training).
        mean: normalisation mean per channel.
        std: normalisation std per channel.

    Shape:
        PIL image -> (3, input_size, input_size) float32 tensor.
    """
    if input_size < 1:
        raise ValueError(f"input_size must be positive, got {input_size}")
    if not 0.0 < crop_pct <= 1.0:
        raise ValueError(f"crop_pct must be in (0, 1], got {crop_pct}")
    if not 0.0 <= re_prob <= 1.0:
        raise ValueError(f"re_prob must be in [0, 1], got {re_prob}")
    if re_mode not in RE_MODES:
        raise ValueError(f"re_mode must be one of {RE_MODES}, got {re_mode!r}")
    if len(mean) != len(std):
        raise ValueError(f"mean and std need the same length, got {len(mean)} and {len(std)}")
    common = {"interpolation": interpolation, "mean": tuple(mean), "std": tuple(std)}
    if is_training:
        return create_transform(
            input_size, is_training=True, auto_augment=auto_augment or None, re_prob=re_prob, re_mode=re_mode, **common
        )
    return create_transform(input_size, is_training=False, crop_pct=crop_pct, **common)


def build_mixup(
    mixup_alpha: float,
    cutmix_alpha: float,
    switch_prob: float,
    label_smoothing: float,
    num_classes: int,
) -> Mixup | None:
    """timm's batch-wise Mixup/CutMix with label smoothing, or None when both alphas are 0.

    The returned callable maps ``(images, labels)`` to ``(mixed images, soft targets)``; it needs an even
    batch size, so use ``drop_last=True`` for the training loader. With both alphas positive, each batch uses
    CutMix with probability ``switch_prob`` and Mixup otherwise. Train with a soft-target cross entropy
    (``timm.loss.SoftTargetCrossEntropy``) when this is not None.

    Shape:
        images (B, C, H, W), labels (B,) int64 -> images (B, C, H, W), targets (B, num_classes) float.
    """
    if mixup_alpha < 0 or cutmix_alpha < 0:
        raise ValueError(f"mixup and cutmix alphas must be >= 0, got {mixup_alpha}, {cutmix_alpha}")
    if not 0.0 <= switch_prob <= 1.0:
        raise ValueError(f"switch_prob must be in [0, 1], got {switch_prob}")
    if not 0.0 <= label_smoothing < 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
    if num_classes < 2:
        raise ValueError(f"num_classes must be >= 2, got {num_classes}")
    if mixup_alpha == 0 and cutmix_alpha == 0:
        return None
    return Mixup(
        mixup_alpha=mixup_alpha,
        cutmix_alpha=cutmix_alpha,
        prob=1.0,
        switch_prob=switch_prob,
        mode="batch",
        label_smoothing=label_smoothing,
        num_classes=num_classes,
    )
