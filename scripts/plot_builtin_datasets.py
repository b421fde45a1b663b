"""Draw example images of the built-in generated datasets (docs/img/builtin_datasets.png).

Usage: .venv/bin/python scripts/plot_builtin_datasets.py [--out docs/img/builtin_datasets.png] [--seed 0]
Needs matplotlib (pip install 'hyenapixel[analysis]').
"""

from __future__ import annotations

import argparse

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from hyenapixel.data import BUILTIN_DATASETS  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="docs/img/builtin_datasets.png")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--per-row", type=int, default=8)
    args = p.parse_args()
    names = list(BUILTIN_DATASETS)
    fig, axes = plt.subplots(len(names), args.per_row, figsize=(1.3 * args.per_row, 1.55 * len(names)))
    for row, name in enumerate(names):
        size = 64 if name == "echo" else 32  # Echo at the size of the ablation (docs/evidence.md)
        ds = BUILTIN_DATASETS[name](args.per_row, size, seed=args.seed)
        for i in range(args.per_row):
            ax = axes[row, i]
            ax.imshow(ds.render(i), cmap="gray", vmin=0, vmax=255, interpolation="nearest")
            ax.set_title(ds.classes[ds.label(i)], fontsize=7)
            ax.set_xticks([])
            ax.set_yticks([])
            if name in ("balance", "echo"):
                ax.axvline(ds.image_size / 2 - 0.5, color="tab:red", lw=0.6, alpha=0.7)
        axes[row, 0].set_ylabel(f"{name}\n(default)", fontsize=8)
    fig.suptitle(
        "Built-in datasets: Balance and Pathfinder at 32 px, Echo at 64 px (red line: the centre line the Balance "
        "label refers to; Echo: is the right half the left half rolled down by half the height?)",
        fontsize=8,
    )
    fig.tight_layout()
    fig.savefig(args.out, dpi=120)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
