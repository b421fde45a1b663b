"""Checkpoint loading: safe formats only, clear errors for wrong variants and corrupt files, hub configs, and
filter resampling for fine-tuning at higher resolution (paper Section 4.1)."""

from __future__ import annotations

import pathlib

import pytest
import timm
import torch
from safetensors.torch import save_file

from hyenapixel.models import (
    OFFICIAL_WEIGHTS,
    WeightsError,
    checkpoint_filter_fn,
    load_checkpoint_into,
    resample_hyenapixel_filters,
)

R = dict(depths=[1, 1, 2, 1], dims=[32, 32, 64, 96])


class _Payload:
    """Unpickling this object would create a marker file: a stand-in for arbitrary code execution."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


@pytest.fixture()
def malicious_checkpoint(tmp_path, fixtures_dir):
    sd = torch.load(fixtures_dir / "hpx_former_s18.reduced.bin", weights_only=True)
    sd["extra"] = _Payload(str(tmp_path / "pwned"))
    path = tmp_path / "evil.bin"
    torch.save(sd, path)
    return path, tmp_path / "pwned"


def test_unsafe_checkpoint_refused_by_timm_path(malicious_checkpoint):
    path, marker = malicious_checkpoint
    with pytest.raises(Exception, match="weights_only"):
        timm.create_model("hpx_former_s18", pretrained=True, pretrained_cfg_overlay=dict(file=str(path)), **R)
    assert not marker.exists()


def test_unsafe_checkpoint_refused_by_loader(malicious_checkpoint):
    path, marker = malicious_checkpoint
    model = timm.create_model("hpx_former_s18", **R)
    with pytest.raises(WeightsError, match="weights_only=True"):
        load_checkpoint_into(model, path)
    assert not marker.exists()


def test_wrong_variant_names_keys(fixtures_dir):
    with pytest.raises(ValueError, match=r"missing keys .*filter\.pos_emb|unexpected keys"):
        timm.create_model(
            "hpx_former_s18",
            pretrained=True,
            pretrained_cfg_overlay=dict(file=str(fixtures_dir / "hb_former_s18.reduced.bin")),
            **R,
        )
    model = timm.create_model("hpx_former_s18", **R)
    with pytest.raises(ValueError) as e:
        load_checkpoint_into(model, fixtures_dir / "c_hpx_former_s18.reduced.bin")
    assert "missing keys" in str(e.value) and "unexpected keys" in str(e.value)
    assert "stages.0.blocks.0.token_mixer" in str(e.value)


def test_corrupt_and_missing_files(tmp_path):
    model = timm.create_model("hpx_former_s4", dims=[8, 8, 16, 16])
    bad = tmp_path / "broken.pth"
    bad.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(WeightsError, match="broken.pth"):
        load_checkpoint_into(model, bad)
    bad_st = tmp_path / "broken.safetensors"
    bad_st.write_bytes(b"\x00\x01garbage")
    with pytest.raises(WeightsError, match="broken.safetensors"):
        load_checkpoint_into(model, bad_st)
    with pytest.raises(WeightsError, match="checkpoint not found: .*nope.pth"):
        load_checkpoint_into(model, tmp_path / "nope.pth")


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_other_formats_give_same_logits(suffix, tmp_path, fixtures_dir, reduced_models, parity_inputs):
    """An official .bin re-saved as .pth/.safetensors (official or converted keys) loads to the same model."""
    sd = torch.load(fixtures_dir / "hpx_former_s18.reduced.bin", weights_only=True)
    path = tmp_path / f"w{suffix}"
    if suffix == ".safetensors":
        save_file({k: v.contiguous() for k, v in sd.items()}, str(path))
    else:
        ref_model = timm.create_model("hpx_former_s18", **R)
        torch.save(checkpoint_filter_fn(sd, ref_model), path)  # already converted: must pass through unchanged
    model = timm.create_model("hpx_former_s18", pretrained=True, pretrained_cfg_overlay=dict(file=str(path)), **R)
    with torch.no_grad():
        out = model.eval()(parity_inputs["x224"])
    ref = torch.tensor(reduced_models["hpx_former_s18"]["logits_224"])
    assert (out - ref).abs().max() <= 1e-4


def test_pretrained_cfgs_point_at_hub():
    for name, hub in OFFICIAL_WEIGHTS.items():
        tag = "westai_in1k_ema_384" if name.endswith("_384") else "westai_in1k"
        cfg = timm.models.get_pretrained_cfg(f"{name}.{tag}")
        assert cfg.hf_hub_id == hub
    assert timm.models.get_pretrained_cfg("hpx_former_s18_384.westai_in1k_ema_384").input_size == (3, 384, 384)


def test_num_classes_change_on_load(fixtures_dir):
    path = str(fixtures_dir / "hpx_former_s18.reduced.bin")
    model = timm.create_model(
        "hpx_former_s18", pretrained=True, num_classes=10, pretrained_cfg_overlay=dict(file=path), **R
    )
    assert model(torch.randn(1, 3, 64, 64)).shape == (1, 10)


def test_resample_helper_and_checkpoint_path_agree(fixtures_dir):
    """Loading with new kernel sizes (filter fn) equals loading then resampling (public helper)."""
    path = str(fixtures_dir / "hpx_former_s18.reduced.bin")
    sizes = [191, 95, 47, 23]
    a = timm.create_model(
        "hpx_former_s18", pretrained=True, kernel_sizes=sizes, pretrained_cfg_overlay=dict(file=path), **R
    )
    b = timm.create_model("hpx_former_s18", pretrained=True, pretrained_cfg_overlay=dict(file=path), **R)
    old = b.stages[0].blocks[0].token_mixer.filter.decay.detach().clone()
    resample_hyenapixel_filters(b, sizes)
    sa, sb = a.state_dict(), b.state_dict()
    assert sorted(sa) == sorted(sb)
    for k in sa:
        torch.testing.assert_close(sa[k], sb[k], msg=k)
    f = b.stages[0].blocks[0].token_mixer.filter
    assert f.kernel_size == (191, 191) and f().shape[-2:] == (191, 191)
    torch.testing.assert_close(f.decay, old * 111 / 191)
    with torch.no_grad():
        assert torch.isfinite(b.eval()(torch.randn(1, 3, 96, 96))).all()


@pytest.mark.parametrize("key", ["pretrained_cfg_overlay", "pretrained_cfg"])
def test_missing_local_weights_file_is_named(tmp_path, key) -> None:
    """The README's local-file form with a file that is not there: the error names the file (timm's own
    FileNotFoundError carries no path)."""
    missing = tmp_path / "no_such" / "pytorch_model.bin"
    with pytest.raises(FileNotFoundError, match=r"pretrained weights file not found.*no_such/pytorch_model\.bin"):
        timm.create_model("hb_former_s4", pretrained=True, **{key: dict(file=str(missing))})
