"""One test over all registered models plus the timm interface: features, intermediates, grad
checkpointing, classifier reset, meta-device construction, overrides and input validation."""

from __future__ import annotations

import inspect

import pytest
import timm
import torch
import torch.nn.functional as F

from hyenapixel.models import REGISTERED_MODELS, families
from hyenapixel.models.metaformer import take_indices

SMALL = dict(dims=[16, 16, 32, 32])


def _grads_reach_every_parameter(model: torch.nn.Module) -> list[str]:
    return [n for n, p in model.named_parameters() if p.requires_grad and (p.grad is None or not p.grad.abs().sum())]


def test_all_families_and_sizes_registered():
    expected = {
        f"{f}_{s}"
        for f in ["hpx_former", "hb_former", "c_hpx_former", "hpx_a_former", "hb_a_former"]
        for s in ["s4", "s12", "s18", "b36"]
    } | {"hpx_former_s18_384", "hpx_former_b36_384"}
    assert expected == set(REGISTERED_MODELS)
    assert expected <= set(timm.list_models())


def test_each_model_is_one_registered_function_with_one_cfg():
    """REGISTERED_MODELS is derived from the cfg table; every public model function of families.py is in it and is
    the entry point timm calls, and every cfg names the function it configures."""
    functions = {
        name
        for name, obj in vars(families).items()
        if inspect.isfunction(obj) and not name.startswith("_") and obj.__annotations__.get("return") == "MetaFormer"
    }
    assert functions == set(REGISTERED_MODELS)
    for name in REGISTERED_MODELS:
        assert timm.models.model_entrypoint(name) is getattr(families, name)
        assert timm.models.get_pretrained_cfg(name).architecture == name
    with torch.device("meta"):
        assert timm.create_model("hb_former_b36").pretrained_cfg["architecture"] == "hb_former_b36"


@pytest.mark.slow
@pytest.mark.parametrize("name", REGISTERED_MODELS)
def test_forward_backward_every_registered_model(name):
    """The registered architecture (real depths, dims, kernels) runs forward and backward at a small input and
    every parameter receives a gradient."""
    model = timm.create_model(name, num_classes=10)
    x = torch.randn(1, 3, 64, 64)
    out = model(x)
    assert out.shape == (1, 10)
    assert torch.isfinite(out).all()
    out.square().sum().backward()
    assert _grads_reach_every_parameter(model) == []


@pytest.mark.parametrize(
    "name", ["hpx_former_s4", "hb_former_s4", "c_hpx_former_s4", "hpx_a_former_s4", "hb_a_former_s4"]
)
def test_grad_checkpointing_same_output_and_grads(name):
    model = timm.create_model(name, num_classes=5, **SMALL)
    x = torch.randn(2, 3, 64, 64)
    out = model(x)
    out.sum().backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    model.set_grad_checkpointing(True)
    out2 = model(x)
    out2.sum().backward()
    torch.testing.assert_close(out2, out)
    for n, p in model.named_parameters():
        torch.testing.assert_close(p.grad, grads[n], rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("name", ["hpx_former_s12", "hb_former_s4", "c_hpx_former_s4"])
def test_features_only_strides_and_channels(name):
    model = timm.create_model(name, features_only=True, **SMALL)
    assert model.feature_info.reduction() == [4, 8, 16, 32]
    assert model.feature_info.channels() == SMALL["dims"]
    feats = model(torch.randn(2, 3, 96, 128))
    assert [tuple(f.shape) for f in feats] == [(2, 16, 24, 32), (2, 16, 12, 16), (2, 32, 6, 8), (2, 32, 3, 4)]
    # no untrained norms or heads are added for dense prediction
    assert not any(k.startswith(("norm", "head")) for k in model.state_dict())
    sub = timm.create_model(name, features_only=True, out_indices=(1, 3), **SMALL)
    assert [f.shape[1] for f in sub(torch.randn(1, 3, 64, 64))] == [16, 32]


def test_forward_intermediates_match_forward_features():
    model = timm.create_model("hpx_former_s4", **SMALL).eval()
    x = torch.randn(1, 3, 64, 96)
    final, inter = model.forward_intermediates(x)
    assert len(inter) == 4 and all(t.dim() == 4 for t in inter)
    torch.testing.assert_close(final, model.forward_features(x))
    torch.testing.assert_close(inter[-1], final)
    only = model.forward_intermediates(x, indices=[0, 2], intermediates_only=True, stop_early=True)
    torch.testing.assert_close(only[1], inter[2])


def test_forward_intermediates_norm_normalises_the_last_stage_only():
    model = timm.create_model("hpx_former_s4", **SMALL).eval()
    with torch.no_grad():
        model.norm.weight.normal_(1, 0.5)
        model.norm.bias.normal_(0, 0.5)
    x = torch.randn(1, 3, 64, 96)
    final, plain = model.forward_intermediates(x)
    final_n, normed = model.forward_intermediates(x, norm=True)
    torch.testing.assert_close(final_n, final)  # the head pools before its norm: the final map stays as it was
    for a, b in zip(plain[:-1], normed[:-1]):
        torch.testing.assert_close(a, b)
    # direct LayerNorm over the channel axis of every position of the last stage's output
    ref = F.layer_norm(plain[-1].permute(0, 2, 3, 1), (32,), model.norm.weight, model.norm.bias, model.norm.eps)
    torch.testing.assert_close(normed[-1], ref.permute(0, 3, 1, 2))
    assert (normed[-1] - plain[-1]).abs().max() > 0.1
    # an earlier last index is not the network's last stage: nothing to normalise
    early = model.forward_intermediates(x, indices=[1], norm=True, intermediates_only=True)
    torch.testing.assert_close(early[0], plain[1])


@pytest.mark.parametrize(
    "indices, expected",
    [
        (None, ([0, 1, 2, 3], 3)),
        (1, ([3], 3)),
        (2, ([2, 3], 3)),
        (4, ([0, 1, 2, 3], 3)),
        ([0], ([0], 0)),
        ([1, 3], ([1, 3], 3)),
        ([-1], ([3], 3)),
        ([-4, 2], ([0, 2], 2)),
        ((0, -2), ([0, 2], 2)),
        ([3, 3], ([3, 3], 3)),
    ],
)
def test_take_indices_follow_timms_convention(indices, expected):
    """timm's convention for ``forward_intermediates(indices=...)``, which FeatureGetterNet's callers assume: None
    takes every stage, an int ``n`` the last ``n``, a sequence those stages (negative ones counted from the end);
    the second value is the last stage needed."""
    assert take_indices(4, indices) == expected


@pytest.mark.parametrize("indices", [0, 5, [4], [-5], []])
def test_take_indices_rejects_what_timm_rejects(indices):
    """No stage, more stages than the network has, or a stage index out of range."""
    with pytest.raises(ValueError, match="indices"):
        take_indices(4, indices)


def test_head_interface():
    model = timm.create_model("hpx_former_s4", num_classes=7, **SMALL)
    x = torch.randn(2, 3, 64, 64)
    feats = model.forward_features(x)
    assert feats.shape == (2, 32, 2, 2)
    assert model.forward_head(feats, pre_logits=True).shape == (2, model.head_hidden_size)
    torch.testing.assert_close(model.forward_head(feats), model(x))
    model.reset_classifier(3)
    assert model(x).shape == (2, 3)
    assert model.get_classifier().out_features == 3
    model.reset_classifier(0)
    assert model(x).shape == (2, model.head_hidden_size)


def test_overrides():
    model = timm.create_model(
        "hpx_former_s12",
        depths=[1, 1, 2, 1],
        dims=[8, 16, 24, 32],
        num_classes=4,
        in_chans=1,
        drop_path_rate=0.1,
        kernel_sizes=[9, 9, 9, 9],
    )
    assert [len(s.blocks) for s in model.stages] == [1, 1, 2, 1]
    assert model.stages[0].blocks[0].token_mixer.filter.kernel_size == (9, 9)
    assert model.stages[3].blocks[0].drop_path1.drop_prob == pytest.approx(0.1)
    assert model(torch.randn(1, 1, 32, 32)).shape == (1, 4)


def test_meta_device_construction():
    with torch.device("meta"):
        model = timm.create_model("hpx_former_b36")
    assert all(p.is_meta for p in model.parameters())
    assert sum(p.numel() for p in model.parameters()) > 100e6


@pytest.mark.parametrize(
    "shape, match",
    [
        ((3, 64, 64), "4-D"),
        ((1, 4, 64, 64), "3 input channels"),
        ((1, 3, 16, 64), "total stride"),
        ((1, 3, 64, 31), ">= 32"),
    ],
)
def test_bad_inputs_raise_value_error(shape, match):
    model = timm.create_model("hpx_former_s4", **SMALL)
    with pytest.raises(ValueError, match=match):
        model(torch.randn(*shape))


def _per_image_equals_batched(model: torch.nn.Module, x: torch.Tensor) -> None:
    """Each image's logits are the same alone and in a batch (no mixing across the batch, e.g. by the chunked FFT),
    and different images give different logits."""
    with torch.no_grad():
        batched = model(x)
        alone = torch.cat([model(x[i : i + 1]) for i in range(len(x))])
    assert batched.shape == (len(x), 1000) and torch.isfinite(batched).all()
    torch.testing.assert_close(batched, alone, rtol=1e-4, atol=1e-5)
    assert (batched[0] - batched[1]).abs().max() > 1e-3


@pytest.mark.parametrize("size", [(32, 32), (48, 80), (224, 160)])
def test_hpx_any_input_size(size):
    _per_image_equals_batched(timm.create_model("hpx_former_s4", **SMALL).eval(), torch.randn(2, 3, *size))


@pytest.mark.parametrize("size", [(32, 32), (64, 96), (256, 256)])
def test_hb_other_resolutions(size):
    """Beyond the official code (which fails below 224), bidirectional Hyena models run at any size."""
    _per_image_equals_batched(timm.create_model("hb_former_s4", **SMALL).eval(), torch.randn(2, 3, *size))


def test_no_persistent_constants():
    """Constants are non-persistent buffers: the state dict holds only parameters."""
    model = timm.create_model("hpx_former_s4", **SMALL)
    params = {n for n, _ in model.named_parameters()}
    assert set(model.state_dict()) == params


def test_layer_decay_groups_downsampling_with_its_stage() -> None:
    from timm.optim import create_optimizer_v2

    model = timm.create_model("hpx_former_s4", depths=(1, 2, 1, 1), dims=(8, 16, 24, 32))
    opt = create_optimizer_v2(model, "adamw", lr=1.0, layer_decay=0.5)
    group_of = {id(p): g["lr_scale"] for g in opt.param_groups for p in g["params"]}
    scale = {n: group_of[id(p)] for n, p in model.named_parameters()}
    # stem < stage 0 < stage 1 block 0 (= its downsampling) < block 1 < ... < stage 3 (= the final norm) < head
    assert scale["stages.1.downsample.conv.weight"] == scale["stages.1.blocks.0.norm1.weight"]
    assert scale["stages.1.blocks.1.norm1.weight"] == 2 * scale["stages.1.blocks.0.norm1.weight"]
    assert scale["norm.weight"] == scale["stages.3.blocks.0.norm1.weight"] == 0.5
    assert scale["head.fc2.weight"] == 1.0 and scale["stem.conv.weight"] == 0.5**6


@pytest.mark.parametrize("pool", ["", "catavgmax"])
def test_unsupported_global_pool_is_refused_at_build(pool: str) -> None:
    with pytest.raises(ValueError, match="global_pool .* is not supported"):
        timm.create_model("hpx_former_s4", global_pool=pool)
    with pytest.raises(ValueError, match="is not supported"):
        timm.create_model("hpx_former_s4").reset_classifier(0, global_pool=pool)


def test_max_pool_head_takes_the_maximum() -> None:
    model = timm.create_model("hpx_former_s4", global_pool="max", num_classes=5).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        feats = model.forward_features(x)
        got = model.forward_head(feats)
        torch.testing.assert_close(got, model.head(model.norm(feats.amax((2, 3)))))
        assert (got - model.head(model.norm(feats.mean((2, 3))))).abs().max() > 1e-3


@pytest.mark.parametrize("family", ["hpx", "hb", "c_hpx", "hpx_a", "hb_a"])
def test_empty_batch_gives_empty_logits(family: str) -> None:
    model = timm.create_model(f"{family}_former_s4", num_classes=7, dims=(8, 16, 24, 32))
    with torch.no_grad():
        assert model.eval()(torch.randn(0, 3, 64, 64)).shape == (0, 7)
    x = torch.randn(0, 3, 64, 64, requires_grad=True)
    model.train()(x).sum().backward()  # a training step on an empty batch: zero gradients, no error
    assert x.grad.shape == x.shape and float(model.stem.conv.weight.grad.abs().sum()) == 0.0


@pytest.mark.parametrize("feature_cls", ["hook", "dict"])
def test_feature_extractors_other_than_the_getter_are_refused(feature_cls: str) -> None:
    with pytest.raises(ValueError, match=f"feature_cls='{feature_cls}' is not supported"):
        timm.create_model("hpx_former_s4", features_only=True, feature_cls=feature_cls)
    getter = timm.create_model("hpx_former_s4", features_only=True, feature_cls="getter")
    assert [f.shape[1] for f in getter(torch.randn(1, 3, 64, 64))] == [64, 128, 320, 512]  # NCHW


@pytest.mark.parametrize(("h", "w"), [(33, 47), (100, 131), (64, 96)])
def test_stage_sizes_follow_the_documented_formula(h: int, w: int) -> None:
    model = timm.create_model("hpx_former_s4", dims=(8, 16, 24, 32)).eval()
    with torch.no_grad():
        maps = model.forward_intermediates(torch.randn(1, 3, h, w), intermediates_only=True)
    got = [tuple(o.shape[2:]) for o in maps]
    sizes = [((h - 3) // 4 + 1, (w - 3) // 4 + 1)]  # the stem: 7x7 stride 4 padding 2
    for _ in range(3):
        sizes.append((-(-sizes[-1][0] // 2), -(-sizes[-1][1] // 2)))  # each downsampling: ceil(h / 2)
    assert got == sizes


def test_constructor_and_input_checks() -> None:
    with pytest.raises(ValueError, match="num_classes must be >= 0"):
        timm.create_model("hpx_former_s4", num_classes=-1)
    with pytest.raises(ValueError, match=r"drop_path_rate must be in \[0, 1\)"):
        timm.create_model("hpx_former_s4", drop_path_rate=1.5)
    with pytest.raises(TypeError, match="expected a floating-point image batch, got torch.uint8"):
        timm.create_model("hpx_former_s4")(torch.zeros(1, 3, 64, 64, dtype=torch.uint8))
