"""MAC counting (paper Table 1): fvcore's rules, the FFT rule of the official code, and the official totals."""

from __future__ import annotations

import json
import math

import pytest
import timm
import torch
import torch.nn.functional as F
from torch import nn

from hyenapixel.analysis.macs import OFFICIAL_GMACS_224, count_macs
from hyenapixel.cli.main import main
from hyenapixel.mixers import HyenaPixelMixer
from hyenapixel.ops import fftconv2d, plan_conv2d

pytest.importorskip("fvcore")


def test_plain_conv_model_equals_the_closed_form():
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(8, 16, 3, stride=2, padding=1, groups=2),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(16, 10),
    )
    r = count_macs(model, (3, 40, 48))
    conv = 40 * 48 * 8 * (3 * 9) + 20 * 24 * 16 * (4 * 9)
    assert r.by_operator["conv"] == conv
    assert r.by_operator["linear"] == 16 * 10
    assert r.macs == conv + 160 + 16 * 20 * 24  # fvcore counts the adaptive pooling as one MAC per input element
    assert r.params == sum(p.numel() for p in model.parameters())
    assert r.fft_macs == 0


class _Mixer(nn.Module):
    """A HyenaPixel mixer on NCHW input, so that it can be counted like a model."""

    def __init__(self, channels: int, kernel: int) -> None:
        super().__init__()
        self.mixer = HyenaPixelMixer(channels, kernel_size=kernel, filter_emb_dim=8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mixer(x.permute(0, 2, 3, 1))


def _rule(shape, dims) -> float:
    return math.prod(shape) * math.log2(math.prod(shape[d] for d in dims))


C, H, W, K = 4, 32, 40, 9
HF, WF = 36, 48  # the FFT lengths of this convolution: 32 + 4 -> 36 = 2^2 3^2; 40 + 4 -> 44 = 4 * 11 -> 48 (even)
BINS = WF // 2 + 1
# input: rfft along W (rows unpadded), fft along H; inverse: ifft along H, crop, irfft along W
INPUT_FFTS = _rule((1, C, H, BINS), [3]) + _rule((1, C, HF, BINS), [2])
INVERSE_FFTS = _rule((1, C, HF, BINS), [2]) + _rule((1, C, H, WF), [3])
KERNEL_FFTS = _rule((C, K, BINS), [2]) + _rule((C, HF, BINS), [1])


def test_fft_counts_follow_the_rule():
    assert plan_conv2d(H, W, K, K).fft_shape == (HF, WF)
    model = _Mixer(C, K)
    paper = count_macs(model, (C, H, W), mode="paper")
    inference = count_macs(model, (C, H, W), mode="inference")
    assert inference.fft_macs == pytest.approx(INPUT_FFTS + INVERSE_FFTS, rel=1e-12)
    assert paper.fft_macs == pytest.approx(INPUT_FFTS + INVERSE_FFTS + KERNEL_FFTS, rel=1e-12)
    # the filter MLP runs only in paper mode: its first layers (linear) and its last (mm) over all K*K taps
    emb, hidden = 8, 16
    mlp = K * K * (emb * hidden + hidden * hidden) + K * K * hidden * C
    assert paper.macs - inference.macs == pytest.approx(mlp + KERNEL_FFTS, rel=1e-12)
    assert "mm" not in inference.by_operator
    assert not any(len(c) for c in (model.mixer.spectrum_cache,))  # the caches are left empty


class _Direct(nn.Module):
    """A differentiable fftconv2d call (traced as one Python op)."""

    def __init__(self) -> None:
        super().__init__()
        self.k = nn.Parameter(torch.randn(C, K, K))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fftconv2d(x, self.k)


def test_differentiable_fftconv_counts_the_same_transforms():
    assert count_macs(_Direct(), (C, H, W)).fft_macs == pytest.approx(INPUT_FFTS + INVERSE_FFTS + KERNEL_FFTS)


class _Attention(nn.Module):
    def __init__(self, fused: bool) -> None:
        super().__init__()
        self.fused = fused

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q = x.flatten(2).transpose(1, 2).reshape(1, -1, 2, 6).transpose(1, 2)  # (1, heads=2, L, 6)
        if self.fused:
            return F.scaled_dot_product_attention(q, q, q)
        return (q @ q.transpose(-1, -2)).softmax(-1) @ q


def test_fused_attention_counts_like_two_matmuls():
    fused = count_macs(_Attention(True), (12, 32, 36))
    explicit = count_macs(_Attention(False), (12, 32, 36))
    L = 32 * 36
    assert fused.macs == explicit.macs == 2 * L * L * (6 + 6)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["hpx_former_s18", "hb_former_s18"])  # the others: docs/analysis.md
def test_agrees_with_the_official_totals(name):
    r = count_macs(timm.create_model(name), (3, 224, 224))
    assert r.official_gmacs == OFFICIAL_GMACS_224[name]
    assert abs(r.macs / 1e9 - r.official_gmacs) / r.official_gmacs < 0.03
    assert sum(r.by_stage.values()) == pytest.approx(r.macs)
    assert set(r.by_stage) == {"stem", "stages.0", "stages.1", "stages.2", "stages.3", "other"}


def test_cli_table_json_and_bad_size(tmp_path, capsys):
    assert (
        main(["macs", "--model", "hpx_former_s4", "--img-size", "32", "--mode", "both", "--output", str(tmp_path)]) == 0
    )
    out = capsys.readouterr().out
    assert "hpx_former_s4" in out and "paper" in out and "inference" in out and str(tmp_path) in out
    data = json.loads((tmp_path / "macs.json").read_text())
    direct = count_macs(timm.create_model("hpx_former_s4"), (3, 32, 32))
    assert [d["mode"] for d in data] == ["paper", "inference"]
    assert data[0]["macs"] == pytest.approx(direct.macs) and data[0]["by_stage"] == pytest.approx(direct.by_stage)
    assert (tmp_path / "macs.png").stat().st_size > 0
    assert main(["macs", "--model", "hpx_former_s4", "--img-size", "16", "--output", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert "at least 32 px" in err and len(err.splitlines()) == 1


def test_input_channels_must_match_the_model():
    from hyenapixel.errors import UserError

    with pytest.raises(UserError, match="takes 1 input channels, the input shape .* has 3"):
        count_macs(timm.create_model("hpx_former_s4", in_chans=1), (3, 64, 96))
