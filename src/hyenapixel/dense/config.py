"""Settings of the built-in dense run (a CPU-sized version of paper Section 4.3): one typed dataclass, from which
``hyenapixel dense-train`` makes its flags. Torch-free, so that ``--help`` and option errors answer at once.
"""

from __future__ import annotations

from dataclasses import dataclass

from hyenapixel.configio import ConfigError, check_options, option
from hyenapixel.constants import INPUT_SIZE_ALIASES, MIN_INPUT_SIZE

__all__ = ["TASKS", "DenseRunConfig"]

TASKS = ("segmentation", "detection")


@dataclass
class DenseRunConfig:
    """Settings of the built-in dense run; the defaults are sized for a 2-core CPU (docs/dense.md)."""

    task: str = option(
        "segmentation",
        "segmentation: UPerNet (smp) scored by mIoU; detection: Mask R-CNN (torchvision) scored by COCO AP.",
        choices=TASKS,
    )
    model: str = option("hpx_former_s4", "Backbone, a registered model name.")
    dims: tuple[int, ...] | None = option(
        (32, 64, 128, 256),
        "Backbone channels of the four stages ('32 64 128 256' or '32,64,128,256'); none: the model's own (64 128 "
        "320 512 for S4). Ignored with --checkpoint.",
    )
    checkpoint: str | None = option(None, "ImageNet weights for the backbone (official file or a run of ours).")
    kernel_policy: str = option(
        "cover",
        "cover: kernels resampled to 2F-1 of the feature maps at --input-size; paper: the 224-px kernels.",
        choices=("cover", "paper"),
    )
    input_size: int = option(
        64,
        f"Image side of the generated data in pixels, a multiple of {MIN_INPUT_SIZE}.",
        aliases=INPUT_SIZE_ALIASES,
    )
    train_samples: int = option(768, "Generated training images.", bound=">= 1")
    val_samples: int = option(128, "Generated validation images.", bound=">= 1")
    epochs: int = option(12, "Training epochs.", bound=">= 1")
    batch_size: int = option(16, "Images per step.", bound=">= 1")
    lr: float = option(
        2e-3, "AdamW peak learning rate (linear warm-up over 10% of the steps, cosine decay).", bound="> 0"
    )
    weight_decay: float = option(0.05, "AdamW weight decay.")
    decoder_channels: int = option(64, "UPerNet decoder / FPN width (smp's default 256 is sized for ADE20k).")
    seed: int = option(0, "Data and initialisation seed.")
    threads: int = option(2, "torch intra-op threads for the run (restored afterwards).", bound=">= 1")
    output: str | None = option(None, "Run folder. none: runs/<timestamp>-dense-<task>-<model>.")
    overwrite: bool = option(False, "Replace the files of an earlier run in --output (without it: refuse).")

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ConfigError("task", f"unknown task {self.task!r}; choose from {', '.join(TASKS)}")
        if self.input_size < MIN_INPUT_SIZE or self.input_size % MIN_INPUT_SIZE:
            raise ConfigError(
                "input_size",
                f"must be a multiple of {MIN_INPUT_SIZE} (UPerNet's input rule, the backbone's total stride), got "
                f"{self.input_size}",
            )
        check_options(self)
        if self.task == "segmentation" and self.batch_size < 2:
            raise ConfigError("batch_size", "must be >= 2 for segmentation (UPerNet's decoder uses BatchNorm)")
        if self.dims is not None and (len(self.dims) != 4 or min(self.dims) < 1):
            raise ConfigError("dims", f"needs four positive channel counts, got {list(self.dims)}")
