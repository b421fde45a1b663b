"""hyenapixel.models.weights: one safe reader for every weights file, and models rebuilt from checkpoints."""

from __future__ import annotations

import json
import pickle

import pytest
import timm
import torch
from safetensors.torch import save_file

from hyenapixel.errors import UserError
from hyenapixel.models import WeightsError, load_model, read_checkpoint
from hyenapixel.models.weights import TRAIN_STATE_FORMAT

SPEC = {"name": "hpx_former_s4", "kwargs": {"dims": [8, 16, 24, 32], "kernel_sizes": [15, 7, 3, 1]}}


def _tiny(num_classes: int = 3, in_chans: int = 1) -> torch.nn.Module:
    return timm.create_model(
        "hpx_former_s4", num_classes=num_classes, in_chans=in_chans, dims=(8, 16, 24, 32), kernel_sizes=(15, 7, 3, 1)
    ).eval()


def _train_state(model: torch.nn.Module) -> dict:
    return {
        "format": TRAIN_STATE_FORMAT,
        "model": model.state_dict(),
        "ema": None,
        "model_spec": SPEC,
        "num_classes": 3,
        "in_chans": 1,
        "input_size": [1, 32, 32],
        "class_names": ["a", "b", "c"],
    }


def test_training_state_rebuilds_the_exact_model(tmp_path) -> None:
    ref = _tiny()
    path = tmp_path / "last.pt"
    torch.save(_train_state(ref), path)
    model = load_model(checkpoint=path).eval()
    x = torch.randn(2, 1, 32, 32)
    torch.testing.assert_close(model(x), ref(x), rtol=0, atol=0)
    assert model.pretrained_cfg["input_size"] == (1, 32, 32)
    assert read_checkpoint(path).meta["class_names"] == ["a", "b", "c"]


def test_an_already_read_checkpoint_is_not_read_again(tmp_path) -> None:
    ref = _tiny()
    path = tmp_path / "last.pt"
    torch.save(_train_state(ref), path)
    ck = read_checkpoint(path)
    path.unlink()  # nothing may touch the file any more
    model = load_model(checkpoint=ck).eval()
    x = torch.randn(2, 1, 32, 32)
    torch.testing.assert_close(model(x), ref(x), rtol=0, atol=0)


def test_safetensors_with_spec_metadata_and_features_only(tmp_path) -> None:
    ref = _tiny()
    path = tmp_path / "best.safetensors"
    meta = {"model_spec": json.dumps(SPEC), "num_classes": "3", "in_chans": "1"}
    save_file({k: v.contiguous() for k, v in ref.state_dict().items()}, str(path), metadata=meta)
    x = torch.randn(1, 1, 64, 64)
    torch.testing.assert_close(load_model("hpx_former_s4", checkpoint=path).eval()(x), ref(x), rtol=0, atol=0)
    feats = load_model(checkpoint=path, features_only=True).eval()(x)
    torch.testing.assert_close(feats[-1], ref.forward_intermediates(x, intermediates_only=True)[-1])


def test_new_head_for_fine_tuning(tmp_path) -> None:
    ref = _tiny()
    path = tmp_path / "last.pt"
    torch.save(_train_state(ref), path)
    model = load_model(checkpoint=path, num_classes=5)
    assert model.get_classifier().out_features == 5
    torch.testing.assert_close(model.stem.conv.weight, ref.stem.conv.weight)


def test_wrong_variant_names_both(tmp_path) -> None:
    path = tmp_path / "last.pt"
    torch.save(_train_state(_tiny()), path)
    with pytest.raises(WeightsError, match="holds a hpx_former_s4 model, not hb_former_s4"):
        load_model("hb_former_s4", checkpoint=path)


def test_plain_state_dict_of_another_architecture_is_an_error(tmp_path) -> None:
    path = tmp_path / "w.pth"
    torch.save(_tiny().state_dict(), path)
    with pytest.raises(WeightsError, match="does not fit hpx_former_s4"):
        load_model("hpx_former_s4", checkpoint=path)  # default dims: every tensor mismatches


def test_unsafe_corrupt_and_missing_files(tmp_path) -> None:
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    evil = tmp_path / "evil.pt"
    with open(evil, "wb") as f:
        pickle.dump({"x": Evil()}, f)
    with pytest.raises(WeightsError, match="cannot be loaded safely|not a checkpoint that can be loaded safely"):
        read_checkpoint(evil)
    text = tmp_path / "notes.safetensors"
    text.write_text("hello")
    with pytest.raises(WeightsError, match="not a readable safetensors file"):
        read_checkpoint(text)
    with pytest.raises(WeightsError, match="checkpoint not found"):
        read_checkpoint(tmp_path / "nope.pt")


def test_unknown_model_and_ema_errors(tmp_path) -> None:
    with pytest.raises(UserError, match="unknown model 'hpx_former_s99'.*hpx_former_s"):
        load_model("hpx_former_s99")
    path = tmp_path / "last.pt"
    torch.save(_train_state(_tiny()), path)
    with pytest.raises(WeightsError, match="no 'ema' weights"):
        load_model(checkpoint=path, use_ema=True)
