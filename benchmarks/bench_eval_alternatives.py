"""CPU benchmark of alternatives for the HyenaPixel mixer's long convolution and projections (paper Section 3, Fig. 3).
They make the choices and negative results in docs/benchmarks.md ("the shared-ops floor") rerunnable:

1. **Long convolution as DFT matrix products in channels-last layout.** The cached kernel spectrum is applied by
   real matrix products along W (real input -> F = N_w // 2 + 1 bins, stacked real/imag), then along H (stacked
   real/imag DFT matrix), an elementwise product with the spectrum, the inverse along H with the centered output crop
   built into the matrix, and the real inverse along W. No padding and no layout copies; the result is already in
   the mixer's (B, H, W, C) layout. Compared with the library path (:func:`hyenapixel.ops.apply_spectrum` on the
   NCHW copy of the input, output permuted back), same kernel.
2. **Projections as oneDNN 1x1 convolutions** on the channels-last view instead of ``F.linear``, at the mixer's
   ``in_proj`` (C -> 3C) and ``out_proj`` (C -> C) shapes, in eval and forward+backward.
3. **The training long convolution by DFT products** (the library's :func:`hyenapixel.ops.dft.dft_conv2d`,
   differentiable in map and kernel) against the FFT path (:func:`hyenapixel.ops.conv_fresh_kernel` on the NCHW
   copy), forward and both gradients with a given kernel: what ``ops.dft.dft_preferred`` chooses between in
   training.

Timing is interleaved round-robin (:func:`benchmarks.common.interleaved_medians`); ratios are alternative / current
(< 1: the alternative is faster). Run ``python -m benchmarks.bench_eval_alternatives`` from the repository root.
"""

from __future__ import annotations

import argparse
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial

import torch
import torch.nn.functional as F

from benchmarks.common import STAGES, Stage, interleaved_medians, machine_info
from hyenapixel.ops import AxisPlan, ConvPlan, apply_spectrum, conv_fresh_kernel, kernel_spectrum, plan_conv2d
from hyenapixel.ops.dft import dft_conv2d


@dataclass(frozen=True)
class DFTMatrices:
    """Real matrices of a centered "same" 2D convolution done as DFT products (see the module docstring).

    ``fw`` (2F, W) forward along W, ``fh`` (2N, H) forward along H, ``gh`` (2H, 2N) inverse along H with the crop,
    ``aw`` (W, 2F) real inverse along W with the crop; ``n``/``nw`` are the DFT lengths along H/W (the smallest
    without wrap-around), ``rows``/``cols`` the kernel taps that reach the output.
    """

    n: int
    nw: int
    f: int
    rows: tuple[int, int]
    cols: tuple[int, int]
    fw: torch.Tensor
    fh: torch.Tensor
    gh: torch.Tensor
    aw: torch.Tensor

    @staticmethod
    def make(h: int, w: int, kh: int, kw: int, dtype: torch.dtype = torch.float32) -> DFTMatrices:
        ah, aw_ = AxisPlan.make(h, kh, kh // 2), AxisPlan.make(w, kw, kw // 2)
        nh, nw = ah.min_len, aw_.min_len  # a matrix DFT needs no fast length: the smallest without wrap-around
        f = nw // 2 + 1
        d = torch.float64
        two_pi = 2 * math.pi
        ang = -two_pi * torch.arange(f, dtype=d)[:, None] * torch.arange(w, dtype=d)[None] / nw
        fw = torch.cat([ang.cos(), ang.sin()])
        ang = -two_pi * torch.arange(nh, dtype=d)[:, None] * torch.arange(h, dtype=d)[None] / nh
        fh = torch.cat([ang.cos(), ang.sin()])
        ang = two_pi * (torch.arange(h, dtype=d) + ah.center)[:, None] * torch.arange(nh, dtype=d)[None] / nh
        gr, gi = ang.cos() / nh, ang.sin() / nh
        gh = torch.cat([torch.cat([gr, -gi], 1), torch.cat([gi, gr], 1)])
        weight = torch.full((f,), 2.0, dtype=d)  # Hermitian half spectrum: interior bins count twice
        weight[0] = 1
        if nw % 2 == 0:
            weight[-1] = 1
        ang = two_pi * (torch.arange(w, dtype=d) + aw_.center)[:, None] * torch.arange(f, dtype=d)[None] / nw
        aw = torch.cat([ang.cos() * weight / nw, -ang.sin() * weight / nw], 1)
        mats = (m.to(dtype) for m in (fw, fh, gh, aw))
        return DFTMatrices(nh, nw, f, (ah.start, ah.stop), (aw_.start, aw_.stop), *mats)

    def spectrum(self, k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Real and imaginary part of the kernel spectrum, channels last.

        Shape:
            k (C, kh, kw) -> two (N, F, C)
        """
        k = k[:, self.rows[0] : self.rows[1], self.cols[0] : self.cols[1]].double()
        spec = torch.fft.rfft2(k, s=(self.n, self.nw)).permute(1, 2, 0).contiguous()
        return spec.real.to(self.fw.dtype), spec.imag.to(self.fw.dtype)


def dft_conv_cl(x: torch.Tensor, kr: torch.Tensor, ki: torch.Tensor, m: DFTMatrices) -> torch.Tensor:
    """Centered "same" depthwise convolution by DFT matrix products, channels last.

    Shape:
        x (B, H, W, C), kr/ki (N, F, C) -> (B, H, W, C)
    """
    b, h, w, c = x.shape
    n, f = m.n, m.f
    a = torch.matmul(m.fw, x.reshape(b * h, w, c))  # (B*H, 2F, C): real/imag along W
    p = torch.matmul(m.fh, a.view(b, h, 2 * f * c)).view(b, 2, n, 2, f, c)  # [cos; sin] x [re | im]
    yr = p[:, 0, :, 0] - p[:, 1, :, 1]
    yi = p[:, 1, :, 0] + p[:, 0, :, 1]
    z = x.new_empty(b, 2, n, f, c)
    torch.mul(yr, kr, out=z[:, 0])
    z[:, 0].addcmul_(yi, ki, value=-1)
    torch.mul(yr, ki, out=z[:, 1])
    z[:, 1].addcmul_(yi, kr)
    y2 = torch.matmul(m.gh, z.view(b, 2 * n, f * c)).view(b, 2, h, f, c)
    y2 = y2.permute(0, 2, 1, 3, 4).reshape(b * h, 2 * f, c)
    return torch.matmul(m.aw, y2).view(b, h, w, c)


def fft_conv_cl(x: torch.Tensor, k_f: torch.Tensor, plan: ConvPlan) -> torch.Tensor:
    """The library's cached-eval path as the mixer uses it: NCHW copy in, FFT convolution, channels-last view out.

    Shape:
        x (B, H, W, C) -> (B, H, W, C)
    """
    return apply_spectrum(x.permute(0, 3, 1, 2).contiguous(), k_f, plan).permute(0, 2, 3, 1)


def bench_long_conv(stage: Stage, batch: int, warmup: int, repeats: int) -> dict[str, float]:
    """ms per call of the library's cached-eval FFT path and of the DFT products, same kernel and input."""
    torch.manual_seed(0)
    k = torch.randn(stage.dim, stage.kernel, stage.kernel)
    x = torch.randn(batch, stage.size, stage.size, stage.dim)
    plan = plan_conv2d(stage.size, stage.size, stage.kernel, stage.kernel)
    k_f = kernel_spectrum(k, plan)
    m = DFTMatrices.make(stage.size, stage.size, stage.kernel, stage.kernel)
    kr, ki = m.spectrum(k)
    with torch.no_grad():
        r = interleaved_medians(
            {"fft": partial(fft_conv_cl, x, k_f, plan), "dft": partial(dft_conv_cl, x, kr, ki, m)}, warmup, repeats
        )
    return {"fft_ms": 1e3 * r["fft"], "dft_ms": 1e3 * r["dft"]}


def _train_fft(x: torch.Tensor, k: torch.Tensor, plan: ConvPlan, grad: torch.Tensor) -> None:
    conv_fresh_kernel(x.permute(0, 3, 1, 2).contiguous(), k, plan).permute(0, 2, 3, 1).backward(grad)


def _train_dft(x: torch.Tensor, k: torch.Tensor, plan: ConvPlan, grad: torch.Tensor) -> None:
    dft_conv2d(x, k, plan).backward(grad)


def bench_long_conv_train(stage: Stage, batch: int, warmup: int, repeats: int) -> dict[str, float]:
    """ms per forward + backward (map and kernel gradient) of the FFT path and of the DFT products, same kernel."""
    torch.manual_seed(0)
    full = plan_conv2d(stage.size, stage.size, stage.kernel, stage.kernel)
    plan = full.cropped()
    k = torch.randn(stage.dim, stage.kernel, stage.kernel)[(slice(None), *full.taps)].contiguous().requires_grad_()
    x = torch.randn(batch, stage.size, stage.size, stage.dim, requires_grad=True)
    grad = torch.randn(batch, stage.size, stage.size, stage.dim)
    r = interleaved_medians(
        {"fft": partial(_train_fft, x, k, plan, grad), "dft": partial(_train_dft, x, k, plan, grad)}, warmup, repeats
    )
    return {"train_fft_ms": 1e3 * r["fft"], "train_dft_ms": 1e3 * r["dft"]}


def _linear(x: torch.Tensor, w: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    return F.linear(x, w, bias)


def _conv1x1(x: torch.Tensor, w: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """The same projection as a 1x1 convolution of the channels-last view (oneDNN on CPU).

    Shape:
        x (B, H, W, C_in), w (C_out, C_in) -> (B, H, W, C_out)
    """
    return F.conv2d(x.permute(0, 3, 1, 2), w[:, :, None, None], bias).permute(0, 2, 3, 1)


def _backward(fn: Callable[..., torch.Tensor], grad: torch.Tensor, *args: torch.Tensor) -> None:
    fn(*args).backward(grad)


def bench_projections(stage: Stage, batch: int, warmup: int, repeats: int) -> dict[str, float]:
    """conv1x1 / linear time of the mixer's two projections, in eval and forward+backward."""
    torch.manual_seed(0)
    out: dict[str, float] = {}
    for name, n_out in (("in_proj", 3 * stage.dim), ("out_proj", stage.dim)):
        x = torch.randn(batch, stage.size, stage.size, stage.dim, requires_grad=True)
        w = torch.randn(n_out, stage.dim, requires_grad=True)
        bias = torch.randn(n_out, requires_grad=True)
        grad = torch.randn(batch, stage.size, stage.size, n_out)
        with torch.no_grad():
            r = interleaved_medians(
                {"linear": partial(_linear, x, w, bias), "conv": partial(_conv1x1, x, w, bias)}, warmup, repeats
            )
        out[f"{name}_eval_ratio"] = r["conv"] / r["linear"]
        r = interleaved_medians(
            {
                "linear": partial(_backward, _linear, grad, x, w, bias),
                "conv": partial(_backward, _conv1x1, grad, x, w, bias),
            },
            warmup,
            repeats,
        )
        out[f"{name}_train_ratio"] = r["conv"] / r["linear"]
    return out


def main(argv: Sequence[str] | None = None) -> dict[str, dict[str, float]]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--stages", default="1,2,3,4", help="comma list of S18 stages (1-4)")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--repeats", type=int, default=9)
    p.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"# {machine_info(args.threads)}; clock: wall")
    print(
        "\n| stage | long conv FFT path ms | DFT products ms | ratio | training FFT path ms | training DFT products ms "
        "| ratio | in_proj conv1x1/linear eval, train | out_proj conv1x1/linear eval, train |"
        "\n|---|---|---|---|---|---|---|---|---|"
    )
    results: dict[str, dict[str, float]] = {}
    for key in [s.strip() for s in args.stages.split(",") if s.strip()]:
        if key not in STAGES:
            raise SystemExit(f"unknown stage {key!r}; choose from {', '.join(STAGES)}")
        stage = STAGES[key]
        r = bench_long_conv(stage, args.batch, args.warmup, args.repeats)
        r |= bench_long_conv_train(stage, args.batch, args.warmup, args.repeats)
        r |= bench_projections(stage, args.batch, args.warmup, args.repeats)
        results[key] = r
        print(
            f"| {key}: {stage.dim}ch {stage.size}x{stage.size} k{stage.kernel} | {r['fft_ms']:.2f} "
            f"| {r['dft_ms']:.2f} | {r['dft_ms'] / r['fft_ms']:.2f} "
            f"| {r['train_fft_ms']:.2f} | {r['train_dft_ms']:.2f} | {r['train_dft_ms'] / r['train_fft_ms']:.2f} "
            f"| {r['in_proj_eval_ratio']:.2f}, {r['in_proj_train_ratio']:.2f} "
            f"| {r['out_proj_eval_ratio']:.2f}, {r['out_proj_train_ratio']:.2f} |",
            flush=True,
        )
    return results


if __name__ == "__main__":
    main()
