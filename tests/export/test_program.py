"""torch.export and torch.compile for every family (reduced official checkpoints): the exported program and the
compiled model compute what eager PyTorch computes, in eval and for a training step.

torch.compile is exercised with the ``aot_eager`` backend: it captures the forward with dynamo and the backward
with AOTAutograd, which is where graph breaks and unsupported operations show up, without inductor's C++ code
generation (minutes per model on a 2-core CI machine); it is run for the two long-convolution mixers (the other
families add only SepConv and attention stages, which torch.export covers here). benchmarks/bench_export.py runs the
inductor backend and prints its difference from eager.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import timm
import torch
from torch import nn

NAMES = ["hpx_former_s18", "hb_former_s18", "c_hpx_former_s18", "hpx_a_former_s18", "hb_a_former_s18"]
EVAL_TOL = 1e-5  # float32 logits; the exported graph runs the same kernels as eager
# relative to the largest gradient entry of each parameter tensor; eager runs the per-pixel linear layers on oneDNN
# (hyenapixel.ops.pointwise), the compiled graph on the GEMM: scalar gradients summed with cancellation differ ~2e-4
GRAD_TOL = 1e-3


def _reduced(name: str, reduced_models: dict, fixtures_dir: Path) -> nn.Module:
    r = reduced_models[name]
    overlay = dict(file=str(fixtures_dir / r["state_dict"]))
    return timm.create_model(name, pretrained=True, depths=r["depths"], dims=r["dims"], pretrained_cfg_overlay=overlay)


@pytest.mark.parametrize("name", NAMES)
def test_torch_export_matches_eager(name: str, reduced_models, fixtures_dir) -> None:
    model = _reduced(name, reduced_models, fixtures_dir).eval()
    x = torch.randn(2, 3, 64, 64)
    program = torch.export.export(model, (x,))
    x2 = torch.randn(2, 3, 64, 64)
    with torch.no_grad():  # (the frozen copy goes through torch.export in every ONNX export: test_onnx.py)
        assert (program.module()(x2) - model(x2)).abs().max().item() <= EVAL_TOL


@pytest.mark.slow
@pytest.mark.parametrize("name", ["hpx_former_s18", "hb_former_s18"])  # the two long-convolution mixers
def test_compiled_eval_and_training_step_match_eager(name: str, reduced_models, fixtures_dir) -> None:
    torch._dynamo.reset()
    eager = _reduced(name, reduced_models, fixtures_dir)
    model = copy.deepcopy(eager)
    compiled = torch.compile(model, backend="aot_eager", fullgraph=True)  # fullgraph: no graph breaks at all
    x = torch.randn(2, 3, 64, 64)
    target = torch.tensor([3, 7])

    eager.eval(), model.eval()
    with torch.no_grad():
        assert (compiled(x) - eager(x)).abs().max().item() <= EVAL_TOL

    eager.train(), model.train()
    losses = []
    for m in (eager, compiled):
        loss = nn.functional.cross_entropy(m(x), target)
        loss.backward()
        losses.append(loss.item())
    assert abs(losses[0] - losses[1]) <= EVAL_TOL
    grads_e = dict(eager.named_parameters())
    for n, p in model.named_parameters():
        ref = grads_e[n].grad
        assert p.grad is not None and ref is not None, n
        assert (p.grad - ref).abs().max().item() <= GRAD_TOL * max(ref.abs().max().item(), 1e-6), n
