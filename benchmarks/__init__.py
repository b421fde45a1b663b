"""CPU and GPU benchmarks of hyenapixel (paper Section 3 mixers and the S18 models); not part of the library.

Run the scripts as modules from the repository root, so that the shared helpers in :mod:`benchmarks.common` import
without any path manipulation::

    .venv/bin/python -m benchmarks.bench_mixer --quick
    .venv/bin/python -m benchmarks.bench_eval_alternatives
    .venv/bin/python -m benchmarks.gpu_check          # on a machine with CUDA

What each target measures and the current numbers: docs/benchmarks.md.
"""
