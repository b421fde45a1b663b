"""One HyenaPixel long convolution (paper Section 3) in onnxruntime, per form, at the four S18 stage shapes: the
measurement behind :data:`hyenapixel.export.frozen.DIRECT_MAX_PIXELS` (docs/deploy.md).

Forms, each exported alone with the ``torch.export``-based ONNX exporter and run on onnxruntime's CPU provider on a
channels-last ``(B, H, W, C)`` map, as in the frozen mixer:

* **dft**: :class:`hyenapixel.export.FrozenConv2d`, DFT matrix products with the constant kernel spectrum;
* **per_image**: the same in :class:`hyenapixel.export.PerImage`, an ONNX ``Scan`` over the batch (the measurement
  behind :data:`hyenapixel.export.frozen.PER_IMAGE_MIN_PIXELS`, together with the whole models of ``bench_export``);
* **direct**: :class:`hyenapixel.export.FrozenDirectConv2d`, a depthwise ``Conv`` with the taps that reach the map;
* **dft_op** (``--dft-op``): ``torch.fft.rfft2``/``irfft2`` exported as ONNX ``DFT`` operators, zero-padded to
  the smallest power of two without wrap-around, the kernel spectrum a constant.
* **four_step<n1>** (``--four-step 2,4,8``): the dft form with its forward transform along H as a four-step DFT of
  length ``N = n1 * n2`` (:class:`FourStepConv`): 2.5x fewer multiply-adds along H at ``n1 = 4`` on the stage-1 map.
  It was tried for the batch-16 speed of the ONNX export and is slower (docs/deploy.md); it stays here so that
  the measurement can be rerun.

Each form is first compared with :func:`hyenapixel.ops.fftconv2d` (max |diff| printed), then timed interleaved
(:func:`benchmarks.common.interleaved_medians`). Run ``python -m benchmarks.bench_onnx_longconv`` from the
repository root (about 2 min on 2 cores; ``--dft-op`` adds a few minutes).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import tempfile
import warnings
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from benchmarks.common import STAGES, interleaved_medians, machine_info, markdown_table
from hyenapixel.export import onnx_session
from hyenapixel.export.frozen import FrozenConv2d, FrozenDirectConv2d, PerImage, stage_matrices
from hyenapixel.ops import fftconv2d
from hyenapixel.ops.dft import dft_axes2d, dft_spectrum2d


class OnnxDFTConv(nn.Module):
    """The long convolution with ``torch.fft`` (exported as ONNX ``DFT``), zero-padded to a power of two at least
    ``H + kh - 1`` per axis; channels-last in and out.

    Shape:
        (B, H, W, C) -> (B, H, W, C)
    """

    def __init__(self, kernel: torch.Tensor, height: int, width: int) -> None:
        super().__init__()
        kh, kw = kernel.shape[-2:]
        self.fft = (1 << (height + kh - 2).bit_length(), 1 << (width + kw - 2).bit_length())
        self.crop = (kh // 2, kh // 2 + height, kw // 2, kw // 2 + width)
        spec = torch.fft.rfft2(kernel.double(), s=self.fft)
        self.register_buffer("kr", spec.real.float(), persistent=False)
        self.register_buffer("ki", spec.imag.float(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = torch.fft.rfft2(x.permute(0, 3, 1, 2), s=self.fft)
        sr, si = s.real, s.imag
        y = torch.fft.irfft2(torch.complex(sr * self.kr - si * self.ki, sr * self.ki + si * self.kr), s=self.fft)
        r0, r1, c0, c1 = self.crop
        return y[..., r0:r1, c0:c1].permute(0, 2, 3, 1)


class FourStepConv(nn.Module):
    """The long convolution of :class:`hyenapixel.export.FrozenConv2d` with its forward transform along H as a
    four-step DFT; channels-last in and out.

    The H axis is transformed at length ``N = n1 * n2``, the wrap-free length rounded up to a multiple of ``n1``.
    With ``h = t1 + n1 t2`` and the frequency ``k = k2 + n2 k1``: one product over ``t2`` (a real ``2 n2 x r``
    matrix whose rows hold the cosine and sine part of each ``k2``, so that the rows of the map, which interleave
    real and imaginary parts, need no splitting), then per ``k2`` one small product over ``(cos/sin part, t1,
    real/imaginary)`` with the twiddle ``exp(-2 pi i t1 k2 / N)`` folded in, once for the real and once for the
    imaginary part of the spectrum. The spectrum rows are in ``(k2, k1)`` order; the kernel spectrum and the inverse
    along H (a dense product, as in the dft form) are permuted to match.

    Shape:
        (B, H, W, C) -> (B, H, W, C)
    """

    def __init__(self, kernel: torch.Tensor, size: int, n1: int) -> None:
        super().__init__()
        d = torch.float64
        rows, cols = dft_axes2d(size, size, *kernel.shape[-2:])
        n = -(-rows.n // n1) * n1
        n2, r = n // n1, -(-size // n1)
        self.steps = (n1, n2, r, n)
        freq = torch.arange(n).view(n1, n2).T.reshape(-1)  # spectrum row (k2, k1) holds frequency k2 + n2 k1
        padded = dataclasses.replace(rows, n=n)  # the kernel spectrum at the longer length (taps unchanged)
        spec = [s[:, freq].permute(1, 2, 0).reshape(n, -1) for s in dft_spectrum2d(kernel, padded, cols)]
        ang = -2 * math.pi * torch.arange(n2, dtype=d)[:, None] * torch.arange(r, dtype=d)[None] / n2
        outer = torch.stack([ang.cos(), ang.sin()], 1).reshape(2 * n2, r)  # rows (k2, cos/sin)
        t1 = torch.arange(n1, dtype=d)
        ang = -2 * math.pi * t1 * (torch.arange(n2, dtype=d)[:, None, None] / n + t1[:, None] / n1)  # (k2, k1, t1)
        dr, di = ang.cos(), ang.sin()
        # spectrum = sum over (m, t1, p) of inner[k2, k1, m, t1, p] * outer product (m: cos/sin, p: real/imaginary)
        inner = torch.zeros(2, n2, n1, 2, n1, 2, dtype=d)
        inner[0, :, :, 0, :, 0], inner[0, :, :, 1, :, 1] = dr, -dr
        inner[0, :, :, 0, :, 1], inner[0, :, :, 1, :, 0] = -di, -di
        inner[1, :, :, 0, :, 1], inner[1, :, :, 1, :, 0] = dr, dr
        inner[1, :, :, 0, :, 0], inner[1, :, :, 1, :, 1] = di, -di
        ang = 2 * math.pi * (torch.arange(size, dtype=d)[:, None] + rows.plan.center) * freq.to(d)[None] / n
        gr, gi = ang.cos() / n, ang.sin() / n
        inv = torch.cat([torch.cat([gr, -gi], 1), torch.cat([gi, gr], 1)], 0)  # rows (real/imaginary, h)
        mats = {
            "kr": spec[0], "ki": spec[1], "fw": cols.real_fwd.T, "aw": cols.real_inv.T, "outer": outer,
            "inner_re": inner[0].reshape(n2, n1, 4 * n1), "inner_im": inner[1].reshape(n2, n1, 4 * n1),
            "gh": inv.reshape(2, size, 2 * n).transpose(0, 1).reshape(2 * size, 2 * n),
        }  # fmt: skip
        for name, value in mats.items():
            self.register_buffer(name, value.to(torch.float32).contiguous(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n1, n2, r, n = self.steps
        b, h, _, c = x.shape
        a = torch.matmul(self.fw, x)  # (B, H, 2F, C): along W
        if r * n1 > h:
            a = nn.functional.pad(a, (0, 0, 0, 0, 0, r * n1 - h))
        a = a.reshape(b, r, -1)  # rows t2, columns (t1, re/im, F C)
        p = torch.matmul(self.outer, a).reshape(b, n2, 4 * n1, -1)  # (B, k2, (cos/sin, t1, re/im), F C)
        yr = torch.matmul(self.inner_re, p).reshape(b, n, -1)  # (B, N, F C), rows (k2, k1)
        yi = torch.matmul(self.inner_im, p).reshape(b, n, -1)
        zr, zi = yr * self.kr - yi * self.ki, yr * self.ki + yi * self.kr
        u = torch.matmul(self.gh, torch.cat([zr, zi], 1))  # (B, 2H, F C): inverse along H, cropped
        return torch.matmul(self.aw, u.reshape(b, h, -1, c))


def forms(kernel: torch.Tensor, size: int, dft_op: bool, four_step: Sequence[int] = ()) -> dict[str, nn.Module]:
    rows, cols = dft_axes2d(size, size, *kernel.shape[-2:])
    dft = FrozenConv2d(kernel, rows, cols, stage_matrices(rows, cols))
    out = {"dft": dft, "per_image": PerImage(dft), "direct": FrozenDirectConv2d(kernel, rows, cols)}
    if dft_op:
        out["dft_op"] = OnnxDFTConv(kernel, size, size)
    for n1 in four_step:
        out[f"four_step{n1}"] = FourStepConv(kernel, size, n1)
    return out


def session(module: nn.Module, x: torch.Tensor, path: str, threads: int):  # noqa: ANN201 - onnxruntime type
    """``module`` exported to ``path`` and opened in the library's onnxruntime session (CPU provider)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module.eval(), (x,), dynamo=True, opset_version=18, optimize=True).save(path)
    return onnx_session(path, threads)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--stages", default=",".join(STAGES), help="comma list of S18 stages (1-4)")
    p.add_argument("--batches", default="1,16")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    p.add_argument("--dft-op", action="store_true", help="also time the ONNX DFT operator form")
    p.add_argument("--four-step", default="", help="comma list of n1: also time the four-step forms (e.g. 2,4,8)")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"# {machine_info(args.threads)}", flush=True)
    rows, results = [], {}
    four_step = [int(v) for v in args.four_step.split(",") if v]
    with tempfile.TemporaryDirectory() as workdir:
        for key in args.stages.split(","):
            st = STAGES[key]
            torch.manual_seed(0)
            kernel = torch.randn(st.dim, st.kernel, st.kernel) / st.kernel
            for b in (int(v) for v in args.batches.split(",")):
                x = torch.randn(b, st.size, st.size, st.dim)
                ref = fftconv2d(x.permute(0, 3, 1, 2), kernel).permute(0, 2, 3, 1).numpy()
                calls, diffs = {}, {}
                for name, module in forms(kernel, st.size, args.dft_op, four_step).items():
                    sess = session(module, x, os.path.join(workdir, f"{name}.onnx"), args.threads)
                    feed = {sess.get_inputs()[0].name: x.numpy()}
                    diffs[name] = float(np.abs(sess.run(None, feed)[0] - ref).max())
                    calls[name] = lambda sess=sess, feed=feed: sess.run(None, feed)
                med = interleaved_medians(calls, args.warmup, args.repeats, pause=0.2)  # see bench_export --pause
                results[f"{key}|{b}"] = {"ms": {k: 1e3 * v for k, v in med.items()}, "max_abs_diff": diffs}
                shape = f"{st.size}x{st.size}, {st.dim} ch, kernel {st.kernel}"
                ratios = [f"{med[k] / med['dft']:.2f}" for k in calls if k != "dft"]
                rows.append([key, shape, b, *(f"{1e3 * med[k]:.2f}" for k in calls), *ratios])
                print(f"# stage {key} batch {b}: max |diff| {diffs}; {machine_info(args.threads)}", flush=True)
    names = list(next(iter(results.values()))["ms"])
    head = ["stage", "map", "batch", *(f"{n} ms" for n in names), *(f"{n} / dft" for n in names[1:])]
    print(markdown_table(head, rows))
    return results


if __name__ == "__main__":
    main()
