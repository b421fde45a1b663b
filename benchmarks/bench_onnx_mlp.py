"""The channel MLP of an exported HyenaPixel model (paper Section 3 models, MetaFormer blocks) in onnxruntime, per
form, in the whole model (docs/deploy.md, "Channel MLPs"):

* **folded**: the default export (:func:`hyenapixel.export.to_onnx`): the StarReLU's scale and shift folded into
  the second layer (:func:`hyenapixel.export.fold_star_relu`), ``MatMul``, ``Relu``, ``Pow``, ``MatMul``, ``Add``;
* **unfolded**: ``to_onnx(..., fold_mlps=False)``: the StarReLU's ``Mul`` and ``Add`` on the hidden map as well;
* **conv1x1** (``--conv1x1``): the folded MLP written as two 1x1 convolutions on the NCHW view, the square as a
  product, so that onnxruntime runs the MLP in its blocked (NCHWc) layout with the ReLU fused into the first
  convolution. It was tried and is not faster than ``MatMul`` (docs/deploy.md); it stays here so that the
  measurement can be rerun.

The model gets :func:`benchmarks.common.trained_like` weights (onnxruntime removes the StarReLU's ``Mul`` by 1 and
``Add`` of 0 of the initial weights). Each form is compared with PyTorch eval on the same input (max |diff|
printed), then all forms are timed interleaved (:func:`benchmarks.common.interleaved_medians`) at each batch size.
Run ``python -m benchmarks.bench_onnx_mlp`` from the repository root (about 3 min on 2 cores).
"""

from __future__ import annotations

import argparse
import copy
import os
import tempfile
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

import hyenapixel  # noqa: F401 - registers the models in timm
from benchmarks.common import interleaved_medians, machine_info, markdown_table, trained_like
from hyenapixel.export import onnx_session, run_onnx, to_onnx
from hyenapixel.layers import Mlp


class Conv1x1Mlp(Mlp):
    """A folded channel MLP (``act`` a squared ReLU, see :func:`hyenapixel.export.fold_star_relu`) as two 1x1
    convolutions on the NCHW view of the channels-last map.

    Shape:
        (B, H, W, C) -> (B, H, W, C)
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(F.conv2d(x.permute(0, 3, 1, 2), self.fc1.weight[:, :, None, None], self.fc1.bias))
        return F.conv2d(h * h, self.fc2.weight[:, :, None, None], self.fc2.bias).permute(0, 2, 3, 1)


def with_conv1x1_mlps(model: nn.Module) -> nn.Module:
    """A copy of ``model`` whose channel MLPs export as :class:`Conv1x1Mlp` (``to_onnx`` folds them first)."""
    model = copy.deepcopy(model)
    for m in model.modules():
        if type(m) is Mlp:
            m.__class__ = Conv1x1Mlp
    return model


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model", default="hpx_former_s18")
    p.add_argument("--img", type=int, default=224)
    p.add_argument("--batches", default="16,1", help="comma list of batch sizes")
    p.add_argument("--conv1x1", action="store_true", help="also the 1x1-convolution form")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--repeats", type=int, default=9)
    p.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict:
    import timm

    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"# {machine_info(args.threads)}; {args.model} at {args.img} px", flush=True)
    torch.manual_seed(0)
    model = trained_like(timm.create_model(args.model).eval())
    forms = {"folded": (model, True), "unfolded": (model, False)}
    if args.conv1x1:
        forms["conv1x1"] = (with_conv1x1_mlps(model), True)
    results: dict = {}
    with tempfile.TemporaryDirectory() as workdir:
        sessions = {}
        x = torch.randn(2, 3, args.img, args.img)
        with torch.no_grad():
            want = model(x)
        for name, (m, fold) in forms.items():
            path = to_onnx(m, os.path.join(workdir, f"{name}.onnx"), args.img, fold_mlps=fold)
            sessions[name] = onnx_session(path, args.threads)
            diff = (run_onnx(sessions[name], x) - want).abs().max().item()
            results.setdefault("max_abs_diff", {})[name] = diff
            print(f"# {name}: max |onnxruntime - eager| {diff:.1e}", flush=True)
        rows = []
        for b in (int(v) for v in args.batches.split(",")):
            xb = torch.randn(b, 3, args.img, args.img)
            calls = {k: (lambda s=s, xb=xb: run_onnx(s, xb)) for k, s in sessions.items()}
            med = interleaved_medians(calls, args.warmup, args.repeats, pause=0.2)  # see bench_export --pause
            results[str(b)] = {k: 1e3 * v / b for k, v in med.items()}
            rows += [[b, k, f"{1e3 * v / b:.1f}", f"{v / med['folded']:.3f}"] for k, v in med.items()]
            print(f"# batch {b} done, {machine_info(args.threads)}", flush=True)
    print(markdown_table(["batch", "form", "ms / image", "vs folded"], rows))
    return results


if __name__ == "__main__":
    main()
