"""Learned kernels (paper Fig. 7, 11, 12): what is drawn is the convolution's own impulse response."""

from __future__ import annotations

import json

import pytest
import timm
import torch

from hyenapixel.analysis.kernels import learned_kernels, reshape_1d_kernel
from hyenapixel.analysis.sites import long_conv_sites
from hyenapixel.cli.main import main
from hyenapixel.errors import UserError


@pytest.mark.parametrize("width", [5, 6])
def test_reshape_puts_lags_at_their_2d_offsets(width):
    L = width * width
    k = torch.randn(2 * L - 1)
    image = reshape_1d_kernel(k, width)
    c = L - 1
    flat = torch.nonzero(image.flatten() == k[c])[0, 0]
    rc, cc = divmod(int(flat), width)
    assert cc == width // 2
    for dr in (-2, -1, 0, 1, 2):
        for dc in range(-(width // 2), width - width // 2):
            assert image[rc + dr, cc + dc] == k[c + dr * width + dc]
    assert torch.isnan(image).sum() == image.numel() - k.numel()


def _zero_skips(model):
    for s in long_conv_sites(model):
        s.module.filter.skip.data.zero_()
        s.module.spectrum_cache.clear()


def _normalise(m):
    return m / m.abs().max()


def test_2d_maps_are_the_mean_impulse_response():
    model = timm.create_model("hpx_former_s4", dims=(8, 8, 16, 16), num_classes=3, kernel_sizes=(15, 7, 5, 3)).eval()
    _zero_skips(model)
    result = learned_kernels(model)
    assert [(m.stage, m.block, m.kind, m.kernel_shape) for m in result.maps] == [
        (0, 0, "2d", (15, 15)),
        (1, 0, "2d", (7, 7)),
        (2, 0, "2d", (5, 5)),
        (3, 0, "2d", (3, 3)),
    ]
    assert [m.feature_size for m in result.maps] == [(56, 56), (28, 28), (14, 14), (7, 7)]
    for m, site in zip(result.maps, long_conv_sites(model)):
        kh, kw = m.kernel_shape
        impulse = torch.zeros(1, site.module.dim, kh, kw)
        impulse[:, :, kh // 2, kw // 2] = 1  # output (i, j) then reads kernel tap (i, j)
        with torch.no_grad():
            response = site.module.long_conv(impulse)[0].mean(0)
        torch.testing.assert_close(m.image, _normalise(response), rtol=1e-4, atol=1e-5)


def test_1d_maps_show_the_response_around_the_centre_pixel():
    model = timm.create_model("hb_former_s4", dims=(8, 8, 16, 16), num_classes=3).eval()
    _zero_skips(model)
    result = learned_kernels(model)
    assert [(m.kind, m.feature_size, m.kernel_shape) for m in result.maps][:2] == [
        ("1d", (56, 56), (2 * 56 * 56 - 1,)),
        ("1d", (28, 28), (2 * 28 * 28 - 1,)),
    ]
    for m, site in zip(result.maps, long_conv_sites(model)):
        F = m.feature_size[1]
        L = F * F
        impulse = torch.zeros(1, site.module.dim, L)
        impulse[:, :, (F // 2) * F + F // 2] = 1
        with torch.no_grad():
            response = site.module.long_conv(impulse)[0].mean(0).view(F, F)
            full = site.module.filter(2 * L - 1).mean(0)
        rows = torch.nonzero(~torch.isnan(m.image[:, F // 2]))[:, 0]
        rc = int(torch.nonzero(m.image.flatten() == (full / full.abs().max())[L - 1])[0, 0]) // F
        assert rows.min() <= rc - F // 2 and rc - F // 2 + F <= rows.max() + 1
        torch.testing.assert_close(
            m.image[rc - F // 2 : rc - F // 2 + F], response / full.abs().max(), rtol=1e-4, atol=1e-5
        )


def test_model_without_long_filters_is_refused(capsys):
    model = timm.create_model("resnet18", num_classes=2)
    with pytest.raises(UserError, match="no HyenaPixel or Hyena"):
        learned_kernels(model)
    assert main(["kernels", "--model", "resnet18"]) == 2
    err = capsys.readouterr().err.strip()
    assert "resnet18 has no HyenaPixel or Hyena" in err and len(err.splitlines()) == 1


def test_cli_grid(tmp_path, capsys):
    assert main(["kernels", "--model", "hpx_a_former_s4", "--statistic", "mean_abs", "--output", str(tmp_path)]) == 0
    assert str(tmp_path) in capsys.readouterr().out
    data = json.loads((tmp_path / "kernels.json").read_text())
    maps = data[0]["maps"]
    assert data[0]["statistic"] == "mean_abs"
    assert [(m["stage"], m["block"]) for m in maps] == [(0, 0), (1, 0)]  # stages 3-4 are attention
    assert len(maps[0]["image"]) == 111 and min(min(r) for r in maps[0]["image"]) >= 0
    assert max(max(r) for r in maps[0]["image"]) == 1.0
