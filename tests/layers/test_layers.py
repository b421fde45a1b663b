"""MetaFormer layers against direct computations, and misspelled keyword arguments rejected by every layer."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

from hyenapixel.layers import (
    Attention,
    LayerNormNoBias,
    Mlp,
    MlpHead,
    PointwiseConvMlp,
    Scale,
    SepConv,
    SquaredReLU,
    StarReLU,
)


def test_attention_is_softmax_attention_over_all_positions():
    torch.manual_seed(0)
    m = Attention(64, head_dim=32).double().eval()
    x = torch.randn(2, 3, 5, 64, dtype=torch.float64)
    q, k, v = m.qkv(x.reshape(2, 15, 64)).split(64, dim=-1)  # qkv rows: all heads of q, then k, then v
    heads = []
    for h in range(2):  # literal per-head softmax(q k^T / sqrt(d)) v
        s = slice(32 * h, 32 * (h + 1))
        a = torch.softmax(q[..., s] @ k[..., s].transpose(1, 2) / math.sqrt(32), dim=-1)
        heads.append(a @ v[..., s])
    ref = m.proj(torch.cat(heads, dim=-1)).reshape(2, 3, 5, 64)
    torch.testing.assert_close(m(x), ref)


def test_star_relu_and_scale_closed_form():
    act = StarReLU(scale_value=2.0, bias_value=-0.5)
    x = torch.tensor([-1.0, 0.0, 1.5])
    torch.testing.assert_close(act(x), torch.tensor([-0.5, -0.5, 2.0 * 1.5**2 - 0.5]))
    torch.testing.assert_close(Scale(3, 0.5)(torch.ones(2, 3)), torch.full((2, 3), 0.5))


@pytest.mark.parametrize(
    "make",
    [
        lambda **kw: Attention(32, head_dim=16, **kw),
        lambda **kw: SepConv(8, kernel_size=3, **kw),
        lambda **kw: Mlp(8, mlp_ratio=2.0, **kw),
        lambda **kw: MlpHead(8, num_classes=3, **kw),
        lambda **kw: Scale(8, **kw),
        lambda **kw: LayerNormNoBias(8, **kw),
        lambda **kw: StarReLU(**kw),
    ],
)
def test_misspelled_keyword_is_an_error(make):
    make()
    with pytest.raises(TypeError, match="head_dims"):
        make(head_dims=8)


def test_star_relu_folded_into_the_mlp(trained_mlp: Mlp) -> None:
    # fc2(s * relu(h)^2 + b) against the folded fc2'(relu(h)^2), with a bias on fc2 to keep; an MLP with another
    # activation is left alone
    mlp = trained_mlp
    mlp.fc2.bias = nn.Parameter(torch.randn(12))
    x = torch.randn(2, 5, 4, 12)
    want = mlp(x).detach()
    folded = copy.deepcopy(mlp)
    assert folded.fold_star_relu()
    assert isinstance(folded.act, SquaredReLU)
    assert (folded(x) - want).abs().max().item() < 1e-5
    assert torch.equal(mlp(x), want)  # a copy was folded, the original is unchanged
    other = Mlp(12, act_layer=nn.GELU)
    state = {k: v.clone() for k, v in other.state_dict().items()}
    assert not other.fold_star_relu()
    assert isinstance(other.act, nn.GELU) and all(torch.equal(v, other.state_dict()[k]) for k, v in state.items())


def test_pointwise_conv_mlp_computes_the_folded_mlp(trained_mlp: Mlp) -> None:
    # the 1x1-convolution form runs the same modules: the folded MLP's function on maps, its layers as they are on
    # other shapes, the same state dict
    mlp = trained_mlp
    assert mlp.fold_star_relu()
    conv = PointwiseConvMlp(mlp)
    assert conv.fc1 is mlp.fc1 and conv.fc2 is mlp.fc2 and not conv.training
    x = torch.randn(2, 5, 4, 12)
    with torch.no_grad():
        torch.testing.assert_close(conv(x), mlp(x), rtol=1e-5, atol=1e-6)
        seq = torch.randn(2, 7, 12)  # not a map: the linear layers as they are
        assert torch.equal(conv(seq), mlp(seq))
    assert conv.state_dict().keys() == mlp.state_dict().keys()
