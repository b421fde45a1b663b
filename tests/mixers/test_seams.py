"""The seams the mixers and filters offer to the tools above them (deployment, kernel analysis), against
independent references: a replaced long convolution, the q/k/v branches, the filters' learned support, and the
state dict, which none of them changes."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from hyenapixel.filters import ExplicitFilter2d, ImplicitFilter1d, ImplicitFilter2d, SeparableFilter2d
from hyenapixel.mixers import BidirectionalHyenaMixer, CausalHyenaMixer, HyenaPixelMixer
from hyenapixel.models import MIXER_NORM
from hyenapixel.ops import fftconv1d_ref, fftconv2d_ref


class _DirectConv2d(nn.Module):
    """A channels-last long convolution with a fixed kernel, by the direct reference."""

    def __init__(self, kernel: torch.Tensor) -> None:
        super().__init__()
        self.kernel = kernel

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        return fftconv2d_ref(u.permute(0, 3, 1, 2), self.kernel).permute(0, 2, 3, 1)


class _DirectConv1d(nn.Module):
    def __init__(self, kernel: torch.Tensor, causal: bool) -> None:
        super().__init__()
        self.kernel, self.causal = kernel, causal

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        return fftconv1d_ref(u, self.kernel, causal=self.causal)


def test_a_replaced_long_convolution_gives_the_same_mixer() -> None:
    # frozen_conv with the mixer's own kernel (skip term included) by the direct reference: the same function, and
    # the state dict is that of a mixer without a replacement
    torch.manual_seed(0)
    mixer = HyenaPixelMixer(6, 9, filter_emb_dim=8, qk_norm_layer=MIXER_NORM, out_norm_layer=MIXER_NORM).double()
    x = torch.randn(2, 7, 5, 6, dtype=torch.float64)
    keys = list(mixer.state_dict())
    with torch.no_grad():
        want = mixer(x)
        mixer.frozen_conv = _DirectConv2d(mixer.kernel())
        torch.testing.assert_close(mixer(x), want, rtol=1e-10, atol=1e-12)
        u = torch.randn(2, 6, 7, 5, dtype=torch.float64)  # channels-first long_conv goes through it too
        torch.testing.assert_close(mixer.long_conv(u), fftconv2d_ref(u, mixer.kernel()), rtol=1e-10, atol=1e-12)
    assert list(mixer.state_dict()) == keys
    mixer.frozen_conv = None
    assert list(mixer.state_dict()) == keys and "frozen_conv" not in dict(mixer.named_modules())


@pytest.mark.parametrize("cls", [BidirectionalHyenaMixer, CausalHyenaMixer])
def test_a_replaced_1d_long_convolution_gives_the_same_mixer(cls) -> None:
    torch.manual_seed(1)
    mixer = cls(6, 12).double()
    x = torch.randn(2, 3, 4, 6, dtype=torch.float64)
    with torch.no_grad():
        want = mixer(x)
        mixer.frozen_conv = _DirectConv1d(mixer.kernel(12), mixer.causal)
        torch.testing.assert_close(mixer(x), want, rtol=1e-10, atol=1e-12)


def test_state_dict_keys_are_the_parameters_and_nothing_else() -> None:
    # the seams add no state: the keys are the parameters' names (checkpoints and the official conversion rely on it)
    for mixer in (HyenaPixelMixer(8, 9, filter_emb_dim=8), BidirectionalHyenaMixer(8, 16), CausalHyenaMixer(8, 16)):
        assert set(mixer.state_dict()) == {n for n, _ in mixer.named_parameters()}


MIXERS = [
    lambda: HyenaPixelMixer(6, 9, filter_emb_dim=8),
    lambda: BidirectionalHyenaMixer(6, 12),
    lambda: CausalHyenaMixer(6, 12),
]


@pytest.mark.parametrize("make", MIXERS)
def test_split_projections_compute_the_same_mixer(make) -> None:
    torch.manual_seed(2)
    mixer = make().double().eval()
    x = torch.randn(2, 3, 4, 6, dtype=torch.float64)
    with torch.no_grad():
        want = mixer(x)
        mixer.split_projections()
        assert len(mixer.in_proj) == len(mixer.short_conv) == 3
        torch.testing.assert_close(mixer(x), want, rtol=1e-10, atol=1e-12)


def test_implicit_2d_support_is_the_bounding_box_of_the_window() -> None:
    # reference: the window written out from Eq. 4 and a loop over its rows and columns
    torch.manual_seed(3)
    f = ImplicitFilter2d(5, kernel_size=(11, 15), emb_dim=8)
    with torch.no_grad():
        f.decay.copy_(torch.tensor([0.05, 0.3, 1.0, 3.0, 30.0]))
        f.shift.copy_(torch.tensor([0.0, -0.02, 0.01, 0.0, -1.0]))
    kh, kw = f.kernel_size
    i = torch.arange(kh, dtype=torch.float64)[:, None] + 0.5 - kh / 2
    j = torch.arange(kw, dtype=torch.float64)[None, :] + 0.5 - kw / 2
    dist = torch.sqrt(i**2 + j**2)
    got = f.support(0.05)
    assert got.shape == (5, 2)
    for c in range(5):
        window = torch.exp(-dist * f.decay[c].abs().item()) + f.shift[c].item()
        rows = [r for r in range(kh) if (window[r] >= 0.05).any()]
        cols = [q for q in range(kw) if (window[:, q] >= 0.05).any()]
        want = [rows[-1] - rows[0] + 1 if rows else 0, cols[-1] - cols[0] + 1 if cols else 0]
        assert got[c].tolist() == want, c
    assert got[0].tolist() == [11, 15] and got[4].tolist() == [0, 0]  # slow decay: everything; shifted below: none


def test_1d_support_counts_the_taps_of_the_window() -> None:
    f = ImplicitFilter1d(4, 23, emb_dim=5, hidden=8)
    window = f.window(23)
    assert torch.equal(f.support(0.05, 23)[:, 0], (window >= 0.05).sum(1))
    t = (torch.arange(23) - 11).abs() / 11.0  # the centered window: exp(-|alpha| |t| / (L - 1))
    torch.testing.assert_close(window, torch.exp(-t[None, :] * f.decay.abs()[:, None]), rtol=1e-6, atol=1e-7)
    mixer = BidirectionalHyenaMixer(4, 12)
    assert torch.equal(mixer.kernel_support(0.05, (3, 4)), mixer.filter.support(0.05, 23))


@pytest.mark.parametrize("filter_layer", [ExplicitFilter2d, SeparableFilter2d])
def test_directly_learned_kernels_have_no_window(filter_layer) -> None:
    mixer = HyenaPixelMixer(4, (9, 7), filter_layer=filter_layer)
    assert mixer.kernel_support(0.05) is None
    assert mixer.relative_kernel_size((6, 7)) == 9 / 6


def test_filter_kernel_is_the_kernel_without_the_skip_term() -> None:
    torch.manual_seed(4)
    mixer = HyenaPixelMixer(3, 7, filter_emb_dim=4)
    with torch.no_grad():
        delta = torch.zeros(3, 7, 7)
        delta[:, 3, 3] = mixer.filter.skip
        torch.testing.assert_close(mixer.filter_kernel() + delta, mixer.kernel(), rtol=0, atol=0)
        hb = BidirectionalHyenaMixer(3, 9)
        k = hb.filter_kernel((3, 3))
        assert k.shape == (3, 17)
        torch.testing.assert_close(F.pad(k, (0, 0)) + torch.eye(17)[8] * hb.filter.skip[:, None], hb.kernel(9))
