"""Learned filter size and truncation (paper Section 5, Fig. 5 and 6)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import timm
import torch
from PIL import Image
from torch.utils.data import DataLoader, TensorDataset

from hyenapixel.analysis.kernel_size import (
    learned_filter_sizes,
    truncated,
    truncation_curve,
    truncation_stages,
)
from hyenapixel.analysis.sites import long_conv_sites
from hyenapixel.cli.main import main
from hyenapixel.errors import UserError
from hyenapixel.filters import ExplicitFilter2d
from hyenapixel.mixers import BidirectionalHyenaMixer, CausalHyenaMixer, HyenaPixelMixer
from hyenapixel.models import evaluate
from hyenapixel.models.weights import TRAIN_STATE_FORMAT

TINY = dict(dims=(8, 8, 16, 16), num_classes=3, kernel_sizes=(15, 7, 3, 1))


def _tiny(name: str = "hpx_former_s4", **kw):
    return timm.create_model(name, **{**TINY, **kw}).eval()


@pytest.mark.parametrize("name", ["hpx_former_s4", "hb_former_s4"])
def test_truncation_to_zero_changes_outputs_and_to_full_size_does_not(name):
    model = _tiny(name) if name == "hpx_former_s4" else timm.create_model(name, dims=(8, 8, 16, 16)).eval()
    sites = long_conv_sites(model)
    mixed = {}
    for s in sites:
        s.module.filter.skip.data.zero_()  # the kernel alone carries the long convolution
        s.module.register_forward_hook(lambda m, a, out, n=s.name: mixed.__setitem__(n, out))
    x = torch.randn(2, 3, 32, 32)
    sizes = {s.name: (8 // 2**s.stage, 8 // 2**s.stage) for s in sites}
    with torch.inference_mode():
        base = model(x)  # fills the kernel caches: truncation must not reuse them
        base_mixed = dict(mixed)
        for stage in range(4):
            name = next(s.name for s in sites if s.stage == stage)
            with truncated(model, stage, 2.0, sizes):
                torch.testing.assert_close(model(x), base, rtol=0, atol=0)
            with truncated(model, stage, 0.0, sizes):
                logits = model(x)
                change = (mixed[name] - base_mixed[name]).abs().max() / base_mixed[name].abs().max()
            assert change > 1e-2  # rounding alone moves it by ~1e-7
            if name == "hpx_former_s4":  # (the random H_b mixers' outputs are too small to reach the logits)
                assert (logits - base).abs().max() > 1e-6
        torch.testing.assert_close(model(x), base, rtol=0, atol=0)  # restored


def test_truncated_kernel_is_the_cropped_kernel():
    model = _tiny()
    mixer = long_conv_sites(model)[0].module  # stage 1: 15 x 15 kernel on an 8 x 8 map
    with torch.no_grad():
        full = mixer.filter()
        expected = torch.zeros_like(full)
        expected[:, 6:9, 6:9] = full[:, 6:9, 6:9]  # size 0.5 * 8 = 4 px: |offset| <= 1.5
        expected[:, 7, 7] += mixer.filter.skip
        with truncated(model, 0, 0.5, {long_conv_sites(model)[0].name: (8, 8)}):
            torch.testing.assert_close(mixer.kernel(), expected)
        assert mixer.kernel().shape == (8, 15, 15) and (mixer.filter() == full).all()


def test_learned_size_of_a_known_window():
    model = _tiny()
    site = long_conv_sites(model)[0]
    filt = site.module.filter
    with torch.no_grad():
        filt.decay.fill_(math.log(20) / 5.2)  # exp(-a d) >= 0.05 exactly for d <= 5.2: |offset| <= 5 on the axes
        filt.shift.zero_()
        filt.shift[0] = 1.0  # channel 0: window >= 1 everywhere -> the whole kernel
        filt.shift[1] = -1.0  # channel 1: nothing left
    r = learned_filter_sizes(model, 32)
    first = r.blocks[0]
    assert (first.stage, first.mixer, first.feature_size) == (0, "hyenapixel", (8, 8))
    assert first.diameters == [15, 0] + [11] * 6
    assert first.coverage == pytest.approx((15 + 0 + 6 * 11) / 8 / 8)


def test_attention_and_conv_blocks_follow_the_paper_convention():
    r = learned_filter_sizes(timm.create_model("hpx_a_former_s4", dims=(8, 8, 16, 16)), 64)
    assert [b.mixer for b in r.blocks] == ["hyenapixel", "hyenapixel", "attention", "attention"]
    assert r.blocks[2].coverage == 2.0
    r = learned_filter_sizes(timm.create_model("c_hpx_former_s4", dims=(8, 8, 16, 16)), 64)
    assert [(b.mixer, b.coverage) for b in r.blocks[:2]] == [("conv", 7 / 16), ("conv", 7 / 8)]


def test_curve_matches_direct_evaluation():
    model = _tiny()
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(24, 3, 32, 32, generator=g), torch.randint(0, 3, (24,), generator=g)
    loader = DataLoader(TensorDataset(x, y), batch_size=10)
    with torch.inference_mode():
        direct = 100 * (model(x).argmax(1) == y).float().mean().item()
    assert evaluate(model, loader).top1 == pytest.approx(direct)
    t = truncation_curve(model, loader, 32, sizes=[0.0, 1.0, 2.0], stages=[0, 2])
    assert t.baseline == pytest.approx(direct)
    assert set(t.top1) == {1, 3} and all(len(v) == 3 for v in t.top1.values())
    assert t.top1[1][2] == t.baseline and t.top1[3][2] == t.baseline  # 2.0 >= 15/8 and 3/2: nothing removed
    assert t.kernel_coverage == {1: 15 / 8, 3: 3 / 2}


def test_truncation_stages_are_the_long_convolution_stages():
    hpx_a = timm.create_model("hpx_a_former_s4", dims=(8, 8, 16, 16))  # attention in stages 3 and 4
    assert truncation_stages(hpx_a) == [0, 1] and truncation_stages(hpx_a, [1]) == [1]
    with pytest.raises(UserError, match=r"^mine has no long-convolution mixer in stage 3 4 \(counted from 1\); its "
                       r"long-convolution stages are 1 2$"):  # fmt: skip
        truncation_stages(hpx_a, [0, 2, 3], "mine")
    loader = DataLoader(TensorDataset(torch.randn(2, 3, 32, 32), torch.zeros(2, dtype=torch.long)), batch_size=2)
    with pytest.raises(UserError, match="in stage 4"):  # truncation_curve refuses before it evaluates anything
        truncation_curve(hpx_a, loader, 32, stages=[3])


def _fake_run(tmp_path, model):
    """A training state in the format of hyenapixel.train, for the built-in Balance data at 32 px."""
    path = tmp_path / "best.pt"
    torch.save(
        {
            "format": TRAIN_STATE_FORMAT,
            "model": model.state_dict(),
            "model_spec": {"name": "hpx_former_s4", "kwargs": {"dims": [8, 8, 16, 16], "kernel_sizes": [15, 7, 3, 1]}},
            "config": {
                "data": {"data": None, "builtin": "balance", "val_samples": 40, "train_samples": 8},
                "run": {"seed": 3},
            },  # fmt: skip
            "num_classes": 2,
            "in_chans": 3,
            "input_size": [3, 32, 32],
            "class_names": ["left", "right"],
        },
        path,
    )
    return path


def test_cli_truncation_on_the_runs_builtin_data(tmp_path, capsys):
    model = _tiny(num_classes=2)
    ckpt = _fake_run(tmp_path, model)
    out = tmp_path / "out"
    argv = ["kernel-size", "--checkpoint", str(ckpt), "--sizes", "0", "2", "--stages", "1", "--output", str(out)]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "built-in balance" in text and str(out) in text
    data = json.loads((out / "kernel-size.json").read_text())
    t = data["truncation"][0]
    # reference: the same validation set, evaluated directly
    from hyenapixel.data import build_datasets

    _, val, _ = build_datasets(None, input_size=32, builtin="balance", builtin_val_samples=40, builtin_train_samples=8,
                               seed=3)  # fmt: skip
    loader = DataLoader(val, batch_size=64)
    assert t["baseline"] == pytest.approx(evaluate(model, loader).top1)
    assert t["top1"]["1"][1] == t["baseline"] and t["sizes"] == [0.0, 2.0]
    assert data["filter_sizes"][0]["img_size"] == [32, 32]


def test_cli_folder_data_and_bad_folder(tmp_path, capsys):
    for cls, color in (("a", 0), ("b", 255)):
        (tmp_path / "val" / cls).mkdir(parents=True)
        for i in range(2):
            Image.fromarray(np.full((40, 40, 3), color, np.uint8)).save(tmp_path / "val" / cls / f"{i}.png")
    argv = ["kernel-size", "--model", "hpx_former_s4", "--img-size", "32", "--sizes", "0", "2", "--stages", "4"]
    assert main([*argv, "--data", str(tmp_path), "--output", str(tmp_path / "o")]) == 0
    data = json.loads((tmp_path / "o" / "kernel-size.json").read_text())
    assert "4 images" in data["truncation"][0]["dataset"]
    assert "has 2 class folders, hpx_former_s4 predicts 1000 classes" in capsys.readouterr().err
    (tmp_path / "val" / "c").mkdir()
    assert main([*argv, "--data", str(tmp_path), "--output", str(tmp_path / "o2")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "holds no image files" in err[0]


def test_truncating_a_region_measures_offsets_from_the_full_kernel():
    # a 9 x 7 kernel truncated to half of an 8 x 10 map keeps |row offset| <= 1.5 and |col offset| <= 2 around the
    # full kernel's center (4, 3), also when the mixer asks for a region of taps only
    mixer = HyenaPixelMixer(2, (9, 7), filter_layer=ExplicitFilter2d)
    with torch.no_grad():
        mixer.filter.weight.uniform_(0.5, 1.5)
    mixer.truncate(0.5, (8, 10))
    full = mixer.kernel().detach()
    assert torch.nonzero(full[0]).tolist() == [[r, c] for r in range(3, 6) for c in range(1, 6)]
    region = (slice(2, 9), slice(0, 4))
    torch.testing.assert_close(mixer.kernel(region), full[:, region[0], region[1]])
    mixer.truncate(None)
    assert torch.equal(mixer.kernel(), mixer.filter.weight)  # restored (the skip term starts at 0)


@pytest.mark.parametrize("causal", [False, True])
def test_truncated_1d_kernel_keeps_the_lags_within_the_size(causal: bool):
    # 12 tokens (a 3 x 4 map) at relative size 0.5: lags |j| <= 2.5 from the zero-lag tap, the skip term untouched
    mixer = (CausalHyenaMixer if causal else BidirectionalHyenaMixer)(4, 12)
    full = mixer.kernel(12).detach()
    mixer.truncate(0.5, (3, 4))
    got = mixer.kernel(12).detach()
    zero_lag = 0 if causal else 11
    lags = (torch.arange(full.shape[-1]) - zero_lag).abs()
    torch.testing.assert_close(got, torch.where(lags <= 2, full, torch.zeros_like(full)), rtol=0, atol=0)
    assert mixer.relative_kernel_size((3, 4)) == (1.0 if causal else 23 / 12)
