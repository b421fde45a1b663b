"""segmentation_models_pytorch UPerNet with HyenaPixel encoders: the plain ``tu-`` path and dense.upernet."""

from __future__ import annotations

import pytest
import torch

from hyenapixel import dense
from hyenapixel.data.shapes import ShapesDataset
from hyenapixel.models import REGISTERED_MODELS, load_model

smp = pytest.importorskip("segmentation_models_pytorch")

REDUCED = dict(depths=(1, 1, 1, 1), dims=(32, 32, 64, 96))


@pytest.mark.parametrize("name", sorted({n for n in REGISTERED_MODELS if n.endswith("_s4")}))
def test_smp_tu_encoders_forward_backward(name):
    """Every registered family works as ``tu-<name>`` after ``import hyenapixel`` (dims reduced through smp's
    encoder kwargs, which it passes on to timm)."""
    model = smp.UPerNet(encoder_name=f"tu-{name}", encoder_weights=None, classes=5, decoder_channels=32, **REDUCED)
    x = torch.randn(2, 3, 64, 96)
    y = model(x)
    assert y.shape == (2, 5, 64, 96)
    y.square().mean().backward()
    enc = [p for p in model.encoder.parameters() if p.requires_grad]
    assert enc and all(p.grad is not None for p in enc)


@pytest.mark.slow
def test_smp_upernet_at_512():
    """The issue's call at the paper's 512x512 crop size, forward and backward (S4 keeps CI time low; S18 was
    checked by hand: 79 s on the shared 2-core machine)."""
    model = smp.UPerNet(encoder_name="tu-hpx_former_s4", encoder_weights=None, classes=150)
    y = model(torch.randn(2, 3, 512, 512))
    assert y.shape == (2, 150, 512, 512)
    y.mean().backward()
    assert model.encoder.model.model.stem.conv.weight.grad is not None


def test_upernet_uses_dense_backbone_and_checkpoint(fixtures_dir, reduced_models):
    spec = reduced_models["hpx_former_s18"]
    kw = dict(depths=tuple(spec["depths"]), dims=tuple(spec["dims"]))
    path = str(fixtures_dir / "hpx_former_s18.reduced.bin")
    model = dense.upernet("hpx_former_s18", classes=3, checkpoint=path, backbone_kwargs=kw, decoder_channels=32)
    body = model.encoder.model
    assert isinstance(body, dense.DenseBackbone)
    assert all(isinstance(n, torch.nn.Identity) for n in body.norms)  # smp's decoder has its own stage norms
    assert len(model.decoder.feature_norms) == 4
    ref = load_model("hpx_former_s18", checkpoint=path, **kw).state_dict()
    got = body.metaformer.state_dict()
    for key, value in got.items():
        torch.testing.assert_close(value, ref[key], msg=key)
    assert model(torch.randn(2, 3, 64, 64)).shape == (2, 3, 64, 64)


def test_upernet_training_lowers_the_loss():
    torch.manual_seed(0)
    ds = ShapesDataset(4, image_size=64, seed=1)
    x = torch.stack([ds[i][0] for i in range(4)])
    y = torch.stack([ds[i][1]["semantic"] for i in range(4)])
    model = dense.upernet("hpx_former_s4", classes=4, kernel_policy="cover", img_size=64, decoder_channels=32,
                          backbone_kwargs=REDUCED)  # fmt: skip
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3)
    losses = []
    for _ in range(6):
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0], losses
    model.eval()
    with torch.no_grad():
        out = model(x)
    assert out.shape == (4, 4, 64, 64)


def test_upernet_bad_input():
    with pytest.raises(dense.DenseInputError, match="encoder_name is set by hyenapixel.dense.upernet"):
        dense.upernet("hpx_former_s4", classes=3, encoder_name="tu-resnet18")
    model = dense.upernet("hpx_former_s4", classes=3, backbone_kwargs=REDUCED)
    with pytest.raises(RuntimeError, match="divisible by 32"):  # smp's own check, with its padding advice
        model(torch.randn(1, 3, 100, 100))
