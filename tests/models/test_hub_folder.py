"""A run's checkpoint as a timm hub folder: timm's own ``local-dir:`` loader rebuilds the model (custom dims,
kernel sizes, channels, classes) with bitwise-identical weights and the run's data settings."""

from __future__ import annotations

import json

import pytest
import timm
import torch
from safetensors.torch import save_file
from timm.data import resolve_data_config

from hyenapixel.errors import UserError
from hyenapixel.models import HUB_FOLDER_FILES, save_hub_folder

ARCH = {"dims": [8, 16, 24, 32], "kernel_sizes": [15, 7, 3, 1]}


def _run_file(tmp_path, name: str = "hpx_former_s4"):
    """A best.safetensors as a run writes it: the weights and, in the metadata, the model spec and data settings."""
    torch.manual_seed(0)
    model = timm.create_model(name, in_chans=1, num_classes=3, **ARCH)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.01)  # not the initial values
    meta = {
        "model_spec": {"name": name, "kwargs": ARCH},
        "in_chans": 1,
        "num_classes": 3,
        "input_size": [1, 48, 48],
        "class_names": ["a", "b", "c"],
        "config": {"data": {"data": "folder"}, "resolved": {"mean": [0.25], "std": [0.5], "crop_pct": 0.9}},
    }
    path = tmp_path / "best.safetensors"
    save_file(model.state_dict(), path, metadata={k: json.dumps(v) for k, v in meta.items()})
    return model, path


@pytest.mark.parametrize("name", ["hpx_former_s4", "hb_former_s4"])
def test_local_dir_round_trip_is_bitwise(tmp_path, name: str) -> None:
    model, path = _run_file(tmp_path, name)
    folder = save_hub_folder(path, tmp_path / "hub")
    assert sorted(p.name for p in folder.iterdir()) == sorted(HUB_FOLDER_FILES)
    config = json.loads((folder / "config.json").read_text())
    assert config["architecture"] == name and config["label_names"] == ["a", "b", "c"]

    loaded = timm.create_model(f"local-dir:{folder}", pretrained=True)
    want, got = model.state_dict(), loaded.state_dict()
    assert want.keys() == got.keys()
    assert all(torch.equal(want[k], got[k]) for k in want)
    data = resolve_data_config(model=loaded)
    assert data["input_size"] == (1, 48, 48) and list(data["mean"]) == [0.25] and list(data["std"]) == [0.5]
    assert data["crop_pct"] == 0.9
    x = torch.randn(2, 1, 48, 48)
    torch.testing.assert_close(loaded.eval()(x), model.eval()(x), rtol=0, atol=0)


def test_hub_folder_refuses_to_overwrite_and_names_a_file(tmp_path) -> None:
    _, path = _run_file(tmp_path)
    folder = save_hub_folder(path, tmp_path / "hub")
    with pytest.raises(UserError, match="holds config.json, model.safetensors already"):
        save_hub_folder(path, folder)
    assert save_hub_folder(path, folder, overwrite=True) == folder
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError, match="is a file"):
        save_hub_folder(path, tmp_path / "file")
