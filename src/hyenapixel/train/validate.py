"""Validation as in the paper (Section 4.1): top-1/top-5, the crop search, and model ensembles.

* **Crop search**: "a center-cropped region of the input image is selected with a crop size between 0.8 and 1.0
  that maximizes the accuracy" - every crop fraction of the grid is evaluated and the best is reported.
* **Ensembles**: the softmax outputs of several models (each with its own input size and normalisation) are
  averaged, as for the "Hpx / Conv / Hb / CA" ensembles of Table 1.
* Every file a run writes (``last.pt``, ``best.pt``, ``epoch_N.pt``, ``best.safetensors``) names its model and
  data settings, so ``--checkpoint runs/x/best.safetensors`` alone rebuilds the network
  (:func:`hyenapixel.models.load_model`); without ``--data`` the validation split of that run's data is used.

:func:`validate` runs four steps: load the members, resolve the data source, evaluate every crop, report.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from hyenapixel.data.loaders import ShardSampler, make_loader
from hyenapixel.data.settings import DataSettings, RunData, build_data, default_workers
from hyenapixel.models import data_config, input_side, load_model, read_checkpoint
from hyenapixel.models.evaluation import amp_dtype_for, evaluate, format_accuracy, predict, topk_from_probs
from hyenapixel.progress import Progress, progress_mode
from hyenapixel.train.build import check_model_flag
from hyenapixel.train.config import ConfigError, ValidateConfig
from hyenapixel.train.distributed import resolve_device

__all__ = ["CropResult", "Member", "MemberInfo", "MemberResult", "ValidationResult", "format_crop", "validate"]

log = logging.getLogger("hyenapixel")


@dataclass
class Member:
    """One model of the evaluated ensemble, with what its checkpoint says about the run that trained it."""

    name: str
    checkpoint: str | None
    model: nn.Module
    run: RunData | None = None  # the data of the run that wrote the checkpoint (None for other weight files)
    num_classes: int | None = None
    input_size: int | None = None


@dataclass(frozen=True)
class MemberInfo:
    """How a member of the report was loaded."""

    model: str
    checkpoint: str | None
    pretrained: bool


@dataclass(frozen=True)
class MemberResult:
    """One member's accuracy at one crop."""

    model: str
    checkpoint: str | None
    top1: float
    top5: float | None  # None for models with five classes or fewer
    count: int
    loss: float | None = None


@dataclass(frozen=True)
class CropResult:
    """The ensemble's (or single model's) accuracy at one crop fraction."""

    crop_pct: float | None
    top1: float
    top5: float | None
    count: int
    members: tuple[MemberResult, ...]


@dataclass(frozen=True)
class ValidationResult:
    """Everything :func:`validate` found; :meth:`to_dict` is the ``--output-json`` content."""

    dataset: str
    members: tuple[MemberInfo, ...]
    ema: bool
    crop_search: bool
    results: tuple[CropResult, ...]

    @property
    def best(self) -> CropResult:
        return max(self.results, key=lambda r: r.top1)

    def to_dict(self) -> dict[str, Any]:
        best = self.best
        return {
            "dataset": self.dataset,
            "members": [dataclasses.asdict(m) for m in self.members],
            "ema": self.ema,
            "crop_search": self.crop_search,
            "results": [dataclasses.asdict(r) for r in self.results],
            "crop_pct": best.crop_pct,
            "top1": best.top1,
            "top5": best.top5,
            "count": best.count,
        }


# ----------------------------------------------------------------------------------------------------------------
# 1. members
# ----------------------------------------------------------------------------------------------------------------


def load_members(cfg: ValidateConfig) -> list[Member]:
    """Build every ``--model`` / ``--checkpoint`` pair through :func:`hyenapixel.models.load_model` (CPU, eval)."""
    checkpoints: list[str | None] = list(cfg.checkpoint) if not cfg.pretrained else [None] * len(cfg.model)
    names: list[str | None] = list(cfg.model) if cfg.model else [None] * len(checkpoints)
    members = []
    for name, path in zip(names, checkpoints):
        if name is not None:
            check_model_flag(name)
        if path is None:
            assert name is not None  # ValidateConfig requires --model with --pretrained
            model = load_model(name, pretrained=True)
            members.append(Member(name, None, model.eval(), num_classes=getattr(model, "num_classes", None)))
            continue
        ck = read_checkpoint(path, use_ema=cfg.ema)
        if name is None and ck.model_name is None:
            raise ConfigError("model", f"required for {path}: the file does not say which model it holds")
        model = load_model(name, checkpoint=ck).eval()  # the file is read once
        members.append(
            Member(
                name=name or str(ck.model_name),
                checkpoint=path,
                model=model,
                run=RunData.from_meta(ck.meta),
                num_classes=ck.meta.get("num_classes") or getattr(model, "num_classes", None),
                input_size=input_side(ck.meta.get("input_size")),
            )
        )
    return members


# ----------------------------------------------------------------------------------------------------------------
# 2. data
# ----------------------------------------------------------------------------------------------------------------


def _check_same_data(members: Sequence[Member]) -> None:
    """Without --data an ensemble is evaluated on the data of its first member's run: refuse members whose runs
    trained on other data."""
    known = {m.checkpoint or m.name: (r.folder, r.builtin, r.difficulty) for m in members if (r := m.run) is not None}
    if len(set(known.values())) > 1:
        described = "; ".join(f"{k}: {v[0] or f'built-in {v[1]} ({v[2]})'}" for k, v in known.items())
        raise ConfigError(
            "data", f"the checkpoints were trained on different data ({described}); give --data to choose one"
        )


def data_source(cfg: ValidateConfig, first: Member) -> RunData:
    """Options given > the data of the first checkpoint's run (without --data) > the training defaults."""
    base = first.run if cfg.data is None and first.run is not None else RunData()
    if cfg.data is None and base.folder:
        log.info("no --data: evaluating on %s/val, the data of the checkpoint's run", base.folder)
    given = {
        "folder": cfg.data,
        "builtin": cfg.builtin,
        "difficulty": cfg.difficulty,
        "val_samples": cfg.val_samples,
        "seed": cfg.seed,
    }
    return dataclasses.replace(base, **{k: v for k, v in given.items() if v is not None})


class ValidationSets:
    """Validation datasets per (member, crop), built once per distinct transform."""

    def __init__(self, cfg: ValidateConfig, source: RunData) -> None:
        self.cfg, self.source = cfg, source
        self._cache: dict[tuple, tuple[Any, DataSettings]] = {}

    def get(self, member: Member, crop: float | None) -> tuple[Any, DataSettings]:
        # the model's data settings: those of the run that wrote its checkpoint (load_model puts the run's
        # normalisation and crop into the model's pretrained cfg), else the model's own
        defaults = data_config(member.model)
        size = self.cfg.input_size or member.input_size  # None: the model's / built-in default
        crop = crop if crop is not None else defaults["crop_pct"]
        key = (size, crop, defaults["mean"], defaults["std"], self.cfg.interpolation)
        if key not in self._cache:
            data = build_data(
                self.source.folder,
                defaults=defaults,
                input_size=size,
                crop_pct=crop,
                interpolation=self.cfg.interpolation,
                mean=None,
                std=None,
                train_samples=1,
                val_samples=self.source.val_samples,
                seed=self.source.seed,
                skip_corrupt=self.cfg.skip_corrupt,
                aug=None,
                builtin=self.source.builtin,
                difficulty=self.source.difficulty,
                val_only=True,
            )
            self._cache[key] = (data.val, data.settings)
        return self._cache[key]


def _check_classes(members: Sequence[Member], sets: ValidationSets) -> None:
    for m in members:
        settings = sets.get(m, None)[1]
        if m.num_classes is not None and m.num_classes != settings.num_classes:
            raise ConfigError(
                "checkpoint",
                f"{m.checkpoint or m.name} has {m.num_classes} classes, the dataset {settings.dataset} has "
                f"{settings.num_classes}",
            )


# ----------------------------------------------------------------------------------------------------------------
# 3. evaluation of one crop
# ----------------------------------------------------------------------------------------------------------------


def format_crop(crop: float | None) -> str:
    return "n/a" if crop is None else f"{crop:.3f}"


def evaluate_crop(
    cfg: ValidateConfig,
    members: Sequence[Member],
    sets: ValidationSets,
    crop: float | None,
    *,
    device: torch.device,
    amp_dtype: torch.dtype | None,
) -> CropResult:
    """Accuracy of every member at ``crop`` (None: each model's default) and of their softmax average."""
    mode = progress_mode(cfg.progress)
    workers = cfg.workers if cfg.workers is not None else default_workers(sets.source.folder)
    results: list[MemberResult] = []
    prob_sum: torch.Tensor | None = None
    targets: torch.Tensor | None = None
    crop_value = crop
    for m in members:
        ds, settings = sets.get(m, crop)
        crop_value = crop if crop is not None else settings.crop_pct
        loader = make_loader(
            ds,
            ShardSampler(len(ds)),
            batch_size=cfg.batch_size,
            workers=workers,
            drop_last=False,
            pin_memory=device.type == "cuda",
            seed=0,
        )
        label = f"{m.name} crop {format_crop(crop_value)}"
        progress = Progress(len(loader), label, mode, log_interval=max(len(loader) // 5, 1))
        try:
            if len(members) == 1:
                metrics = evaluate(m.model, loader, device=device, amp_dtype=amp_dtype, progress=progress)
            else:
                probs, targets = predict(m.model, loader, device=device, amp_dtype=amp_dtype, progress=progress)
                metrics = topk_from_probs(probs, targets)
                prob_sum = probs if prob_sum is None else prob_sum + probs
        finally:
            progress.close()
        results.append(MemberResult(m.name, m.checkpoint, metrics.top1, metrics.top5, metrics.count, metrics.loss))
    if len(members) == 1:
        combined = metrics
    else:
        assert prob_sum is not None and targets is not None
        combined = topk_from_probs(prob_sum / len(members), targets)
    log.info("crop %s: top-1 %.2f top-5 %s", format_crop(crop_value), combined.top1, format_accuracy(combined.top5))
    return CropResult(crop_value, combined.top1, combined.top5, combined.count, tuple(results))


# ----------------------------------------------------------------------------------------------------------------
# 4. the whole evaluation
# ----------------------------------------------------------------------------------------------------------------


def validate(cfg: ValidateConfig) -> ValidationResult:
    """Evaluate the model or ensemble of ``cfg``: every crop of the grid (or the default crop), best first found.

    Raises:
        ConfigError / WeightsError: bad options or unreadable checkpoints; DataError: a bad dataset.
    """
    device = resolve_device(cfg.device)
    amp_dtype = amp_dtype_for(cfg.amp, cfg.amp_dtype, device)
    members = load_members(cfg)
    for m in members:
        m.model.to(device)
    source = data_source(cfg, members[0])
    if cfg.data is None:
        _check_same_data(members)
    crops = cfg.crop_pcts() or [None]
    if source.folder is None and crops != [None]:
        log.info("the built-in dataset is generated at the input size: there is no crop to choose")
        crops = [None]
    sets = ValidationSets(cfg, source)
    _check_classes(members, sets)
    results = tuple(evaluate_crop(cfg, members, sets, c, device=device, amp_dtype=amp_dtype) for c in crops)
    return ValidationResult(
        dataset=sets.get(members[0], None)[1].dataset,
        members=tuple(MemberInfo(m.name, m.checkpoint, cfg.pretrained) for m in members),
        ema=cfg.ema,
        crop_search=cfg.crop_search,
        results=results,
    )
