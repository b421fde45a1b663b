"""The analysis tools on the models of the kernel-size ablation (paper Fig. 4 ERFs, Fig. 5-6 filter size and
truncation, Fig. 7 kernels), trained on the built-in Echo task: what ``hyenapixel ablate`` writes to
``<output>/analysis/`` (docs/evidence.md).

* ``erf.png``: effective receptive fields of the first seed of every model, on Echo test images;
* ``kernel-size.png``: the global model's learned filter size and its test top-1 with its kernels truncated to each
  relative size, every seed (at ``3/16`` a 16 x 16 map keeps 3 x 3 taps, the local twin's kernel);
* ``kernels.png``: the global model's learned kernels (first seed).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from hyenapixel.analysis.erf import erf, plot_erf
from hyenapixel.analysis.kernel_size import learned_filter_sizes, plot_kernel_size, truncation_curve
from hyenapixel.analysis.kernels import learned_kernels, plot_kernels
from hyenapixel.analysis.report import save_report
from hyenapixel.data import EchoDataset
from hyenapixel.data.settings import RunData
from hyenapixel.models import load_model, read_checkpoint
from hyenapixel.models.weights import Checkpoint

__all__ = ["TRUNCATION_SIZES", "analyse_ablation", "load_run"]

#: Relative kernel sizes of the truncation curve (kernel side / feature-map side; 31/16 is the untouched kernel).
TRUNCATION_SIZES = (0.0, 3 / 16, 7 / 16, 11 / 16, 15 / 16, 23 / 16, 31 / 16)


def load_run(folder: str | Path) -> tuple[nn.Module, Checkpoint]:
    """The model of a training run folder (its ``best.safetensors``, the best validation epoch), in eval mode."""
    ckpt = read_checkpoint(Path(folder) / "best.safetensors")
    return load_model(checkpoint=ckpt).eval(), ckpt


def analyse_ablation(
    out: str | Path,
    runs: Sequence[str],
    models: Sequence[str],
    *,
    erf_images: int = 64,
    test_samples: int = 1000,
    progress: str = "auto",
) -> list[Path]:
    """ERFs, filter sizes, truncation curves and kernels of the trained runs ``runs`` (folder names under ``out``);
    ``models[0]`` is the global model. Writes ``out/analysis/{erf,kernel-size,kernels}.{png,json}``.

    Returns:
        The written paths.
    """
    out = Path(out)
    target = out / "analysis"
    loaded = {name: load_run(out / name) for name in runs}
    by_model: dict[str, list[str]] = {}
    for name, (_, ckpt) in loaded.items():
        by_model.setdefault(str(ckpt.model_name), []).append(name)
    first = {m: sorted(by_model[m])[0] for m in models if m in by_model}
    global_model = models[0]
    if global_model not in first:
        raise ValueError(f"no finished run of the global model {global_model} under {out}")
    written: list[Path] = []

    images = _test_images(loaded[first[global_model]][1], erf_images)
    erfs = [erf(loaded[name][0], images, name=model, weights=name, progress=progress) for model, name in first.items()]
    written += save_report(target, "erf", [r.numbers() for r in erfs], plot_erf(erfs), dict(first))

    truncations, sizes = [], []
    for name in sorted(by_model[global_model]):
        model, ckpt = loaded[name]
        test = EchoDataset.run_test_split(RunData.from_meta(ckpt.meta), test_samples)
        loader = torch.utils.data.DataLoader(test, batch_size=250)
        side = test.image_size
        truncations.append(
            truncation_curve(
                model, loader, side, sizes=TRUNCATION_SIZES, dataset="Echo test", name=name, progress=progress
            )
        )
        sizes.append(learned_filter_sizes(model, side, name=name))
    numbers = {"filter_sizes": [_plain(s) for s in sizes], "truncation": [_plain(t) for t in truncations]}
    written += save_report(target, "kernel-size", numbers, plot_kernel_size(sizes, truncations))

    kernels = [learned_kernels(loaded[first[global_model]][0], name=first[global_model])]
    written += save_report(target, "kernels", [k.numbers() for k in kernels], plot_kernels(kernels))
    return written


def _test_images(ckpt: Checkpoint, num: int) -> torch.Tensor:
    """Shape: -> (num, C, S, S) normalised Echo test images."""
    test = EchoDataset.run_test_split(RunData.from_meta(ckpt.meta), num)
    return torch.stack([test[i][0] for i in range(len(test))])


def _plain(result: Any) -> Any:
    return dataclasses.asdict(result) if dataclasses.is_dataclass(result) else result
