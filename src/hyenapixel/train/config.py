"""Typed configuration of training and validation (paper Section 4.1).

This module is the schema only. A :class:`TrainConfig` is a set of small dataclass sections (model, data, aug,
optim, sched, run). Every field carries its help text in ``metadata["help"]``; the command line is generated from
these fields, so ``--help`` lists every option with its default, and every check lives in one ``__post_init__``.
The options that training and validation share (data and devices) are declared once, in base classes both
inherit. Conversion from and to YAML, recipes and flags is :mod:`hyenapixel.configio`; field names are
unique across sections, so a config can be written flat (``{"lr": 1e-3}``) or nested (``{"optim": {"lr": 1e-3}}``);
``config.yaml`` of a run is the nested form and can be passed back as a recipe. Like the recipes, this module
imports without torch.

The dataclass defaults are the built-in CPU job (``hyenapixel train`` with no arguments): a small HyenaPixel
model on the built-in generated Balance dataset. The paper's recipes (:mod:`hyenapixel.train.recipes`) override them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from hyenapixel.configio import build_config, check_options, flatten, option, to_plain
from hyenapixel.constants import DEFAULT_BUILTIN, INPUT_SIZE_ALIASES, MIN_INPUT_SIZE, SCHEDULES
from hyenapixel.progress import PROGRESS_MODES
from hyenapixel.train.errors import ConfigError

__all__ = [
    "AMP_DTYPES",
    "ARCH_FIELDS",
    "BUILTIN_DATASET_NAMES",
    "DEVICES",
    "INTERPOLATIONS",
    "RE_MODES",
    "SCHEDULES",
    "WD_FILTER_RULES",
    "AugConfig",
    "ConfigError",
    "DataConfig",
    "DeviceOptions",
    "ImageOptions",
    "ModelConfig",
    "OptimConfig",
    "RunConfig",
    "ScheduleConfig",
    "TrainConfig",
    "ValidateConfig",
]

#: Default model of the built-in run and its architecture overrides (tuned with the built-in dataset size).
DEFAULT_MODEL = "hpx_former_s4"
DEFAULT_DIMS = (16, 32, 64, 128)
DEFAULT_KERNEL_SIZES = (15, 7, 3, 1)

#: Architecture overrides that belong to one model: when ``--model`` changes, they fall back to the new
#: model's own values unless they are given on the command line too.
ARCH_FIELDS = ("dims", "depths", "kernel_sizes")


def _check(ok: bool, name: str, message: str) -> None:
    if not ok:
        raise ConfigError(name, message)


# ----------------------------------------------------------------------------------------------------------------
# Training sections
# ----------------------------------------------------------------------------------------------------------------


# Choice lists: each spelled once, here (the modules that act on them import them; the config needs no torch).
#: Autocast dtypes of --amp-dtype (training and evaluation).
AMP_DTYPES = ("float16", "bfloat16")
#: Devices of --device.
DEVICES = ("auto", "cpu", "cuda")
#: Resize interpolations of --interpolation (timm's names).
INTERPOLATIONS = ("bicubic", "bilinear", "nearest")
#: Random-erasing fill modes of --re-mode (timm's RandomErasing modes).
RE_MODES = ("pixel", "rand", "const")
#: Weight-decay rules of --wd-filters (see :mod:`hyenapixel.train.optim`).
WD_FILTER_RULES = ("paper", "hyena")

#: Names of the built-in generated datasets (the keys of ``hyenapixel.data.BUILTIN_DATASETS``, which a test
#: compares; spelled out here so that the config, and ``--help``, need neither torch nor the data layer).
BUILTIN_DATASET_NAMES = ("balance", "pathfinder", "echo")


def _progress_option() -> Any:
    return option(
        "auto",
        "Progress display: bar (tqdm), log (plain lines), none; auto: bar on a terminal, else log.",
        choices=PROGRESS_MODES,
    )


@dataclass
class ModelConfig:
    """Which network to train and how it is regularised."""

    model: str = option(DEFAULT_MODEL, "timm model name (hyenapixel registers hpx_former_*, hb_former_*, ...).")
    dims: tuple[int, ...] | None = option(
        DEFAULT_DIMS,
        "Channels per stage (overrides the model's; '16 32 64 128' or '16,32,64,128'). Belongs to the "
        "default/recipe model: a different --model resets it to that model's own value unless given too. 'none' "
        "keeps the model's.",
    )
    depths: tuple[int, ...] | None = option(None, "Blocks per stage (overrides the model's; reset like --dims).")
    kernel_sizes: tuple[int, ...] | None = option(
        DEFAULT_KERNEL_SIZES,
        "HyenaPixel 2D kernel size per stage (overrides the model's; reset like --dims). For full global context "
        "use 2*H_i-1 for a stage feature map of H_i pixels.",
    )
    res_scale_stages: tuple[int, ...] | None = option(
        None,
        "Stages (0-based) with res-scale (residual scaling, init 1.0); none keeps the model's default, which "
        "for MetaFormer models is the last two stages, as in the paper.",
    )
    drop_path: float = option(0.0, "Stochastic depth rate (paper: 0.2, B36: 0.6).", bound="[0, 1)")
    head_dropout: float = option(0.0, "Dropout before the classifier (paper fine-tuning: 0.4).", bound="[0, 1)")
    pretrained: bool = option(False, "Start from the model's pretrained weights (timm pretrained_cfg).")
    initial_checkpoint: str | None = option(
        None,
        "Start from these weights (a run's .pt, .safetensors, or an official checkpoint); HyenaPixel filters "
        "are resampled where kernel sizes differ. Optimizer state is not loaded (use --resume for that).",
    )
    grad_checkpointing: bool = option(False, "Recompute activations in backward to save memory.")

    def __post_init__(self) -> None:
        check_options(self)
        _check(bool(self.model), "model", "must not be empty")
        for name in ARCH_FIELDS:
            value = getattr(self, name)
            if value is not None:
                _check(len(value) > 0 and all(v > 0 for v in value), name, f"must be positive integers, got {value}")
        if self.kernel_sizes is not None:
            _check(all(k % 2 == 1 for k in self.kernel_sizes), "kernel_sizes", "must be odd")
        if self.res_scale_stages is not None:
            _check(all(s >= 0 for s in self.res_scale_stages), "res_scale_stages", "must be >= 0")
        _check(not (self.pretrained and self.initial_checkpoint), "initial_checkpoint", "conflicts with --pretrained")


@dataclass
class ImageOptions:
    """Where validation images come from and how they are prepared (shared by training and ``validate``)."""

    data: str | None = option(
        None,
        "Image-folder dataset root with train/<class>/* and val/<class>/* (ImageNet layout; validate needs only "
        "val/). none: the built-in generated dataset (validate: the data of the checkpoint's run).",
    )
    input_size: int | None = option(
        None,
        "Image side in pixels. none: the built-in dataset's size, or the model's default (224) for folders "
        "(validate: the checkpoint's run's size).",
        aliases=INPUT_SIZE_ALIASES,
    )
    crop_pct: float | None = option(None, "Evaluation center-crop fraction. none: the model's default.", bound="(0, 1]")
    interpolation: str = option("bicubic", "Resize interpolation.", choices=INTERPOLATIONS)
    workers: int | None = option(
        None,
        "DataLoader worker processes per rank. none: 0 for built-in data, else up to 8 (the CPU count).",
        bound=">= 0",
    )
    skip_corrupt: bool = option(False, "Skip unreadable images with a warning (and a final count) instead of stopping.")

    def __post_init__(self) -> None:
        check_options(self)
        if self.input_size is not None:
            _check(
                self.input_size >= MIN_INPUT_SIZE,
                "input_size",
                f"must be >= {MIN_INPUT_SIZE} (the networks' total stride), got {self.input_size}",
            )


@dataclass
class DataConfig(ImageOptions):
    """Where images come from and how they are prepared for evaluation."""

    builtin: str = option(
        DEFAULT_BUILTIN,
        "Built-in generated dataset used without --data: balance (is the left or the right half heavier?) or "
        "pathfinder (are two dots joined by a curve?) or echo (is the right half the left half moved down by half the "
        "image?). See docs/training.md.",
        choices=BUILTIN_DATASET_NAMES,
    )
    train_samples: int = option(8000, "Built-in dataset: number of training images.", bound=">= 1")
    val_samples: int = option(2000, "Built-in dataset: number of validation images.", bound=">= 1")
    difficulty: str = option(
        "default",
        "Built-in dataset: difficulty preset (easy, default, hard) of the --builtin dataset's class.",
    )
    mean: tuple[float, ...] | None = option(None, "Normalisation mean per channel. none: the model's default.")
    std: tuple[float, ...] | None = option(None, "Normalisation std per channel. none: the model's default.")

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("mean", "std"):
            value = getattr(self, name)
            if value is not None:
                _check(len(value) in (1, 3), name, "must have 1 or 3 values")
        if self.std is not None:
            _check(all(s > 0 for s in self.std), "std", "must be positive")


@dataclass
class AugConfig:
    """Training-time augmentation and label regularisation (paper: Mixup, CutMix, RandAugment, Random Erasing)."""

    auto_augment: str | None = option(None, "timm auto-augment policy, e.g. rand-m9-mstd0.5-inc1 (paper). none: off.")
    re_prob: float = option(0.0, "Random erasing probability (paper: 0.25).", bound="[0, 1]")
    re_mode: str = option("pixel", "Random erasing fill mode.", choices=RE_MODES)
    mixup: float = option(0.0, "Mixup alpha; 0 disables (paper: 0.8).", bound=">= 0")
    cutmix: float = option(0.0, "CutMix alpha; 0 disables (paper: 1.0).", bound=">= 0")
    mixup_switch_prob: float = option(
        0.5, "Probability of CutMix instead of Mixup when both are on (paper: 0.5).", bound="[0, 1]"
    )
    smoothing: float = option(0.0, "Label smoothing (paper: 0.1).", bound="[0, 1)")

    def __post_init__(self) -> None:
        check_options(self)


@dataclass
class OptimConfig:
    """Optimizer and learning rate. The lr follows the recipe's global batch (linear scaling)."""

    opt: str = option("adamw", "Optimizer name for timm.optim.create_optimizer_v2 (paper: adamw).")
    lr: float | None = option(
        None,
        "Absolute peak learning rate. none: --base-lr * global batch / --base-batch (linear scaling).",
        bound="> 0",
    )
    base_lr: float = option(
        4e-3, "Peak learning rate at the global batch --base-batch (paper: 4e-3 at 4096).", bound="> 0"
    )
    base_batch: int = option(4096, "Global batch at which --base-lr holds (paper: 4096).", bound=">= 1")
    weight_decay: float = option(0.05, "Decoupled weight decay (paper: 0.05).", bound=">= 0")
    wd_filters: str = option(
        "paper",
        "Weight decay of Hyena filter parameters. paper: timm's rule as in the official code (no decay only for "
        "biases, norms and other <=1-D parameters, so 4-D filter weights are decayed). hyena: additionally no "
        "decay for the names in model.hyena_no_weight_decay() (positional embeddings, decays, shifts, biases).",
        choices=WD_FILTER_RULES,
    )
    opt_eps: float = option(1e-8, "Optimizer epsilon.")
    betas: tuple[float, float] = option((0.9, 0.999), "Adam betas.")
    clip_grad: float | None = option(
        None, "Clip the global gradient norm to this value. none: no clipping.", bound="> 0"
    )

    def __post_init__(self) -> None:
        _check(bool(self.opt), "opt", "must not be empty")
        check_options(self)
        _check(len(self.betas) == 2 and all(0 <= b < 1 for b in self.betas), "betas", "must be two values in [0, 1)")


@dataclass
class ScheduleConfig:
    """Epochs and the learning-rate schedule: linear warmup, cosine decay, constant cooldown."""

    epochs: int = option(6, "Total training epochs, cooldown included (paper: 310).", bound=">= 1")
    sched: str = option("cosine", "lr schedule after warmup: cosine decay to --min-lr, or constant.", choices=SCHEDULES)
    warmup_epochs: float = option(
        1.0, "Linear warmup epochs from --warmup-lr to the peak lr (paper: 20).", bound=">= 0"
    )
    warmup_lr: float = option(1e-6, "Learning rate at the start of warmup (paper: 1e-6).", bound=">= 0")
    min_lr: float = option(
        1e-5, "Final learning rate of the cosine decay, held during cooldown (paper: 1e-5).", bound=">= 0"
    )
    cooldown_epochs: float = option(0.0, "Epochs at --min-lr after the cosine decay (paper: 10).", bound=">= 0")

    def __post_init__(self) -> None:
        check_options(self)
        _check(
            self.warmup_epochs + self.cooldown_epochs <= self.epochs,
            "epochs",
            f"must be >= --warmup-epochs + --cooldown-epochs ({self.warmup_epochs} + {self.cooldown_epochs}); "
            "lower those too",
        )


@dataclass
class DeviceOptions:
    """Where and in which precision to compute (shared by training and ``validate``)."""

    device: str = option("auto", "Device: auto (cuda if available), cpu, cuda.", choices=DEVICES)
    amp: bool | None = option(None, "Mixed precision. none: on for cuda, off for cpu.")
    amp_dtype: str = option(
        "float16", "Mixed-precision dtype (training with float16 uses a grad scaler).", choices=AMP_DTYPES
    )

    def __post_init__(self) -> None:
        check_options(self)


@dataclass
class RunConfig(DeviceOptions):
    """Batching, devices, checkpoints, logging."""

    batch_size: int = option(64, "Images per process and micro-step.", bound=">= 1")
    global_batch: int | None = option(
        None,
        "Images per optimizer step over all processes, reached by gradient accumulation (paper: 4096). none: "
        "--batch-size times the number of processes. Must be divisible by --batch-size * processes.",
        bound=">= 1",
    )
    output: str | None = option(
        None,
        "Run directory. none: runs/<timestamp>-<model>-<dataset> (a new folder). A folder that already holds a "
        "run is never overwritten silently: continue it with --resume auto, or pass --overwrite.",
    )
    resume: str | None = option(
        None, "Continue from a checkpoint file, or 'auto' for the newest checkpoint in --output (fresh if none)."
    )
    overwrite: bool = option(False, "Replace the run files in an --output folder that already holds a run.")
    seed: int = option(0, "Random seed (also the built-in dataset's).")
    deterministic: bool = option(
        False, "Deterministic algorithms and per-sample augmentation seeds: a resumed run ends bitwise equal."
    )
    threads: int | None = option(
        None, "CPU threads per process (torch.set_num_threads). none: torch's default.", bound=">= 1"
    )
    channels_last: bool = option(False, "Use channels-last memory format.")
    ema: bool = option(False, "Keep an exponential moving average of the weights and evaluate it (paper fine-tuning).")
    ema_decay: float = option(0.9999, "EMA decay per optimizer step.", bound="[0, 1)")
    checkpoint_every: int = option(
        0, "Also keep epoch_<N>.pt every N epochs; 0: only last.pt and best.pt.", bound=">= 0"
    )
    checkpoint_every_steps: int = option(
        0, "Write last.pt every N optimizer steps (mid-epoch resume); 0: per epoch.", bound=">= 0"
    )
    log_interval: int = option(20, "Optimizer steps between progress log lines.", bound=">= 1")
    progress: str = _progress_option()
    check_sync_every: int = option(
        0, "Distributed debugging: every N steps verify that all ranks hold identical weights; 0: off.", bound=">= 0"
    )

    def __post_init__(self) -> None:
        check_options(self)
        _check(
            not (self.overwrite and self.resume),
            "overwrite",
            "conflicts with --resume: a resumed run continues its files, --overwrite replaces them; give one",
        )


SECTIONS: dict[str, type] = {
    "model": ModelConfig,
    "data": DataConfig,
    "aug": AugConfig,
    "optim": OptimConfig,
    "sched": ScheduleConfig,
    "run": RunConfig,
}


@dataclass
class TrainConfig:
    """The complete configuration of one training run (nested sections, unique field names)."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    aug: AugConfig = field(default_factory=AugConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    sched: ScheduleConfig = field(default_factory=ScheduleConfig)
    run: RunConfig = field(default_factory=RunConfig)
    recipe: str | None = None

    def __post_init__(self) -> None:
        if (self.aug.mixup > 0 or self.aug.cutmix > 0) and self.run.batch_size % 2:
            raise ConfigError("batch_size", f"must be even with Mixup/CutMix, got {self.run.batch_size}")

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], recipe: str | None = None) -> TrainConfig:
        """Build from a flat or nested mapping; unknown keys raise :class:`ConfigError` with close matches."""
        values = dict(values)
        recipe = recipe or values.pop("recipe", None)
        values.pop("recipe", None)
        return build_config(cls, values, recipe=recipe)

    def to_dict(self) -> dict[str, Any]:
        """Nested plain dict (lists instead of tuples): safe for YAML and checkpoints."""
        return to_plain(self)

    def flat(self) -> dict[str, Any]:
        """All fields as one flat dict."""
        return flatten(self.to_dict(), SECTIONS)


# ----------------------------------------------------------------------------------------------------------------
# Validation
# ----------------------------------------------------------------------------------------------------------------


@dataclass
class ValidateConfig(ImageOptions, DeviceOptions):
    """Evaluate one model or an ensemble (softmax average) on a validation split; optionally search the crop."""

    model: tuple[str, ...] = option(
        (), "Model name; repeat together with --checkpoint for an ensemble. Omitted: taken from the checkpoint."
    )
    checkpoint: tuple[str, ...] = option(
        (), "Weights for each --model: any file a run wrote (.pt, .safetensors; they name their model) or official."
    )
    pretrained: bool = option(False, "Use each model's pretrained weights instead of --checkpoint.")
    ema: bool = option(False, "Evaluate the EMA weights of a training checkpoint.")
    crop_search: bool = option(False, "Paper protocol: evaluate crops from --crop-min to --crop-max, report the best.")
    crop_min: float = option(0.8, "Smallest crop fraction of the search.")
    crop_max: float = option(1.0, "Largest crop fraction of the search.")
    crop_step: float = option(0.05, "Step of the crop search.", bound="> 0")
    batch_size: int = option(64, "Images per batch.", bound=">= 1")
    val_samples: int | None = option(
        None, "Built-in dataset: validation images. none: as in the checkpoint's run.", bound=">= 1"
    )
    seed: int | None = option(None, "Built-in dataset: seed. none: as in the checkpoint's run.")
    builtin: str | None = option(
        None,
        "Built-in dataset: balance, pathfinder or echo. none: as in the checkpoint's run.",
        choices=BUILTIN_DATASET_NAMES,
    )
    difficulty: str | None = option(None, "Built-in dataset: difficulty preset. none: as in the checkpoint's run.")
    output_json: str | None = option(None, "Also write the results to this JSON file.")
    progress: str = _progress_option()

    def __post_init__(self) -> None:
        super().__post_init__()
        _check(0.0 < self.crop_min <= self.crop_max <= 1.0, "crop_min", "need 0 < --crop-min <= --crop-max <= 1")
        if self.pretrained:
            _check(not self.checkpoint, "checkpoint", "conflicts with --pretrained")
            _check(len(self.model) >= 1, "model", "required with --pretrained")
        else:
            _check(len(self.checkpoint) >= 1, "checkpoint", "required (or use --pretrained)")
            _check(
                len(self.model) in (0, len(self.checkpoint)),
                "model",
                f"give one --model per --checkpoint ({len(self.model)} models, {len(self.checkpoint)} checkpoints)",
            )

    def crop_pcts(self) -> list[float]:
        """The crop fractions to evaluate: the search grid, or the single --crop-pct (None: model default)."""
        if not self.crop_search:
            return [self.crop_pct] if self.crop_pct is not None else []
        n = int(round((self.crop_max - self.crop_min) / self.crop_step))
        grid = [round(self.crop_min + i * self.crop_step, 6) for i in range(n + 1)]
        return [c for c in grid if c <= self.crop_max + 1e-9]
