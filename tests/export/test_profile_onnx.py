"""``benchmarks/profile_onnx.py``: the attribution of onnxruntime's profiled nodes to model parts (against module
paths written out by hand), and a smoke run on a reduced model whose tables add up. No timing thresholds."""

from __future__ import annotations

import math
from types import ModuleType

import pytest
import timm
import torch

pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def prof() -> ModuleType:
    from benchmarks import profile_onnx

    return profile_onnx


def _scope(module: str, fx_node: str) -> list[str]:
    """The exporter's ``name_scopes`` of a node: '', the module path's prefixes (an index stays with its container:
    'stages.0', 'stages.0.blocks', 'stages.0.blocks.1', ...), then the FX node's name."""
    prefixes, parts = [], module.split(".")
    for i, part in enumerate(parts):
        if part.isdigit() and i:
            prefixes[-1] = f"{prefixes[-1]}.{part}"
        else:
            prefixes.append(f"{prefixes[-1]}.{part}" if prefixes else part)
    return ["", *prefixes, fx_node]


@pytest.mark.parametrize(
    ("module", "op", "want"),
    [
        ("stages.0.blocks.1.token_mixer.frozen_conv", "MatMul", ("stages.0", "long conv")),
        ("stages.2.blocks.0.token_mixer.in_proj", "MatMul", ("stages.2", "mixer proj")),
        ("stages.0.blocks.0.token_mixer.short_conv", "Conv", ("stages.0", "mixer dwconv")),
        ("stages.1.blocks.2.token_mixer.qk_norm", "LayerNormalization", ("stages.1", "mixer norms")),
        ("stages.1.blocks.2.token_mixer", "Mul", ("stages.1", "mixer rest")),
        ("stages.3.blocks.0.mlp.fc2", "MatMul", ("stages.3", "mlp")),
        ("stages.3.blocks.0.norm2", "LayerNormalization", ("stages.3", "block norms")),
        ("stages.2.blocks.4", "Add", ("stages.2", "residual")),
        ("stages.1.downsample.conv", "Conv", ("stages.1", "stem/downsample/head")),
        ("stem.conv", "Conv", ("stem", "stem/downsample/head")),
        # convformer: the 1x1 convolution fused with the StarReLU after it is named after the activation
        ("stages.0.blocks.0.token_mixer.act1.relu", "Conv", ("stages.0", "mixer proj")),
    ],
)
def test_classify(prof: ModuleType, module: str, op: str, want: tuple[str, str]) -> None:
    scope = _scope(module, "op_7")
    assert prof.classify("node_op_7", op, {"node_op_7": scope}) == want
    assert prof.classify("op_7_nchwc", op, {"op_7": scope}) == want  # renamed by onnxruntime's layout pass


def test_layout_and_unknown_nodes(prof: ModuleType) -> None:
    assert prof.classify("ReorderOutput_token_4", "ReorderOutput", {}) == ("-", "layout")
    assert prof.classify("node_Split_400", "Split", {}) == ("-", "other")


@pytest.mark.slow
def test_profile_adds_up(prof: ModuleType, tmp_path) -> None:
    from hyenapixel.export import to_onnx

    torch.manual_seed(0)
    model = timm.create_model("hpx_former_s4", depths=(1, 1, 1, 1), dims=(8, 8, 16, 16)).eval()
    path = to_onnx(model, tmp_path / "m.onnx", 64)
    res = prof.profile({"m": str(path)}, batch=2, img=64, runs=1, threads=1)["m"]
    total = res["total"]["nodes"]
    assert total > 0 and math.isfinite(res["total"]["wall"])
    for key in ("op", "part", "stage", "part_op"):  # each table splits the same node times
        assert sum(res[key].values()) == pytest.approx(total, rel=1e-9)
    assert res["part"]["long conv"] > 0 and res["part"]["mixer dwconv"] > 0
    assert set(res["stage"]) >= {"stages.0", "stages.3"}


def test_scan_body_counts_for_the_scan(prof: ModuleType) -> None:
    # a Scan (a long convolution run image by image) whose body nodes are profiled inside its own event: they count
    # for the Scan's stage and part with their own operator, the Scan for the rest of its time; nothing twice
    def node(name: str, op: str, ts: int, dur: int) -> dict:
        return {"cat": "Node", "name": f"{name}_kernel_time", "ts": ts, "dur": dur, "args": {"op_name": op}}

    events = [
        {"name": "model_run", "ts": 0},  # the warm-up run, not counted
        node("node_scan", "Scan", 1, 1000),
        {"name": "model_run", "ts": 2000},
        node("node_scan", "Scan", 2100, 500),
        node("node_matmul", "MatMul", 2150, 200),  # body nodes: names of the Scan's subgraph
        node("node_mul", "Mul", 2400, 100),
        node("node_layer_norm", "LayerNormalization", 2700, 300),  # after the Scan
    ]
    scopes = {
        "node_scan": _scope("stages.0.blocks.0.token_mixer.frozen_conv", "scan"),
        "node_layer_norm": _scope("stages.0.blocks.0.norm1", "layer_norm"),
    }
    res = prof._summarise(events, scopes, runs=1, batch=1)
    assert res["part"] == pytest.approx({"long conv": 0.5, "block norms": 0.3})
    assert res["op"] == pytest.approx({"Scan": 0.2, "MatMul": 0.2, "Mul": 0.1, "LayerNormalization": 0.3})
    assert res["stage"] == pytest.approx({"stages.0": 0.8}) and res["total"]["nodes"] == pytest.approx(0.8)
