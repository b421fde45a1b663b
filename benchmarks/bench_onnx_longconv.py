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

Each form is first compared with :func:`hyenapixel.ops.fftconv2d` (max |diff| printed), then timed interleaved
(:func:`benchmarks.common.interleaved_medians`). Run ``python -m benchmarks.bench_onnx_longconv`` from the
repository root (about 2 min on 2 cores; ``--dft-op`` adds a few minutes).
"""

from __future__ import annotations

import argparse
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
from hyenapixel.ops.dft import dft_axes2d


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


def forms(kernel: torch.Tensor, size: int, dft_op: bool) -> dict[str, nn.Module]:
    rows, cols = dft_axes2d(size, size, *kernel.shape[-2:])
    dft = FrozenConv2d(kernel, rows, cols, stage_matrices(rows, cols))
    out = {"dft": dft, "per_image": PerImage(dft), "direct": FrozenDirectConv2d(kernel, rows, cols)}
    if dft_op:
        out["dft_op"] = OnnxDFTConv(kernel, size, size)
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
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"# {machine_info(args.threads)}", flush=True)
    rows, results = [], {}
    with tempfile.TemporaryDirectory() as workdir:
        for key in args.stages.split(","):
            st = STAGES[key]
            torch.manual_seed(0)
            kernel = torch.randn(st.dim, st.kernel, st.kernel) / st.kernel
            for b in (int(v) for v in args.batches.split(",")):
                x = torch.randn(b, st.size, st.size, st.dim)
                ref = fftconv2d(x.permute(0, 3, 1, 2), kernel).permute(0, 2, 3, 1).numpy()
                calls, diffs = {}, {}
                for name, module in forms(kernel, st.size, args.dft_op).items():
                    sess = session(module, x, os.path.join(workdir, f"{name}.onnx"), args.threads)
                    feed = {sess.get_inputs()[0].name: x.numpy()}
                    diffs[name] = float(np.abs(sess.run(None, feed)[0] - ref).max())
                    calls[name] = lambda sess=sess, feed=feed: sess.run(None, feed)
                med = interleaved_medians(calls, args.warmup, args.repeats, pause=0.2)  # see bench_export --pause
                results[f"{key}|{b}"] = {"ms": {k: 1e3 * v for k, v in med.items()}, "max_abs_diff": diffs}
                shape = f"{st.size}x{st.size}, {st.dim} ch, kernel {st.kernel}"
                ratios = [f"{med[k] / med['dft']:.2f}" for k in ("per_image", "direct")]
                rows.append([key, shape, b, *(f"{1e3 * med[k]:.2f}" for k in calls), *ratios])
                print(f"# stage {key} batch {b}: max |diff| {diffs}; {machine_info(args.threads)}", flush=True)
    names = ["dft", "per_image", "direct", "dft_op"] if args.dft_op else ["dft", "per_image", "direct"]
    head = ["stage", "map", "batch", *(f"{n} ms" for n in names), "per_image / dft", "direct / dft"]
    print(markdown_table(head, rows))
    return results


if __name__ == "__main__":
    main()
