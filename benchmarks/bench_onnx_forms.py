"""Forms of an exported HyenaPixel model (paper Section 3 models, MetaFormer blocks) in onnxruntime, each timed
against the default export round by round (docs/deploy.md, "Channel MLPs" and "Speed"). Every form computes the
same function; they differ in the ONNX graph:

* **default**: :func:`hyenapixel.export.to_onnx` as it is: the MLPs' StarReLU folded into their second layer
  (:meth:`hyenapixel.layers.Mlp.fold_star_relu`), the folded MLPs as two 1x1 convolutions on the NCHW view
  (:class:`hyenapixel.layers.PointwiseConvMlp`: ``Conv``, ``Relu``, ``Mul``, ``Conv``, which onnxruntime runs in its
  blocked layout with the ReLU fused), the long convolutions of maps of 28 x 28 pixels or more image by image in a
  ``Scan``;
* **unfolded**: ``to_onnx(..., fold_mlps=False)``: the StarReLU kept (``MatMul``, ``Relu``, ``Pow``, ``Mul``,
  ``Add``, ``MatMul`` on the channels-last map);
* **matmul_mlp**: the folded MLP as ``MatMul`` products of the channels-last map (``MatMul``, ``Relu``, ``Pow``,
  ``MatMul``, ``Add``);
* **gemm2d**: the folded MLP on the map flattened to (pixels, channels), so that onnxruntime can fuse the first
  product with its ReLU (``FusedGemm``) and the second with its bias (``Gemm``);
* **qk_first**: the HyenaPixel mixer's ``q * k`` before the change to channels-last (two transposes of the map
  instead of three);
* **scan196**: ``to_onnx(..., per_image_min_pixels=196)``: the 14 x 14 maps of stage 3 in the ``Scan`` too.

The forms other than the first two are alternatives that did not pay off (docs/deploy.md); they stay here so that
the measurement can be rerun. ``matmul_mlp``, ``gemm2d`` and ``qk_first`` replace a method of the exported MLP or
mixer class while the model is exported.

The model gets :func:`benchmarks.common.trained_like` weights (onnxruntime removes the StarReLU's ``Mul`` by 1 and
``Add`` of 0 of the initial weights). Each form is compared with PyTorch eval on the same input (max |diff|
printed), then all forms are timed interleaved (:func:`benchmarks.common.interleaved_times`, 0.2 s untimed pause
before each call as in bench_export) at each batch size. The table gives each form's median time and its time over
the default's, divided round by round: the median over the rounds with a distribution-free 95 % interval
(:func:`benchmarks.common.median_interval`). Run ``python -m benchmarks.bench_onnx_forms --forms unfolded,matmul_mlp``
from the repository root (about 15 s of export per form and 2 min of timing at the defaults on 2 cores).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

import hyenapixel  # noqa: F401 - registers the models in timm
from benchmarks.common import interleaved_times, interval, machine_info, markdown_table, median_interval, trained_like
from hyenapixel.export import onnx_session, run_onnx, to_onnx
from hyenapixel.layers import Mlp, PointwiseConvMlp
from hyenapixel.mixers import HyenaPixelMixer

_MIXER_FORWARD = HyenaPixelMixer.forward


def gemm2d_mlp(self: Mlp, x: torch.Tensor) -> torch.Tensor:
    """The channel MLP on the map flattened to (pixels, channels).

    Shape:
        (B, H, W, C) -> (B, H, W, C)
    """
    shape = x.shape
    h = self.act(F.linear(x.reshape(-1, shape[-1]), self.fc1.weight, self.fc1.bias))
    return F.linear(h, self.fc2.weight, self.fc2.bias).reshape(shape[:-1] + (-1,))


def qk_first(self: HyenaPixelMixer, x: torch.Tensor) -> torch.Tensor:
    """:meth:`HyenaPixelMixer.forward` of a frozen mixer (q/k/v branches, ``frozen_conv``) with ``q * k`` formed
    channels-first; a mixer that is not frozen (the exporter's size probe) runs its own forward.

    Shape:
        (B, H, W, C) -> (B, H, W, C)
    """
    if self.frozen_conv is None:
        return _MIXER_FORWARD(self, x)
    x = x.permute(0, 3, 1, 2)
    q, k, v = (dw(pw(x)) for pw, dw in zip(self.in_proj, self.short_conv))
    y = v.permute(0, 2, 3, 1) * self.frozen_conv(self.qk_norm((q * k).permute(0, 2, 3, 1)))
    return self.drop(self.out_proj(self.out_norm(y)))


@dataclass(frozen=True)
class Form:
    """An export form: methods replaced while exporting (class, name, function) and ``to_onnx`` keywords."""

    patches: tuple[tuple[type, str, Callable[..., Any]], ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)

    @contextlib.contextmanager
    def applied(self) -> Iterator[None]:
        saved = [(cls, name, cls.__dict__[name]) for cls, name, _ in self.patches]
        try:
            for cls, name, fn in self.patches:
                setattr(cls, name, fn)
            yield
        finally:
            for cls, name, fn in saved:
                setattr(cls, name, fn)


FORMS: dict[str, Form] = {
    "default": Form(),
    "unfolded": Form(kwargs={"fold_mlps": False}),
    "matmul_mlp": Form(((PointwiseConvMlp, "forward", Mlp.forward),)),
    "gemm2d": Form(((PointwiseConvMlp, "forward", gemm2d_mlp),)),
    "qk_first": Form(((HyenaPixelMixer, "forward", qk_first),)),
    "scan196": Form(kwargs={"per_image_min_pixels": 196}),
}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model", default="hpx_former_s18")
    p.add_argument("--img", type=int, default=224)
    p.add_argument("--batches", default="16,1", help="comma list of batch sizes")
    others = [f for f in FORMS if f != "default"]
    p.add_argument(
        "--forms",
        default="unfolded,matmul_mlp",
        help=f"comma list out of {','.join(others)} (the default is always timed)",
    )
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    args = p.parse_args(argv)
    chosen = [f.strip() for f in args.forms.split(",") if f.strip()]
    unknown = sorted(set(chosen) - set(others))
    if unknown:
        p.error(f"--forms: unknown {', '.join(unknown)}; choose from {', '.join(others)}")
    args.forms = ["default", *dict.fromkeys(chosen)]
    return args


def main(argv: Sequence[str] | None = None) -> dict:
    import timm

    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"# {machine_info(args.threads)}; {args.model} at {args.img} px", flush=True)
    torch.manual_seed(0)
    model = trained_like(timm.create_model(args.model).eval())
    results: dict = {"max_abs_diff": {}}
    with tempfile.TemporaryDirectory() as workdir:
        sessions = {}
        x = torch.randn(2, 3, args.img, args.img)
        with torch.no_grad():
            want = model(x)
        for name in args.forms:
            form = FORMS[name]
            with form.applied():
                path = to_onnx(model, os.path.join(workdir, f"{name}.onnx"), args.img, **form.kwargs)
            sessions[name] = onnx_session(path, args.threads)
            diff = (run_onnx(sessions[name], x) - want).abs().max().item()
            results["max_abs_diff"][name] = diff
            print(f"# {name}: max |onnxruntime - eager| {diff:.1e}", flush=True)
        rows = []
        for b in (int(v) for v in args.batches.split(",")):
            xb = torch.randn(b, 3, args.img, args.img)
            calls = {k: (lambda s=s, xb=xb: run_onnx(s, xb)) for k, s in sessions.items()}
            times = interleaved_times(calls, args.warmup, args.repeats, pause=0.2)  # see bench_export --pause
            results[str(b)] = out = {}
            for k, t in times.items():
                ratio = median_interval([a / d for a, d in zip(t, times["default"])])
                out[k] = {"ms_per_image": 1e3 * statistics.median(t) / b, "vs_default": ratio}
                rows.append([b, k, f"{out[k]['ms_per_image']:.1f}", interval(ratio)])
            print(f"# batch {b} done, {machine_info(args.threads)}", flush=True)
    print(markdown_table(["batch", "form", "ms / image", "vs default, per round [95 % interval]"], rows))
    return results


if __name__ == "__main__":
    main()
