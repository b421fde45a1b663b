"""The paper's evidence as tools (Section 5, Appendices B-D): effective receptive fields, learned kernels, kernel
size and truncation, explanations, runtime scaling and MAC counts.

Every tool is a function that takes a model and returns a small result dataclass, a ``plot_<tool>`` function that
draws the results as a matplotlib figure, and a ``hyenapixel <tool>`` subcommand. matplotlib, scikit-image and
fvcore (the ``analysis`` extra) are imported only where a tool needs them.
"""

from hyenapixel.analysis.erf import ERF_THRESHOLDS, ErfResult, area_ratios, erf, plot_erf
from hyenapixel.analysis.images import BUILTIN_IMAGES, ImageSet, builtin_images, load_images, resize_crop
from hyenapixel.analysis.kernel_size import (
    FilterSizeResult,
    TruncationResult,
    learned_filter_sizes,
    plot_kernel_size,
    truncated,
    truncation_curve,
)
from hyenapixel.analysis.kernels import KernelsResult, learned_kernels, plot_kernels
from hyenapixel.analysis.macs import MacsMode, MacsResult, count_macs, plot_macs
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
    "ERF_THRESHOLDS",
    "ErfResult",
    "FilterSizeResult",
    "ImageSet",
    "KernelsResult",
    "MacsMode",
    "MacsResult",
    "TruncationResult",
    "area_ratios",
    "builtin_images",
    "check_image_size",
    "count_macs",
    "erf",
    "input_size_rule",
    "learned_filter_sizes",
    "learned_kernels",
    "load_images",
    "output_dir",
    "plot_erf",
    "plot_kernel_size",
    "plot_kernels",
    "plot_macs",
    "resize_crop",
    "save_report",
    "to_jsonable",
    "truncated",
    "truncation_curve",
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
