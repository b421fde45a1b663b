"""The compatibility contract of tests/fixtures/official/README.md: reduced official checkpoints loaded through
the normal timm pretrained path reproduce the official logits within 1e-4."""

from __future__ import annotations

import re

import pytest
import timm
import torch

from hyenapixel.models import checkpoint_filter_fn, rename_official_key
from official_fixtures import VARIANTS

TOL = 1e-4


def _load(name: str, reduced: dict, fixtures_dir):
    r = reduced[name]
    model = timm.create_model(
        name,
        pretrained=True,
        depths=r["depths"],
        dims=r["dims"],
        pretrained_cfg_overlay=dict(file=str(fixtures_dir / r["state_dict"])),
    )
    return model.eval()


@pytest.mark.parametrize("name", VARIANTS)
def test_logits_match_official(name, reduced_models, fixtures_dir, parity_inputs):
    model = _load(name, reduced_models, fixtures_dir)
    with torch.no_grad():
        out = model(parity_inputs["x224"])
        ref = torch.tensor(reduced_models[name]["logits_224"])
        assert out.shape == ref.shape
        assert (out - ref).abs().max().item() <= TOL
        if "logits_192x256" in reduced_models[name]:
            out = model(parity_inputs["x192x256"])
            ref = torch.tensor(reduced_models[name]["logits_192x256"])
            assert (out - ref).abs().max().item() <= TOL


def test_fixture_has_all_six_variants(reduced_models):
    assert sorted(reduced_models) == sorted(VARIANTS)


@pytest.mark.parametrize("name", VARIANTS)
def test_rebuilt_constants_equal_official(name, reduced_models, fixtures_dir):
    """The constants we rebuild instead of loading (distance maps, 1D time axes and decays) equal the official ones."""
    sd = torch.load(fixtures_dir / reduced_models[name]["state_dict"], weights_only=True)
    model = _load(name, reduced_models, fixtures_dir)
    buffers = dict(model.named_buffers())
    checked = 0
    for key, value in sd.items():
        assert rename_official_key(key) is not None or key.endswith(("distance_map", "pos_emb.t", "deltas"))
        block = re.match(r"stages\.(\d+)\.(\d+)\.token_mixer\.", key)
        if block is None:
            continue
        prefix = f"stages.{block[1]}.blocks.{block[2]}.token_mixer.filter."
        if key.endswith("distance_map"):
            torch.testing.assert_close(buffers[prefix + "distance"], value[0, 0], rtol=0, atol=1e-5)
        elif key.endswith("pos_emb.t"):
            torch.testing.assert_close(buffers[prefix + "t_norm"], value[0, :, 0], rtol=0, atol=1e-6)
        elif key.endswith("modulation.deltas"):
            torch.testing.assert_close(buffers[prefix + "decay"], value[0, 0], rtol=0, atol=1e-6)
        else:
            continue
        checked += 1
    assert checked > 0


@pytest.mark.parametrize(
    "name",
    [
        "hpx_former_s18",
        "hpx_former_s18_384",
        "hpx_former_b36",
        "hb_former_s18",
        "hb_former_b36",
        "c_hpx_former_s18",
        "hpx_a_former_s18",
        "hb_a_former_s18",
    ],
)
def test_manifest_converts_key_by_key(name, manifest):
    """Every key of a full-size official checkpoint maps onto exactly one model tensor of matching size."""
    entry = manifest[name]
    with torch.device("meta"):
        model = timm.create_model(name)
        official = {k: torch.empty(shape) for k, shape in entry["state_dict"].items()}
    converted = checkpoint_filter_fn(official, model)
    target = model.state_dict()
    assert sorted(converted) == sorted(target)
    for k, v in converted.items():
        assert v.shape == target[k].shape, k
    # parameter count: the official count includes the frozen distance maps, which are buffers here
    distance = sum(torch.Size(s).numel() for k, s in entry["state_dict"].items() if k.endswith("distance_map"))
    assert sum(p.numel() for p in model.parameters()) == entry["num_params"] - distance
