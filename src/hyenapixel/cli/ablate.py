"""Global kernels against fair local twins on the built-in Echo task (paper Sections 4-5, Table 3 at laptop scale).

  hyenapixel ablate                                  # 4 models x 3 seeds + kernel sweep, about 15 min on 2 cores
  hyenapixel ablate --seeds 0 1 2 3 4 --output runs/ablate5
  hyenapixel ablate --tune-lr 7.5e-4 1.5e-3 3e-3 6e-3  # the learning-rate tuning, on the validation split

Trains every model (``hpx_iso1``: one HyenaPixel block whose kernel covers the map; its parameter-matched twins
``hpx_iso1_local``, ``sepconv_iso1``, ``attn_iso1``) with ``hyenapixel train --recipe echo`` at every seed, and the
global model at smaller kernel sizes. Writes table.md, results.csv, results.json and ablation.png (every seed, and
accuracy against kernel size) to --output, then the analysis of the trained models in analysis/: effective
receptive fields of the global model and the twins, the global model's truncation curve and its learned kernels.
Started again with the same --output, it keeps the finished runs and continues the others. See docs/evidence.md.
"""

from __future__ import annotations

import argparse

from hyenapixel.cli.args import add_dataclass_arguments, explicit_options

HELP = "train the global model and its local twins on Echo: table, figure and analysis (docs/evidence.md)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from hyenapixel.evidence.ablate import AblationConfig

    add_dataclass_arguments(parser, AblationConfig)
    parser.add_argument(
        "--no-analysis", dest="analysis", action="store_false", help="Skip the analysis of the trained models."
    )


def run(args: argparse.Namespace) -> int:
    from hyenapixel.evidence.ablate import AblationConfig

    options = explicit_options(args, AblationConfig)
    if "model" in options:
        from hyenapixel.cli.model_args import check_model_names

        check_model_names([str(m) for m in options["model"]])
    cfg = AblationConfig.from_dict(options)
    from hyenapixel.evidence.ablate import describe, run_ablation

    results, record, out = run_ablation(cfg)
    print(describe(results, record, out, tuning=bool(cfg.tune_lr)))
    if args.analysis and not cfg.tune_lr:
        from hyenapixel.evidence.analysis import analyse_ablation

        for path in analyse_ablation(out, [r.spec.name for r in results if r.spec.kernel_size is None], cfg.model):
            print(f"wrote {path}")
    return 0
