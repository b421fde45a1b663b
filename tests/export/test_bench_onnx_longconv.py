"""Smoke test of ``benchmarks/bench_onnx_longconv.py``: every form of the long convolution it times agrees with
the FFT path in PyTorch and, exported, in onnxruntime. No timing thresholds."""

from __future__ import annotations

import math

import pytest
import torch

from hyenapixel.ops.reference import fftconv2d_ref

pytest.importorskip("onnxruntime")


def test_forms_compute_the_long_convolution() -> None:
    from benchmarks.bench_onnx_longconv import forms

    torch.manual_seed(0)
    k = torch.randn(6, 9, 9, dtype=torch.float64)
    x = torch.randn(2, 5, 5, 6)  # channels-last
    ref = fftconv2d_ref(x.permute(0, 3, 1, 2).double(), k).permute(0, 2, 3, 1)
    for name, module in forms(k, 5, dft_op=True, four_step=(2, 4)).items():
        with torch.no_grad():
            assert (module(x).double() - ref).abs().max().item() < 1e-5, name
    # the four-step form without padding rows (4 = 2 * 2) and with a kernel smaller than twice the map
    x = torch.randn(2, 4, 4, 6)
    for k in (torch.randn(6, 7, 7, dtype=torch.float64), torch.randn(6, 5, 3, dtype=torch.float64)):
        ref = fftconv2d_ref(x.permute(0, 3, 1, 2).double(), k).permute(0, 2, 3, 1)
        module = forms(k, 4, dft_op=False, four_step=(2,))["four_step2"]
        with torch.no_grad():
            assert (module(x).double() - ref).abs().max().item() < 1e-5


@pytest.mark.slow
def test_quick_run() -> None:
    from benchmarks.bench_onnx_longconv import main

    threads = torch.get_num_threads()
    try:
        res = main(
            ["--stages", "4", "--batches", "2", "--warmup", "0", "--repeats", "1", "--dft-op", "--four-step", "2"]
        )
    finally:
        torch.set_num_threads(threads)
    r = res["4|2"]
    assert set(r["ms"]) == {"dft", "per_image", "direct", "dft_op", "four_step2"}
    assert all(d <= 1e-4 for d in r["max_abs_diff"].values())
    assert all(math.isfinite(t) and t > 0 for t in r["ms"].values())
