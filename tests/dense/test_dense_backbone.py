"""dense.backbone: strides and exact feature sizes at dense sizes, stage norms, kernel policies, bad input."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F

from hyenapixel import dense
from hyenapixel.dense.backbones import hyenapixel_kernel_sizes
from hyenapixel.errors import UserError
from hyenapixel.mixers import HyenaPixelMixer
from hyenapixel.models import WeightsError, load_model

REDUCED = dict(depths=(1, 1, 1, 1), dims=(32, 32, 64, 96))


def closed_form_sizes(h: int, w: int) -> list[tuple[int, int]]:
    """Stem k7 s4 p2: floor((n - 3) / 4) + 1; each k3 s2 p1 downsampling: ceil(n / 2)."""
    h, w = (h - 3) // 4 + 1, (w - 3) // 4 + 1
    out = [(h, w)]
    for _ in range(3):
        h, w = math.ceil(h / 2), math.ceil(w / 2)
        out.append((h, w))
    return out


def test_feature_sizes_closed_form_at_paper_sizes():
    b = dense.backbone("hpx_former_s4", **REDUCED)
    for size in [(800, 1333), (512, 512), (512, 2048), (480, 1333), (97, 131)]:
        assert b.feature_sizes(*size) == closed_form_sizes(*size)
    assert b.feature_sizes(800, 1333) == [(200, 333), (100, 167), (50, 84), (25, 42)]


@pytest.mark.parametrize(
    "family, size",
    [("hpx_former", (64, 96)), ("hpx_former", (100, 130)), ("c_hpx_former", (33, 47)), ("hpx_a_former", (100, 130))],
)
def test_outputs_strides_and_shapes(family, size):
    b = dense.backbone(f"{family}_s4", **REDUCED).eval()
    assert b.strides == [4, 8, 16, 32]
    assert b.out_channels == list(REDUCED["dims"])
    with torch.no_grad():
        outs = b(torch.randn(1, 3, *size))
    assert [tuple(o.shape) for o in outs] == [
        (1, c, h, w) for c, (h, w) in zip(REDUCED["dims"], closed_form_sizes(*size))
    ]
    assert all(torch.isfinite(o).all() for o in outs)


@pytest.mark.slow
@pytest.mark.parametrize("size", [(800, 1333), (512, 2048)])
def test_paper_sizes_forward(size):
    """The two dense-task sizes of the paper (COCO 800x1333, ADE20k's 512x2048 MACs size) on a reduced model."""
    b = dense.backbone("hpx_former_s4", depths=(1, 1, 1, 1), dims=(16, 16, 32, 32)).eval()
    with torch.no_grad():
        outs = b(torch.randn(1, 3, *size))
    assert [tuple(o.shape[-2:]) for o in outs] == closed_form_sizes(*size)


def test_stage_norms_are_layernorm_over_channels():
    b = dense.backbone("hpx_former_s4", **REDUCED).eval()
    assert len(b.norms) == 4
    for norm in b.norms:  # give the norms non-trivial affine parameters
        torch.nn.init.normal_(norm.weight)
        torch.nn.init.normal_(norm.bias)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        raw = b.body(x)
        outs = b(x)
    for r, o, norm in zip(raw, outs, b.norms):
        ref = F.layer_norm(r.permute(0, 2, 3, 1), (r.shape[1],), norm.weight, norm.bias, eps=1e-5).permute(0, 3, 1, 2)
        torch.testing.assert_close(o, ref, rtol=1e-5, atol=1e-5)


def test_out_norm_none_returns_raw_stage_outputs():
    b = dense.backbone("hpx_former_s4", out_norm=None, **REDUCED).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        _, ref = b.metaformer.forward_intermediates(x)
        outs = b(x)
    for o, r in zip(outs, ref):
        torch.testing.assert_close(o, r)


def test_paper_policy_keeps_224px_kernels():
    b = dense.backbone("hpx_former_s4", **REDUCED)
    assert hyenapixel_kernel_sizes(b.metaformer) == [111, 55, 27, 13]


def test_cover_policy_kernel_sizes():
    b = dense.backbone("hpx_former_s4", kernel_policy="cover", img_size=(96, 160), **REDUCED)
    expected = [2 * max(h, w) - 1 for h, w in closed_form_sizes(96, 160)]
    assert hyenapixel_kernel_sizes(b.metaformer) == expected == [79, 39, 19, 9]
    model = load_model("hpx_former_s4", features_only=True, **REDUCED).model
    assert dense.CoverKernels((800, 1333)).kernel_sizes(model) == [665, 333, 167, 83]
    c = dense.backbone("c_hpx_former_s4", kernel_policy="cover", img_size=96, **REDUCED)
    assert hyenapixel_kernel_sizes(c.metaformer) == [None, None, 11, 5]  # SepConv stages untouched


def _corner_response(mixer: HyenaPixelMixer, h: int, w: int) -> float:
    """|output at the bottom-right corner| of the long convolution for an impulse at the top-left corner."""
    u = torch.zeros(1, mixer.dim, h, w)
    u[..., 0, 0] = 1.0
    with torch.no_grad():
        return mixer.long_conv(u)[..., h - 1, w - 1].abs().max().item()


def test_cover_policy_is_global_and_paper_policy_is_not():
    """At 256 px the stage-1 map is 64x64: a 111 kernel reaches 55 taps, a covering 127 kernel reaches 63."""
    paper = dense.backbone("hpx_former_s4", **REDUCED)
    cover = copy.deepcopy(paper)
    dense.CoverKernels(256).apply(cover.metaformer)  # the same trained filters, resampled
    h, w = paper.feature_sizes(256, 256)[0]
    mp = next(m for m in paper.modules() if isinstance(m, HyenaPixelMixer))
    mc = next(m for m in cover.modules() if isinstance(m, HyenaPixelMixer))
    assert _corner_response(mp, h, w) < 1e-8  # float32 FFT round-off only (about 5e-10)
    assert _corner_response(mc, h, w) > 1e-6  # the decayed far tail of the kernel (about 8e-5)


def test_cover_policy_refuses_larger_inputs():
    b = dense.backbone("hpx_former_s4", kernel_policy="cover", img_size=(64, 96), **REDUCED)
    b(torch.randn(1, 3, 96, 64))  # longest side within the square kernels' reach
    with pytest.raises(dense.DenseInputError, match="img_size >= 128"):
        b(torch.randn(1, 3, 64, 128))


def test_cover_policy_needs_img_size():
    with pytest.raises(dense.DenseInputError, match="needs img_size"):
        dense.backbone("hpx_former_s4", kernel_policy="cover", **REDUCED)


def test_unknown_kernel_policy():
    with pytest.raises(dense.DenseInputError, match="unknown kernel_policy 'global'"):
        dense.backbone("hpx_former_s4", kernel_policy="global", **REDUCED)


@pytest.mark.parametrize("shape", [(1, 3, 31, 64), (1, 3, 64, 16), (1, 1, 64, 64), (3, 64, 64)])
def test_bad_input_shapes(shape):
    b = dense.backbone("hpx_former_s4", **REDUCED)
    with pytest.raises(dense.DenseInputError) as err:
        b(torch.randn(*shape))
    assert isinstance(err.value, UserError)
    assert ">= 32" in str(err.value) or "(B, 3, H, W)" in str(err.value)


def test_unknown_backbone_name():
    with pytest.raises(UserError, match="unknown model 'hpx_fromer_s18'; close matches: hpx_former_s18"):
        dense.backbone("hpx_fromer_s18")


@pytest.mark.parametrize("name", ["hb_former_s4", "hb_a_former_s4"])
def test_hbformer_refused_with_reason(name):
    with pytest.raises(dense.DenseInputError, match="1D Hyena filters over the row-major flattened"):
        dense.backbone(name, **REDUCED)


def test_official_checkpoint_loads_into_backbone(fixtures_dir, reduced_models):
    spec = reduced_models["hpx_former_s18"]
    kw = dict(depths=tuple(spec["depths"]), dims=tuple(spec["dims"]))
    path = fixtures_dir / "hpx_former_s18.reduced.bin"
    b = dense.backbone("hpx_former_s18", checkpoint=str(path), out_norm=None, **kw).eval()
    ref = load_model("hpx_former_s18", checkpoint=str(path), **kw).eval()
    x = torch.randn(1, 3, 96, 128)
    with torch.no_grad():
        _, expected = ref.forward_intermediates(x)
        got = b(x)
    for g, e in zip(got, expected):
        torch.testing.assert_close(g, e)


def test_checkpoint_of_wrong_variant(fixtures_dir, reduced_models):
    spec = reduced_models["hpx_former_s18"]
    kw = dict(depths=tuple(spec["depths"]), dims=tuple(spec["dims"]))
    with pytest.raises(WeightsError, match="does not fit hpx_former_s18"):
        dense.backbone("hpx_former_s18", checkpoint=str(fixtures_dir / "c_hpx_former_s18.reduced.bin"), **kw)


def test_features_only_is_set_by_the_builder():
    with pytest.raises(dense.DenseInputError, match="features_only is set by the dense backbone"):
        dense.backbone("hpx_former_s4", features_only=False)
