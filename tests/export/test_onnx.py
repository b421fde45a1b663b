"""ONNX export of every family (reduced official checkpoints, so every path of the model matters) checked in
onnxruntime against PyTorch eval, the frozen inference copy against the original, and the export errors."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path

import pytest
import timm
import torch
from torch import nn

from hyenapixel.export import (
    ExportError,
    FrozenConv1d,
    FrozenConv2d,
    FrozenDirectConv2d,
    PerImage,
    freeze_long_convs,
    image_shape,
    mlps_as_convolutions,
    onnx_session,
    run_onnx,
    to_onnx,
    verify_onnx,
)
from hyenapixel.export.frozen import PER_IMAGE_MIN_PIXELS, stage_matrices
from hyenapixel.layers import Mlp, PointwiseConvMlp, SquaredReLU, StarReLU
from hyenapixel.mixers import HyenaMixer1d, HyenaPixelMixer
from hyenapixel.mixers.hyenapixel import projection_branches
from hyenapixel.ops.dft import dft_axes2d, sequence_dft
from hyenapixel.ops.reference import fftconv1d_ref, fftconv2d_ref

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

# one reduced official checkpoint per family: depths [1, 1, 2, 1], dims [32, 32, 64, 96], paper kernel sizes; the
# fixtures also hold the official implementation's logits for them
FAMILIES = {
    "hpx": "hpx_former_s18",
    "hb": "hb_former_s18",
    "c_hpx": "c_hpx_former_s18",
    "hpx_a": "hpx_a_former_s18",
    "hb_a": "hb_a_former_s18",
}
TOL = 1e-4  # the bound for onnxruntime against PyTorch eval, float32


def _reduced(name: str, reduced_models: dict, fixtures_dir: Path) -> nn.Module:
    r = reduced_models[name]
    overlay = dict(file=str(fixtures_dir / r["state_dict"]))
    model = timm.create_model(name, pretrained=True, depths=r["depths"], dims=r["dims"], pretrained_cfg_overlay=overlay)
    return model.eval()


@pytest.fixture(scope="module")
def exported(request, reduced_models, fixtures_dir, tmp_path_factory) -> dict:
    """family -> (model, onnx path, size), exported once per module at the size of an official fixture input:
    192 x 256 for hpx (non-square), 224 x 224 for the others."""
    out = {}
    for family, name in FAMILIES.items():
        model = _reduced(name, reduced_models, fixtures_dir)
        size = (192, 256) if family == "hpx" else (224, 224)
        path = to_onnx(model, tmp_path_factory.mktemp(family) / f"{name}.onnx", size)
        out[family] = (model, path, size)
    return out


@pytest.mark.slow
@pytest.mark.parametrize("family", list(FAMILIES))
def test_onnxruntime_matches_pytorch_and_the_official_logits(
    exported: dict, family: str, reduced_models, parity_inputs
) -> None:
    model, path, size = exported[family]
    key, logits = ("x192x256", "logits_192x256") if size == (192, 256) else ("x224", "logits_224")
    official = parity_inputs[key]
    x3 = torch.randn(3, 3, *size)
    checks = verify_onnx(path, model, [("official", official), ("batch 3", x3)])  # dynamic batch: 1 or 2, and 3
    for c in checks:
        assert c.max_abs_diff <= TOL, c
        assert c.top1_agreement == 1.0
    # independent reference: the official implementation's logits for this checkpoint and input
    got = run_onnx(onnx_session(path), official)
    ref = torch.tensor(reduced_models[FAMILIES[family]][logits])
    assert got.shape == ref.shape and (got - ref).abs().max().item() <= TOL


@pytest.mark.slow
@pytest.mark.parametrize("family", list(FAMILIES))
def test_graph_has_no_fft_or_complex_operators(exported: dict, family: str) -> None:
    model, path, size = exported[family]
    graph = onnx.load(str(path)).graph
    ops = _operators(graph)
    assert not set(ops) & {"DFT", "STFT", "Loop", "If"}
    assert "MatMul" in ops
    # one Scan per long convolution that runs image by image: the DFT forms on maps of 28 x 28 pixels or more
    per_image = freeze_long_convs(model, size, per_image_min_pixels=PER_IMAGE_MIN_PIXELS)
    scans = sum(isinstance(m, PerImage) for m in per_image.modules())
    assert ops.count("Scan") == scans
    assert scans > 0 or family == "c_hpx"  # c_hpx: separable convolutions in stages 1-2, maps below 28 x 28 after
    batch = graph.input[0].type.tensor_type.shape.dim[0]
    assert batch.dim_param and not batch.dim_value  # symbolic batch
    assert [d.dim_value for d in graph.input[0].type.tensor_type.shape.dim[1:]] == [3, *size]


def _operators(graph) -> list[str]:  # noqa: ANN001 - onnx.GraphProto
    """Operator types of ``graph`` and of the graphs inside its nodes (a Scan's body), one entry per node."""
    ops = []
    for node in graph.node:
        ops.append(node.op_type)
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                ops += _operators(attr.g)
    return ops


def _per_image_cases() -> dict[str, tuple[nn.Module, Callable[[torch.Tensor], torch.Tensor], tuple[int, ...]]]:
    """A frozen 2D and 1D long convolution (DFT forms), the direct reference and the shape of one input image."""
    torch.manual_seed(0)
    k2, k1 = torch.randn(6, 15, 13), torch.randn(5, 33)
    rows, cols = dft_axes2d(9, 8, 15, 13)
    return {
        "2d": (
            FrozenConv2d(k2, rows, cols, stage_matrices(rows, cols)),
            lambda x: fftconv2d_ref(x.permute(0, 3, 1, 2), k2).permute(0, 2, 3, 1),  # channels-last
            (9, 8, 6),
        ),
        "1d": (FrozenConv1d(k1, sequence_dft(20, 33, False)), lambda x: fftconv1d_ref(x, k1, causal=False), (5, 20)),
    }


@pytest.mark.parametrize("case", ["2d", "1d"])
def test_per_image_convolution_is_a_scan_when_exported(case: str) -> None:
    conv, reference, shape = _per_image_cases()[case]
    wrapped = PerImage(conv)
    batch = torch.export.Dim("batch", min=1, max=64)
    program = torch.export.export(wrapped, (torch.randn(2, *shape),), dynamic_shapes=({0: batch},))
    assert any("scan" in str(node.target) for node in program.graph.nodes)  # image by image in the graph
    for b in (1, 3):
        x = torch.randn(b, *shape)
        want = reference(x.double())
        with torch.no_grad():
            for got in (program.module()(x), wrapped(x)):  # exported (scan) and eager (whole batch)
                assert got.shape == want.shape and (got.double() - want).abs().max().item() < 1e-4


def test_per_image_threshold_and_no_scan(tmp_path: Path) -> None:
    # stage 1 of a 128 px model is 32 x 32 (scanned), stage 2 16 x 16 (batched); 0 turns the Scan off
    torch.manual_seed(0)
    model = timm.create_model("hpx_former_s4", depths=(1, 1, 1, 1), dims=(8, 8, 16, 16)).eval()
    frozen = freeze_long_convs(model, 128, per_image_min_pixels=PER_IMAGE_MIN_PIXELS)
    assert isinstance(frozen.stages[0].blocks[0].token_mixer.frozen_conv, PerImage)
    assert isinstance(frozen.stages[1].blocks[0].token_mixer.frozen_conv, FrozenConv2d)
    assert not any(isinstance(m, PerImage) for m in freeze_long_convs(model, 128).modules())  # default: none
    x = torch.randn(3, 3, 128, 128)
    with torch.no_grad():
        want = model(x)
    for limit, scans in ((PER_IMAGE_MIN_PIXELS, 1), (0, 0)):
        path = to_onnx(model, tmp_path / f"m{limit}.onnx", 128, per_image_min_pixels=limit)
        assert _operators(onnx.load(str(path)).graph).count("Scan") == scans
        assert (run_onnx(onnx_session(path), x) - want).abs().max().item() < TOL
    path = to_onnx(model, tmp_path / "static.onnx", 128, dynamic_batch=False)  # batch 1: nothing to scan over
    assert "Scan" not in _operators(onnx.load(str(path)).graph)


@pytest.mark.parametrize("family", ["hpx", "hb", "c_hpx"])
def test_frozen_copy_computes_the_same_function(reduced_models, fixtures_dir, family: str) -> None:
    model = _reduced(FAMILIES[family], reduced_models, fixtures_dir)
    frozen = freeze_long_convs(model, (64, 80))
    convs = [m for m in frozen.modules() if isinstance(m, (FrozenConv1d, FrozenConv2d, FrozenDirectConv2d))]
    mixers = [m for m in model.modules() if isinstance(m, (HyenaPixelMixer, HyenaMixer1d))]
    assert len(convs) == len(mixers) > 0  # every long convolution frozen
    x = torch.randn(2, 3, 64, 80)
    with torch.no_grad():
        assert (frozen(x) - model(x)).abs().max().item() < 1e-4
    kinds = {"hpx": {FrozenConv2d, FrozenDirectConv2d}, "hb": {FrozenConv1d}, "c_hpx": {FrozenDirectConv2d}}
    assert {type(c) for c in convs} == kinds[family]  # 2D: DFT products at 16 x 20 px, direct at 4 x 5 px
    with torch.no_grad():  # an empty batch gives an empty output, as the model itself does
        empty = frozen(torch.zeros(0, 3, 64, 80))
        assert empty.shape[0] == 0 and empty.shape == model(torch.zeros(0, 3, 64, 80)).shape
    assert not any(isinstance(m, (FrozenConv1d, FrozenConv2d, FrozenDirectConv2d)) for m in model.modules())
    with pytest.raises(ExportError, match="frozen for a different input size"):
        frozen(torch.randn(1, 3, 64, 64))
    frozen64 = freeze_long_convs(model.double(), (64, 80))  # a float64 model is frozen from its float32 copy
    assert next(model.parameters()).dtype == torch.float64 and next(frozen64.parameters()).dtype == torch.float32
    with torch.no_grad():
        assert (frozen64(x) - model(x.double())).abs().max().item() < 1e-4


@pytest.mark.parametrize(("h", "w", "kh", "kw"), [(7, 7, 13, 13), (4, 5, 27, 27), (6, 3, 4, 5), (5, 5, 3, 3)])
def test_direct_convolution_equals_reference(h: int, w: int, kh: int, kw: int) -> None:
    # the small-map form against the independent direct reference (kernels larger than the map, even sizes)
    rows, cols = dft_axes2d(h, w, kh, kw)
    k = torch.randn(6, kh, kw)
    x = torch.randn(2, 6, h, w)
    got = FrozenDirectConv2d(k, rows, cols)(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)  # channels-last
    assert got.dtype == torch.float32 and (got.double() - fftconv2d_ref(x, k)).abs().max().item() < 1e-5


@pytest.mark.parametrize("direct_max_pixels", [0, 10**6])
def test_frozen_mixer_keeps_the_mixer_interface(direct_max_pixels: int) -> None:
    # the frozen HyenaPixel mixer is the same class with its seams filled (q/k/v branches, a frozen channels-last
    # long convolution); its forward and its channels-first long_conv equal the original mixer's, for the DFT and
    # the direct form, and its parameters are those of the original
    torch.manual_seed(0)
    model = timm.create_model("hpx_former_s4", depths=(1, 1, 1, 1), dims=(8, 8, 16, 16)).eval()
    frozen = freeze_long_convs(model, 64, direct_max_pixels=direct_max_pixels)
    mixer, twin = model.stages[0].blocks[0].token_mixer, frozen.stages[0].blocks[0].token_mixer
    kind = FrozenDirectConv2d if direct_max_pixels else FrozenConv2d
    assert type(twin) is HyenaPixelMixer and isinstance(twin.frozen_conv, kind) and mixer.frozen_conv is None
    # the C -> 3C projection and the 3C depthwise convolution become one 1x1 + depthwise branch per q, k, v
    assert len(twin.in_proj) == len(twin.short_conv) == 3
    assert all(
        pw.weight.shape == (8, 8, 1, 1) and dw.weight.shape == (8, 1, 5, 5) and dw.groups == 8
        for pw, dw in zip(twin.in_proj, twin.short_conv)
    )
    assert isinstance(mixer.in_proj, nn.Linear) and mixer.short_conv.weight.shape[0] == 24  # the original untouched
    x = torch.randn(2, 16, 16, 8)
    u = torch.randn(2, 8, 16, 16)
    with torch.no_grad():
        assert (twin(x) - mixer(x)).abs().max().item() < 1e-5
        assert (twin.long_conv(u) - fftconv2d_ref(u, mixer.kernel())).abs().max().item() < 1e-4


@pytest.mark.parametrize(
    ("conv", "bias"),
    [
        (nn.Conv2d(12, 12, 5, padding=2, groups=12), True),
        (nn.Conv2d(12, 12, 3, padding=1, groups=12, bias=False), False),
        (nn.Conv1d(12, 12, 3, padding=1, groups=12), True),  # bidirectional Hyena
        (nn.Conv1d(12, 12, 3, padding=2, groups=12), True),  # causal Hyena: padded on both sides, cropped after
    ],
)
def test_projection_branches_compute_the_joint_projection(conv: nn.Module, bias: bool) -> None:
    # reference: the C -> 3C linear layer on the channels-last input, then the depthwise convolution over all 3C
    torch.manual_seed(0)
    linear = nn.Linear(4, 12, bias=bias).double()
    conv = conv.double()
    spatial = (7, 9) if isinstance(conv, nn.Conv2d) else (11,)
    x = torch.randn(2, *spatial, 4, dtype=torch.float64)
    with torch.no_grad():
        want = conv(linear(x).movedim(-1, 1))[..., : spatial[-1]]
        pointwise, depthwise = projection_branches(linear, conv, 4)
        got = torch.cat([dw(pw(x.movedim(-1, 1)))[..., : spatial[-1]] for pw, dw in zip(pointwise, depthwise)], 1)
    assert len(pointwise) == len(depthwise) == 3
    assert all((pw.bias is None) == (not bias) and dw.groups == 4 for pw, dw in zip(pointwise, depthwise))
    assert got.shape == want.shape and (got - want).abs().max().item() < 1e-12


def test_stages_share_their_dft_matrices(reduced_models, fixtures_dir) -> None:
    frozen = freeze_long_convs(_reduced("hpx_former_s18", reduced_models, fixtures_dir), 64, direct_max_pixels=0)
    stage3 = [m for n, m in frozen.named_modules() if isinstance(m, FrozenConv2d) and n.startswith("stages.2")]
    assert len(stage3) == 2 and stage3[0].fh is stage3[1].fh and stage3[0].kr is not stage3[1].kr


def test_input_sizes_the_model_cannot_take_are_refused(tmp_path: Path) -> None:
    model = timm.create_model("hpx_former_s4", depths=(1, 1, 1, 1), dims=(8, 8, 16, 16)).eval()
    with pytest.raises(ExportError, match="at least 32 pixels"):
        to_onnx(model, tmp_path / "m.onnx", (24, 64))
    with pytest.raises(ExportError, match="H or"):
        freeze_long_convs(model, (1, 64, 64, 3))
    with pytest.raises(ExportError, match="64x3 is too small"):  # (H, W, C) read as timm's (C, H, W)
        freeze_long_convs(model, (64, 64, 3))
    (tmp_path / "notes.txt").write_text("a file, not a folder")
    with pytest.raises(ExportError, match="notes.txt is a file, not a folder"):
        to_onnx(model, tmp_path / "notes.txt" / "m.onnx", 64)
    vit = timm.create_model("vit_tiny_patch16_224", img_size=64, depth=1).eval()  # position embedding: 64 px only
    with pytest.raises(ExportError, match="VisionTransformer cannot take 96x96 images"):
        to_onnx(vit, tmp_path / "vit.onnx", 96)


def test_timms_input_size_tuple_is_accepted() -> None:
    """``model.pretrained_cfg["input_size"]``, timm's (C, H, W), works as the export size; its C must agree with an
    explicit in_chans."""
    model = timm.create_model("hpx_former_s4", depths=(1, 1, 1, 1), dims=(8, 8, 16, 16), in_chans=1).eval()
    x = torch.randn(2, 1, 32, 48)
    torch.testing.assert_close(freeze_long_convs(model, (1, 32, 48))(x), freeze_long_convs(model, (32, 48))(x))
    with pytest.raises(ExportError, match="has 1 channels, but in_chans=3"):
        freeze_long_convs(model, (1, 32, 48), in_chans=3)
    rgb = timm.create_model("hpx_former_s4", depths=(1, 1, 1, 1), dims=(8, 8, 16, 16))
    assert image_shape(rgb.pretrained_cfg["input_size"]) == ((224, 224), 3)


class _SubclassedMixer(HyenaPixelMixer):
    """A long-convolution mixer the exporter does not know (it might change what long_conv means)."""


class _DataDependent(nn.Module):
    """Control flow on tensor values: torch.export (and so the ONNX exporter) cannot trace it."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean((1, 2, 3))[:, None] if x.sum() > 0 else -x.mean((1, 2, 3))[:, None]


def test_unsupported_models_are_refused(tmp_path: Path) -> None:
    mixer = _SubclassedMixer(8, kernel_size=5, filter_emb_dim=8)
    with pytest.raises(ExportError, match="does not know"):
        freeze_long_convs(nn.Sequential(mixer), 32)
    with pytest.raises(ExportError, match="_DataDependent cannot be exported to ONNX"):
        to_onnx(_DataDependent(), tmp_path / "dd.onnx", 32)


def test_session_records_a_profile_only_when_asked(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = timm.create_model("hpx_former_s4", depths=(1, 1, 1, 1), dims=(8, 8, 16, 16)).eval()
    path = to_onnx(model, tmp_path / "new" / "folder" / "m.onnx", 64)  # missing folders are created
    x = torch.randn(2, 3, 64, 64)
    plain = onnx_session(path, 1)
    run_onnx(plain, x)
    assert plain.end_profiling() == ""  # onnxruntime writes nothing without profiling
    profiled = onnx_session(path, 1, profile_prefix=tmp_path / "prof")
    run_onnx(profiled, x)
    written = Path(profiled.end_profiling())
    assert written.parent == tmp_path and written.name.startswith("prof") and written.suffix == ".json"
    events = json.loads(written.read_text())
    assert any(e.get("cat") == "Node" and e.get("args", {}).get("op_name") == "MatMul" for e in events)


def test_mlps_as_convolutions_swaps_the_folded_mlps(trained_mlp: Mlp) -> None:
    mlp = trained_mlp
    mlp.fold_star_relu()
    others = nn.ModuleList([Mlp(12), Mlp(12, act_layer=nn.GELU)])  # StarReLU and GELU MLPs stay as they are
    model = nn.ModuleList([copy.deepcopy(mlp), others])
    assert mlps_as_convolutions(model) == 1  # swapped in its parent: the same parameters in their 1x1-conv form
    conv = model[0]
    assert type(conv) is PointwiseConvMlp and all(type(m) is Mlp for m in others)
    x = torch.randn(2, 5, 4, 12)
    with torch.no_grad():
        assert (conv(x) - mlp(x)).abs().max().item() < 1e-5
        seq = torch.randn(2, 7, 12)  # not a map: the linear layers as they are
        assert torch.equal(conv(seq), mlp(seq))
    assert conv.state_dict().keys() == mlp.state_dict().keys()


def test_onnx_graph_runs_the_mlps_as_convolutions(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = timm.create_model("hpx_former_s4", depths=(1, 1, 1, 1), dims=(8, 8, 16, 16)).eval()
    mlp_ops: dict[str, list[str]] = {}
    for fold in (True, False):
        graph = onnx.load(str(to_onnx(model, tmp_path / f"{fold}.onnx", 64, fold_mlps=fold))).graph
        scopes = [({p.key: p.value for p in n.metadata_props}.get("pkg.torch.onnx.name_scopes", ""), n.op_type)
                  for n in graph.node]  # fmt: skip
        mlp_ops[str(fold)] = [op for scope, op in scopes if "mlp" in scope and "head" not in scope]
    assert mlp_ops["True"].count("Conv") == 2 * 4 and "MatMul" not in mlp_ops["True"]  # fc1 and fc2 of 4 blocks
    assert "Conv" not in mlp_ops["False"] and mlp_ops["False"].count("MatMul") == 2 * 4  # unfolded: as it was


def test_frozen_copy_folds_every_mlp(reduced_models, fixtures_dir) -> None:
    model = _reduced(FAMILIES["hpx"], reduced_models, fixtures_dir)
    acts = [m.act for m in model.modules() if isinstance(m, Mlp)]
    assert acts and all(isinstance(a, StarReLU) for a in acts)
    assert any(abs(a.scale.item() - 1) > 1e-3 or abs(a.bias.item()) > 1e-3 for a in acts)  # trained values
    frozen = freeze_long_convs(model, 64)
    assert all(isinstance(m.act, SquaredReLU) for m in frozen.modules() if isinstance(m, Mlp))
    assert all(isinstance(m.act, StarReLU) for m in model.modules() if isinstance(m, Mlp))
    unfolded = freeze_long_convs(model, 64, fold_mlps=False)
    assert all(isinstance(m.act, StarReLU) for m in unfolded.modules() if isinstance(m, Mlp))
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert (frozen(x) - unfolded(x)).abs().max().item() < 1e-4
