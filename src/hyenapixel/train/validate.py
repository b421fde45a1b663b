"""Validation as in the paper (Section 4.1): top-1/top-5, the crop search, and model ensembles.

* **Crop search**: "a center-cropped region of the input image is selected with a crop size between 0.8 and 1.0
  that maximizes the accuracy" - every crop fraction of the grid is evaluated and the best is reported.
* **Ensembles**: the softmax outputs of several models (each with its own input size and normalisation) are
  averaged, as for the "Hpx / Conv / Hb / CA" ensembles of Table 1.
* A run's own checkpoint carries its model spec and data settings, so ``--checkpoint runs/x/best.pt`` alone
  rebuilds the network; without ``--data`` the built-in dataset's validation split of that run is used.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path
from typing import Any

import torch

from hyenapixel.train.checkpoint import is_training_state, load_model_weights
from hyenapixel.train.config import ConfigError, ValidateConfig
from hyenapixel.train.datasets import build_data, model_data_defaults
from hyenapixel.train.distributed import DistInfo, resolve_device
from hyenapixel.train.loaders import ShardSampler, make_loader
from hyenapixel.train.loop import evaluate, predict, topk_from_probs
from hyenapixel.train.model import check_model_name, create_model
from hyenapixel.train.progress import Progress, progress_mode

__all__ = ["validate"]

log = logging.getLogger("hyenapixel")


def _peek(path: str) -> dict[str, Any]:
    """Metadata of a training checkpoint (empty for other weight files)."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"--checkpoint: file not found: {p}")
    if p.suffix == ".safetensors":
        return {}
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # noqa: BLE001 - not a zip checkpoint: let the model loader report it
        return {}
    if not is_training_state(obj):
        return {}
    return {k: obj.get(k) for k in ("model_spec", "config", "num_classes", "in_chans", "input_size", "class_names")}


def _members(cfg: ValidateConfig) -> list[dict[str, Any]]:
    """One entry per ensemble member: model spec, weights and the run's data settings."""
    checkpoints: list[str | None] = list(cfg.checkpoint) if not cfg.pretrained else [None] * len(cfg.model)
    names: list[str | None] = list(cfg.model) if cfg.model else [None] * len(checkpoints)
    members = []
    for name, ckpt in zip(names, checkpoints):
        meta = _peek(ckpt) if ckpt else {}
        spec = meta.get("model_spec")
        if name is None:
            if spec is None:
                raise ConfigError("model", f"required for {ckpt} (not a hyenapixel training checkpoint)")
            name = spec["name"]
        if spec is None or spec.get("name") != name:
            spec = {"name": name, "kwargs": {}}
        check_model_name(name)
        resolved = ((meta.get("config") or {}).get("resolved")) or {}
        members.append({"name": name, "checkpoint": ckpt, "spec": spec, "meta": meta, "resolved": resolved})
    return members


def _fmt_crop(crop: float | None) -> str:
    return "n/a" if crop is None else f"{crop:.3f}"


def validate(cfg: ValidateConfig) -> dict[str, Any]:
    """Evaluate the model or ensemble of ``cfg``; return (and log) the results per crop and the best crop.

    Returns:
        ``{"top1", "top5", "crop_pct", "results": [per crop], "members": [...], "dataset", ...}``.
    """
    device = resolve_device(cfg.device)
    info = DistInfo(device=device)
    amp = cfg.amp if cfg.amp is not None else device.type == "cuda"
    amp_dtype = torch.float16 if amp else None
    members = _members(cfg)
    first = members[0]
    run_cfg = (first["meta"].get("config") or {}) if cfg.data is None else {}
    run_data = (run_cfg.get("data") or {}).get("data")
    if cfg.data is None and run_data:
        log.info("no --data: evaluating on %s/val, the data of the checkpoint's run", run_data)
        cfg = dataclasses.replace(cfg, data=run_data)
    val_samples = cfg.val_samples or (run_cfg.get("data") or {}).get("val_samples") or 1000
    seed = cfg.seed if cfg.seed is not None else (run_cfg.get("run") or {}).get("seed", 0)
    difficulty = cfg.difficulty or (run_cfg.get("data") or {}).get("difficulty") or "default"
    builtin = cfg.builtin or (run_cfg.get("data") or {}).get("builtin") or "pathfinder"  # runs before --builtin
    workers = cfg.workers if cfg.workers is not None else (0 if cfg.data is None else min(8, os.cpu_count() or 1))

    crops = cfg.crop_pcts() or [None]
    if cfg.data is None and crops != [None]:
        log.info("the built-in dataset is generated at the input size: there is no crop to choose")
        crops = [None]
    datasets: dict[tuple, Any] = {}

    def val_data(member: dict[str, Any], crop: float | None) -> tuple[Any, dict[str, Any]]:
        res = member["resolved"]
        defaults = model_data_defaults(member["name"])
        size = cfg.input_size or member["meta"].get("input_size")  # None: the model's / built-in default
        mean = tuple(res["mean"]) if res.get("mean") else None  # the run's normalisation, else the model's
        std = tuple(res["std"]) if res.get("std") else None
        crop = crop if crop is not None else (res.get("crop_pct") or defaults["crop_pct"])
        key = (size, crop, mean, std, cfg.interpolation)
        if key not in datasets:
            data = build_data(
                cfg.data,
                model_name=member["name"],
                input_size=size,
                crop_pct=crop,
                interpolation=cfg.interpolation,
                mean=mean,
                std=std,
                train_samples=1,
                val_samples=val_samples,
                seed=seed,
                skip_corrupt=cfg.skip_corrupt,
                aug=None,
                builtin=builtin,
                difficulty=difficulty,
                val_only=True,
            )
            datasets[key] = (data["val"], data["settings"])
        return datasets[key]

    # build the models once
    models = []
    for m in members:
        _, settings = val_data(m, None)
        num_classes = m["meta"].get("num_classes") or settings["num_classes"]
        if num_classes != settings["num_classes"]:
            raise ConfigError(
                "checkpoint",
                f"{m['checkpoint']} has {num_classes} classes, the dataset {settings['dataset']} has "
                f"{settings['num_classes']}",
            )
        model = create_model(
            m["spec"],
            num_classes=num_classes,
            in_chans=m["meta"].get("in_chans") or settings["in_chans"],
            pretrained=cfg.pretrained,
        )
        if m["checkpoint"]:
            try:
                load_model_weights(model, m["checkpoint"], use_ema=cfg.ema)
            except (ValueError, RuntimeError) as exc:
                raise ConfigError("checkpoint", str(exc)) from None
        models.append(model.to(device).eval())

    mode = progress_mode("auto", True)
    results = []
    dataset_name = None
    for crop in crops:
        member_results = []
        prob_sum = None
        targets = None
        for m, model in zip(members, models):
            ds, settings = val_data(m, crop)
            dataset_name = settings["dataset"]
            loader = make_loader(
                ds,
                ShardSampler(len(ds)),
                batch_size=cfg.batch_size,
                workers=workers,
                drop_last=False,
                pin_memory=device.type == "cuda",
                seed=0,
            )
            label = f"{m['name']} crop {_fmt_crop(crop if crop is not None else settings['crop_pct'])}"
            progress = Progress(len(loader), label, mode, log_interval=max(len(loader) // 5, 1))
            try:
                if len(members) == 1:
                    metrics = evaluate(model, loader, info=info, amp_dtype=amp_dtype, progress=progress)
                else:
                    probs, targets = predict(model, loader, device=device, amp_dtype=amp_dtype, progress=progress)
                    metrics = topk_from_probs(probs, targets)
                    prob_sum = probs if prob_sum is None else prob_sum + probs
            finally:
                progress.close()
            member_results.append({"model": m["name"], "checkpoint": m["checkpoint"], **metrics})
        if len(members) == 1:
            combined = {k: member_results[0][k] for k in ("top1", "top5", "count")}
        else:
            assert prob_sum is not None and targets is not None
            combined = topk_from_probs(prob_sum / len(members), targets)
        crop_value = crop if crop is not None else settings["crop_pct"]
        results.append({"crop_pct": crop_value, **combined, "members": member_results})
        log.info("crop %s: top-1 %.2f top-5 %.2f", _fmt_crop(crop_value), combined["top1"], combined["top5"])

    best = max(results, key=lambda r: r["top1"])
    return {
        "dataset": dataset_name,
        "members": [{"model": m["name"], "checkpoint": m["checkpoint"], "pretrained": cfg.pretrained} for m in members],
        "ema": cfg.ema,
        "crop_search": cfg.crop_search,
        "results": results,
        "crop_pct": best["crop_pct"],
        "top1": best["top1"],
        "top5": best["top5"],
        "count": best["count"],
    }
