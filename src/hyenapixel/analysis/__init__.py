"""The paper's evidence as tools (Section 5, Appendices B-D): effective receptive fields, learned kernels, kernel
size and truncation, explanations, runtime scaling and MAC counts.

Every tool is a function that takes a model and returns a small result dataclass, a ``plot_<tool>`` function that
draws the results as a matplotlib figure, and a ``hyenapixel <tool>`` subcommand. matplotlib, scikit-image and
fvcore (the ``analysis`` extra) are imported only where a tool needs them.
"""

from hyenapixel.analysis.images import BUILTIN_IMAGES, ImageSet, builtin_images, load_images, resize_crop
from hyenapixel.analysis.report import check_image_size, input_size_rule, output_dir, save_report, to_jsonable

# isort: split
# explain (Appendix C) and bench (Fig. 2)
from hyenapixel.analysis.bench import MixerBench, ModelBench, bench_mixers, bench_models, plot_bench, plot_bench_models
from hyenapixel.analysis.explain import (
    ActivationBounds,
    ClampToBounds,
    ExplainResult,
    FilterGradients,
    explain,
    plot_explain,
)

__all__ = [
    "BUILTIN_IMAGES",
    "ImageSet",
    "builtin_images",
    "check_image_size",
    "input_size_rule",
    "load_images",
    "output_dir",
    "resize_crop",
    "save_report",
    "to_jsonable",
    # explain and bench
    "ActivationBounds",
    "ClampToBounds",
    "ExplainResult",
    "FilterGradients",
    "MixerBench",
    "ModelBench",
    "bench_mixers",
    "bench_models",
    "explain",
    "plot_bench",
    "plot_bench_models",
    "plot_explain",
]
