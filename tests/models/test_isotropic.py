"""The isotropic ablation models: one block at one resolution, parameter-matched twins, the kernel that reaches
everywhere on the 16 x 16 map of a 64 px image, and the positional attention twin."""

from __future__ import annotations

import pytest
import timm
import torch
import torch.nn.functional as F

from hyenapixel.layers import Attention, PositionalAttention
from hyenapixel.models import ISO_IMAGE_SIZE, ISO_KERNEL_SIZE, ISOTROPIC_MODELS, hyenapixel_kernel_sizes


def _params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_the_twins_have_within_ten_percent_of_the_global_models_parameters() -> None:
    counts = {name: _params(timm.create_model(name)) for name in ISOTROPIC_MODELS}
    assert ISOTROPIC_MODELS[0] == "hpx_iso1" and len(ISOTROPIC_MODELS) == 4
    for name, n in counts.items():
        assert abs(n - counts["hpx_iso1"]) <= 0.1 * counts["hpx_iso1"], (name, n, counts["hpx_iso1"])


@pytest.mark.parametrize("name", ISOTROPIC_MODELS)
def test_one_block_at_one_resolution(name: str) -> None:
    model = timm.create_model(name).eval()
    assert [len(s.blocks) for s in model.stages] == [1]
    assert model.pretrained_cfg["input_size"] == (3, ISO_IMAGE_SIZE, ISO_IMAGE_SIZE)
    x = torch.randn(2, 3, ISO_IMAGE_SIZE, ISO_IMAGE_SIZE)
    assert model(x).shape == (2, 2)
    (feat,) = model.forward_intermediates(x, intermediates_only=True)
    assert feat.shape == (2, model.num_features, ISO_IMAGE_SIZE // 4, ISO_IMAGE_SIZE // 4)


def test_the_global_kernel_covers_the_map_and_the_local_twin_is_three_by_three() -> None:
    side = ISO_IMAGE_SIZE // 4
    assert ISO_KERNEL_SIZE == 2 * side - 1  # every token reaches every other token
    assert hyenapixel_kernel_sizes(timm.create_model("hpx_iso1")) == [(ISO_KERNEL_SIZE, ISO_KERNEL_SIZE)]
    assert hyenapixel_kernel_sizes(timm.create_model("hpx_iso1_local")) == [(3, 3)]
    assert hyenapixel_kernel_sizes(timm.create_model("hpx_iso1", kernel_sizes=(7,))) == [(7, 7)]
    assert hyenapixel_kernel_sizes(timm.create_model("sepconv_iso1")) == []


def test_the_global_model_sees_the_far_corner_and_the_local_twin_does_not() -> None:
    # gradient of the top-left token's features with respect to the input: the global block reaches the
    # bottom-right quarter of the image, the local one (stem + 5 x 5 short conv + 3 x 3 kernel) does not. The
    # implicit filter starts near zero (its skip term dominates), so its output layer is scaled up to make the
    # long taps count.
    side = ISO_IMAGE_SIZE
    for name, reaches in (("hpx_iso1", True), ("hpx_iso1_local", False), ("sepconv_iso1", False)):
        torch.manual_seed(0)
        model = timm.create_model(name).eval()
        for module in model.modules():
            if hasattr(module, "pos_emb"):  # an implicit filter: its last linear layer makes the kernel
                with torch.no_grad():
                    list(module.mlp)[-1].weight.mul_(1e3)
        x = torch.randn(1, 3, side, side, requires_grad=True)
        (feat,) = model.forward_intermediates(x, intermediates_only=True)
        feat[0, :, 0, 0].square().sum().backward()
        far = x.grad[0, :, side // 2 :, side // 2 :].abs().sum() / x.grad.abs().sum()
        assert (far > 1e-8) == reaches, (name, far.item())  # rounding of an FFT conv: ~1e-12


def test_positional_attention_is_attention_of_the_input_plus_its_embedding() -> None:
    torch.manual_seed(0)
    layer = PositionalAttention(16, grid=4, head_dim=8).eval()
    plain = Attention(16, head_dim=8).eval()
    plain.load_state_dict({k: v for k, v in layer.state_dict().items() if k != "pos_embed"})
    x = torch.randn(2, 4, 4, 16)
    torch.testing.assert_close(layer(x), plain(x + layer.pos_embed))
    # other map sizes: the embedding resized bicubically
    y = torch.randn(1, 6, 6, 16)
    resized = F.interpolate(layer.pos_embed.permute(2, 0, 1)[None], size=(6, 6), mode="bicubic", align_corners=False)
    torch.testing.assert_close(layer(y), plain(y + resized[0].permute(1, 2, 0)))
    with pytest.raises(ValueError, match="grid"):
        PositionalAttention(16, grid=0)


def _far_tap_over_skip(model: torch.nn.Module) -> float:
    """Mean magnitude of the kernel taps 8 tokens away diagonally (the Echo offset), over the skip term's."""
    from hyenapixel.filters import ImplicitFilter2d

    (filt,) = [m for m in model.modules() if isinstance(m, ImplicitFilter2d)]
    with torch.no_grad():
        k = filt()
    c = k.shape[-1] // 2
    far = (k[:, c - 8, c - 8].abs().mean() + k[:, c + 8, c - 8].abs().mean()) / 2
    return float(far / filt.skip.detach().abs().mean())


def test_the_ablation_filters_start_with_long_taps_of_a_few_percent_of_the_skip_term() -> None:
    from hyenapixel.filters import ImplicitFilter2d
    from hyenapixel.models.isotropic import FILTER_FFN_GAIN

    torch.manual_seed(0)
    model = timm.create_model("hpx_iso1")
    (filt,) = [m for m in model.modules() if isinstance(m, ImplicitFilter2d)]
    linears = [m for m in filt.mlp if isinstance(m, torch.nn.Linear)]
    bound = 1 / linears[-1].in_features ** 0.5  # nn.Linear's default: uniform in +-1/sqrt(fan_in), then the gain
    assert linears[-1].weight.abs().max() <= FILTER_FFN_GAIN * bound
    assert linears[-1].weight.abs().max() > 0.9 * FILTER_FFN_GAIN * bound
    assert 0.01 < _far_tap_over_skip(model) < 0.5
    # the MetaFormer's std-0.02 initialisation (what the hierarchical models use) starts them near zero
    for linear in linears:
        torch.nn.init.trunc_normal_(linear.weight, std=0.02)
        if linear.bias is not None:
            torch.nn.init.zeros_(linear.bias)
    assert _far_tap_over_skip(model) < 1e-3
