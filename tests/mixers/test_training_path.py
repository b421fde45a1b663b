"""The HyenaPixel mixer's optimised path (only the taps that reach the map are generated, by the fused filter;
multi-dimensional FFTs) against the straightforward one: the whole kernel evaluated module by module, the skip term
added as ``D * input``, cropped by nothing, and a direct convolution. Float64: values and every parameter's
gradient to 1e-10; float32 against that float64 reference: 1e-5 of the output's scale."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from hyenapixel.mixers import HyenaPixelMixer
from hyenapixel.models import MIXER_NORM
from hyenapixel.ops import fftconv, fftconv2d_ref, implicit


def _full_kernel(m: HyenaPixelMixer) -> torch.Tensor:
    """Every tap of Eq. 4 through the filter's modules: ``FFN(PE) * (exp(-|alpha| d) + b)``."""
    f = m.filter
    kh, kw = f.kernel_size
    h = f.pos_emb.flatten(1).t()
    *body, last = list(f.mlp)
    for layer in body:
        h = layer(h)
    k = (h @ last.weight.t()).t().reshape(f.channels, kh, kw)
    return k * (torch.exp(-f.distance * f.decay.abs()[:, None, None]) + f.shift[:, None, None])


def _straightforward(m: HyenaPixelMixer, x: torch.Tensor) -> torch.Tensor:
    conv = m.short_conv  # plain torch convolution, not the mixer's own backward
    qkv = F.conv2d(m.in_proj(x).permute(0, 3, 1, 2), conv.weight, conv.bias, padding=conv.padding, groups=conv.groups)
    q, k, v = qkv.chunk(3, 1)
    u = m.qk_norm((q * k).permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
    y = fftconv2d_ref(u, _full_kernel(m)) + u * m.filter.skip[None, :, None, None]
    return m.out_proj(m.out_norm((v * y).permute(0, 2, 3, 1)))


# (map size, kernel size): covering kernels 2F - 1 for the longer side (the shorter side's taps are cut), larger
# kernels, and the paper's 224-px-style kernel smaller than twice the map.
CASES = [((5, 9), 17), ((9, 5), (21, 11)), ((6, 6), 15), ((7, 10), 9), ((12, 40), 79)]


@pytest.mark.parametrize(("size", "kernel_size"), CASES)
@pytest.mark.parametrize("norm", [None, MIXER_NORM])
@pytest.mark.parametrize("blocked", [False, True])
def test_training_path_equals_full_kernel_then_direct_convolution(
    monkeypatch, size, kernel_size, norm, blocked
) -> None:
    _check_training_path(monkeypatch, size, kernel_size, norm, blocked)


@pytest.mark.parametrize(("size", "kernel_size"), CASES[:2])
def test_training_path_with_blocks_on_several_threads(monkeypatch, block_threads, size, kernel_size) -> None:
    _check_training_path(monkeypatch, size, kernel_size, MIXER_NORM, blocked=True)


def _check_training_path(monkeypatch, size, kernel_size, norm, blocked: bool) -> None:
    if blocked:  # what large maps get on a CPU: FFTs in (sample, channel) blocks, the kernel MLP in row blocks
        monkeypatch.setattr(fftconv, "SPECTRUM_CHUNK_ABOVE", 0)
        monkeypatch.setattr(fftconv, "SPECTRUM_CHUNK_BYTES", 1)
        monkeypatch.setattr(implicit, "BLOCK_ELEMENTS", 64)
    torch.manual_seed(0)
    m = HyenaPixelMixer(8, kernel_size, filter_emb_dim=8, qk_norm_layer=norm, out_norm_layer=norm).double().train()
    with torch.no_grad():
        m.filter.shift.uniform_(-0.3, 0.3)
    x = torch.randn(2, *size, 8, dtype=torch.float64, requires_grad=True)
    up = torch.randn(2, *size, 8, dtype=torch.float64)
    y, ref = m(x), _straightforward(m, x)
    scale = ref.abs().max().item()
    assert (y - ref).abs().max().item() < 1e-10 * scale
    names, params = zip(*m.named_parameters())
    got = torch.autograd.grad((y * up).sum(), (x, *params))
    want = torch.autograd.grad((ref * up).sum(), (x, *params))
    for name, a, b in zip(("input", *names), got, want):
        assert (a - b).abs().max().item() <= 1e-10 * max(b.abs().max().item(), 1e-3), name


def test_eval_cache_and_no_grad_paths_equal_the_straightforward_one() -> None:
    torch.manual_seed(1)
    m = HyenaPixelMixer(8, 23, filter_emb_dim=8, qk_norm_layer=MIXER_NORM, out_norm_layer=MIXER_NORM).double().eval()
    x = torch.randn(1, 6, 11, 8, dtype=torch.float64)
    with torch.no_grad():
        ref = _straightforward(m, x)
        cached = m(x)
        assert len(m.spectrum_cache) == 1
        m.spectrum_cache.enabled = False
        uncached = m(x)
    torch.testing.assert_close(cached, ref, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(uncached, ref, rtol=1e-10, atol=1e-12)


def test_float32_training_path_against_float64_straightforward() -> None:
    # The stated tolerance of the optimised float32 path: 1e-5 of the output's (and gradients') scale.
    torch.manual_seed(2)
    m = HyenaPixelMixer(16, 47, filter_emb_dim=16, qk_norm_layer=MIXER_NORM, out_norm_layer=MIXER_NORM).train()
    m64 = copy.deepcopy(m).double()
    x = torch.randn(1, 12, 24, 16)
    x64 = x.double().requires_grad_()
    x.requires_grad_()
    y, ref = m(x), _straightforward(m64, x64)
    assert ((y.double() - ref).abs().max() / ref.abs().max()).item() < 1e-5
    y.square().sum().backward()
    ref.square().sum().backward()
    for (name, p), p64 in zip(m.named_parameters(), m64.parameters()):
        err = (p.grad.double() - p64.grad).abs().max() / p64.grad.abs().max()
        assert err.item() < 1e-4, name
    assert ((x.grad.double() - x64.grad).abs().max() / x64.grad.abs().max()).item() < 1e-5


def test_torch_export_traces_the_mixer() -> None:
    # The fused filter runs inside torch.export's trace (parameters require grad there): no out= arguments.
    torch.manual_seed(4)
    m = HyenaPixelMixer(8, 15, filter_emb_dim=8).eval()
    m.spectrum_cache.enabled = False
    x = torch.randn(1, 6, 9, 8)
    program = torch.export.export(m, (x,))
    with torch.no_grad():
        torch.testing.assert_close(program.module()(x), m(x))
