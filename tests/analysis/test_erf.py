"""Effective receptive field (paper Section 5, Fig. 4): closed forms, the large-kernel property, batching and
the kernel cache, the area ratios and the command."""

from __future__ import annotations

import json

import numpy as np
import pytest
import timm
import torch
import torch.nn.functional as F
from torch import nn

from hyenapixel.analysis.erf import area_ratios, auto_batch_size, erf, log_normalise
from hyenapixel.cli.main import main
from hyenapixel.ops import fftconv2d


class _Conv(nn.Module):
    """forward_features = one convolution (the ERF of a linear map is its kernel, flipped into place)."""

    def __init__(self, weight: torch.Tensor) -> None:
        super().__init__()
        self.weight = nn.Parameter(weight)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight, padding=self.weight.shape[-1] // 2)


def test_single_conv_erf_is_its_kernel():
    weight = torch.rand(2, 3, 5, 5) + 0.1  # positive: the centre output is positive, ReLU passes it
    x = torch.rand(3, 3, 40, 36) + 0.1
    r = erf(_Conv(weight), x, batch_size=2)
    expected = torch.zeros(40, 36)
    expected[20 - 2 : 20 + 3, 18 - 2 : 18 + 3] = 3 * weight.sum((0, 1))  # 3 images, summed over channels
    torch.testing.assert_close(r.raw, expected, rtol=1e-5, atol=1e-5)
    assert r.num_images == 3 and r.img_size == (40, 36)


class _Stack(nn.Module):
    """Three layers with ReLUs; the middle one is a 3x3 conv or a large (63 x 63) FFT convolution."""

    def __init__(self, large: bool) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 4, 3, padding=1)
        self.b = nn.Conv2d(4, 4, 3, padding=1, groups=4)
        self.k = nn.Parameter(torch.randn(4, 63, 63) / 63) if large else None
        self.c = nn.Conv2d(4, 4, 3, padding=1)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.a(x))
        x = F.relu(fftconv2d(x, self.k) if self.k is not None else self.b(x))
        return self.c(x)


def test_large_kernel_layer_widens_the_erf():
    x = torch.randn(4, 3, 96, 96)
    small, large = erf(_Stack(False), x), erf(_Stack(True), x)
    # three 3x3 layers see a 7x7 square: nothing outside it
    assert small.raw[:, :45].sum() == 0 and small.raw[:, 52:].sum() == 0
    assert small.side[0.99] <= 7
    for t in (0.5, 0.99):
        assert large.area_ratio[t] > 4 * small.area_ratio[t]
    assert (large.raw > 0).sum() > 40 * 40


def test_area_ratios_match_a_brute_force_search():
    g = torch.Generator().manual_seed(1)
    m = torch.rand(31, 24, generator=g) ** 4
    ratios, sides = area_ratios(m, (0.1, 0.2, 0.5, 0.8))
    cy, cx, total = 15, 12, m.sum().item()
    for t in (0.1, 0.2, 0.5, 0.8):
        side = None
        for i in range(12):
            if m[cy - i : cy + i + 1, cx - i : cx + i + 1].sum().item() > t * total:
                side = 2 * i + 1
                break
        assert sides[t] == side
        assert ratios[t] == (None if side is None else side * side / (31 * 24))


def test_threshold_never_reached_is_reported_not_a_crash():
    m = torch.zeros(32, 32)
    m[0, :] = 1.0  # the first row lies outside every centred square of an even-sized map
    m[16, 16] = 0.5
    ratios, sides = area_ratios(m, (0.01, 0.5, 0.99))  # the centre holds 0.5 / 32.5
    assert sides[0.01] == 1 and ratios[0.01] == 1 / 1024
    assert ratios[0.5] is None and sides[0.99] is None
    assert area_ratios(torch.zeros(8, 8), (0.5,)) == ({0.5: None}, {0.5: None})
    torch.testing.assert_close(log_normalise(torch.tensor([[0.0, 9.0], [99.0, 0.0]])), torch.tensor([[0, 0.5], [1, 0]]))


def _tiny_hpx() -> nn.Module:
    return timm.create_model("hpx_former_s4", dims=(8, 8, 16, 16), num_classes=5)


def test_batches_and_cached_kernels_give_the_reference_erf():
    model = _tiny_hpx().eval()  # erf leaves the mode as it found it (a mode switch would empty the caches)
    x = torch.randn(3, 3, 64, 64)
    r1 = erf(model, x, batch_size=1)
    r3 = erf(model, x, batch_size=3)
    torch.testing.assert_close(r1.raw, r3.raw, rtol=1e-4, atol=1e-6)
    caches = [m.spectrum_cache for m in model.modules() if hasattr(m, "spectrum_cache")]
    assert caches and all(len(c) == 1 for c in caches)  # the ERF ran on cached kernel spectra
    # reference: the differentiable path, kernels regenerated and gradients through the filters
    for c in caches:
        c.enabled = False
    model.train()
    ref = torch.zeros(64, 64)
    for i in range(3):
        xi = x[i : i + 1].clone().requires_grad_(True)
        model.eval()
        f = model.forward_features(xi)
        (g,) = torch.autograd.grad(F.relu(f[:, :, f.shape[2] // 2, f.shape[3] // 2]).sum(), xi)
        ref += F.relu(g).sum((0, 1))
    torch.testing.assert_close(r1.raw, ref, rtol=1e-4, atol=1e-6)
    assert all(p.requires_grad and p.grad is None for p in model.parameters())


def test_cli_writes_maps_and_refuses_bad_input(tmp_path, capsys):
    pytest.importorskip("skimage")
    out = tmp_path / "out"
    argv = ["erf", "--model", "hpx_former_s4", "--model", "c_hpx_former_s4", "--img-size", "64"]
    assert main([*argv, "--num-images", "3", "--output", str(out)]) == 0
    assert str(out) in capsys.readouterr().out
    data = json.loads((out / "erf.json").read_text())
    assert [d["model"] for d in data] == ["hpx_former_s4", "c_hpx_former_s4"]
    assert set(data[0]["area_ratio"]) == {"0.2", "0.3", "0.5", "0.99"} and data[0]["num_images"] == 3
    assert len(data[0]["images"]) == 3 and data[0]["checkpoint"] is None and data[0]["pretrained"] is False
    raw = np.load(out / "erf.npz")
    assert sorted(raw.files) == ["0_hpx_former_s4", "1_c_hpx_former_s4"] and raw["0_hpx_former_s4"].shape == (64, 64)
    assert np.asarray(data[0]["preview"]).max() == pytest.approx(1.0)
    (tmp_path / "empty").mkdir()
    assert main([*argv, "--images", str(tmp_path / "empty"), "--output", str(tmp_path / "o2")]) == 2
    err = capsys.readouterr().err.strip()
    assert "no images found" in err and len(err.splitlines()) == 1
    assert main(["erf", "--model", "hpx_former_s4", "--img-size", "20", "--output", str(tmp_path / "o3")]) == 2
    assert "at least 32 px" in capsys.readouterr().err


def test_default_batches_bound_the_pixels_per_batch():
    assert [auto_batch_size(s, s) for s in (224, 512, 1024, 2048)] == [8, 1, 1, 1]
    assert auto_batch_size(160, 160) == 15


def _our_checkpoint(tmp_path, side: int = 48):
    """A best.safetensors as a run of ours writes it (model spec, epoch, input size and the data's mean/std)."""
    from safetensors.torch import save_file

    model = timm.create_model("hpx_former_s4", num_classes=2, dims=(8, 16, 24, 32))
    meta = {
        "model_spec": {"name": "hpx_former_s4", "kwargs": {"dims": [8, 16, 24, 32]}},
        "epoch": 6,
        "num_classes": 2,
        "input_size": [3, side, side],
        "config": {"data": {"data": "x"}, "resolved": {"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}},
    }
    path = tmp_path / "best.safetensors"
    save_file(model.state_dict(), path, metadata={k: json.dumps(v) for k, v in meta.items()})
    return path


def test_cli_respects_a_run_checkpoint(tmp_path, capsys, monkeypatch):
    """A checkpoint of ours: the ERF runs at the size the run trained at, on images normalised as the run's data,
    and the report says which weights were used (the hub model beside it: 'random initialisation')."""
    pytest.importorskip("skimage")
    import hyenapixel.analysis as analysis

    ck = _our_checkpoint(tmp_path)
    out = tmp_path / "out"
    asked = []
    real = analysis.load_images
    monkeypatch.setattr(analysis, "load_images", lambda *a, **k: asked.append(k) or real(*a, **k))
    argv = ["erf", "--checkpoint", str(ck), "--model", "c_hpx_former_s4", "--num-images", "2", "--output", str(out)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "at 48 px, the size its checkpoint was trained at" in printed
    data = json.loads((out / "erf.json").read_text())
    assert [d["img_size"] for d in data] == [[48, 48], [1024, 1024]]
    assert [d["weights"] for d in data] == ["checkpoint best.safetensors (epoch 6)", "random initialisation"]
    assert [(k["size"], tuple(k["mean"]), tuple(k["std"])) for k in asked] == [
        (48, (0.5,) * 3, (0.25,) * 3),  # the run's normalisation
        (1024, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),  # ImageNet's for the hub model
    ]


def test_macs_counts_a_run_checkpoint_at_its_size(tmp_path, capsys):
    ck = _our_checkpoint(tmp_path, side=64)
    assert main(["macs", "--checkpoint", str(ck), "--output", str(tmp_path / "m")]) == 0
    assert "at 64 px, the size its checkpoint was trained at" in capsys.readouterr().out
    (entry,) = json.loads((tmp_path / "m" / "macs.json").read_text())
    assert entry["input_shape"] == [3, 64, 64] and entry["weights"] == "checkpoint best.safetensors (epoch 6)"


def test_cli_uses_the_runs_own_validation_images(tmp_path, capsys):
    """A checkpoint of a run on the built-in data: the ERF is taken over that run's validation images (as
    kernel-size evaluates on them), not over photos, and the report names them."""
    from safetensors.torch import save_file

    from hyenapixel.data import BalanceDataset

    model = timm.create_model("hpx_former_s4", num_classes=2, dims=(8, 16, 24, 32))
    config = {"data": {"data": None, "builtin": "balance", "val_samples": 20}, "run": {"seed": 5}}
    meta = {
        "model_spec": {"name": "hpx_former_s4", "kwargs": {"dims": [8, 16, 24, 32]}},
        "num_classes": 2,
        "input_size": [3, 32, 32],
        "config": config,
    }
    ck = tmp_path / "best.safetensors"
    save_file(model.state_dict(), ck, metadata={k: json.dumps(v) for k, v in meta.items()})
    out = tmp_path / "out"
    assert main(["erf", "--checkpoint", str(ck), "--num-images", "3", "--output", str(out)]) == 0
    assert "its run's validation images" in capsys.readouterr().out
    (entry,) = json.loads((out / "erf.json").read_text())
    assert entry["img_size"] == [32, 32] and len(entry["images"]) == 3
    assert entry["images"][0].startswith("built-in balance-default val")
    # the same ERF as over the run's first three validation images, computed directly
    val = BalanceDataset.splits(1, 20, seed=5, image_size=32)[1]
    direct = erf(model.eval(), torch.stack([val[i][0] for i in range(3)]))
    np.testing.assert_allclose(np.load(out / "erf.npz")["0_hpx_former_s4"], direct.raw.numpy(), rtol=1e-5)
