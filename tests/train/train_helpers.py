"""Shared helpers of the training tests: a tiny HyenaPixel model and its command-line flags."""

from __future__ import annotations

import timm
from torch import nn

import hyenapixel  # noqa: F401  (registers the models)

#: A tiny HpxFormer-S4 for 32 px images (stage maps 8, 4, 2, 1 -> global kernels 15, 7, 3, 1).
TINY = {"model": "hpx_former_s4", "dims": (8, 16, 24, 32), "kernel_sizes": (15, 7, 3, 1)}
TINY_FLAGS = ["--model", "hpx_former_s4", "--dims", "8", "16", "24", "32", "--kernel-sizes", "15", "7", "3", "1"]


def make_tiny_model(num_classes: int = 2) -> nn.Module:
    return timm.create_model(
        TINY["model"], num_classes=num_classes, dims=TINY["dims"], kernel_sizes=TINY["kernel_sizes"]
    )
