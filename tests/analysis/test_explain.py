"""FGVis explanations (Appendix C): the activation-bounds defense, the mask game and the explain subcommand."""

from __future__ import annotations

import json

import numpy as np
import pytest
import timm
import torch
import torch.nn.functional as F
from torch import nn

import hyenapixel  # noqa: F401  (registers the models)
from hyenapixel.analysis import ActivationBounds, ClampToBounds, FilterGradients, explain, plot_explain
from hyenapixel.analysis.explain import explain_display
from hyenapixel.cli.main import main
from hyenapixel.errors import UserError
from hyenapixel.layers import SquaredReLU, StarReLU


def _net(num_classes: int = 5) -> nn.Module:
    """A small CNN using each activation the defense must handle (ReLU, GELU, StarReLU, SquaredReLU)."""
    torch.manual_seed(0)
    star = StarReLU(scale_value=0.8, bias_value=-0.3)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1, stride=2),
        nn.GELU(),
        nn.Conv2d(8, 8, 3, padding=1),
        star,
        nn.Conv2d(8, 8, 3, padding=1, stride=2),
        SquaredReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, num_classes),
    ).eval()


def _quadrant_net() -> nn.Module:
    """Class k is the brightness of image quadrant k (through ReLU, GELU and StarReLU): deleting the brightest
    quadrant is what changes the top class."""
    lum = nn.Conv2d(3, 1, 1, bias=False)
    mix = nn.Conv2d(1, 1, 1)
    head = nn.Linear(4, 4, bias=False)
    with torch.no_grad():
        lum.weight.fill_(1 / 3)
        mix.weight.fill_(1.0)
        mix.bias.fill_(0.0)
        head.weight.copy_(20 * torch.eye(4))
    net = nn.Sequential(
        lum, nn.ReLU(), mix, nn.GELU(), StarReLU(1.0, -0.1), nn.AdaptiveAvgPool2d(2), nn.Flatten(), head
    )
    return net.eval()


def _quadrant_image() -> torch.Tensor:
    gen = torch.Generator().manual_seed(3)
    image = 0.1 * torch.rand(3, 16, 16, generator=gen)
    for k, level in enumerate((0.8, 0.6, 0.5, 0.4)):  # quadrants row-major, as AdaptiveAvgPool2d(2) + Flatten
        r, c = divmod(k, 2)
        image[:, 8 * r : 8 * r + 8, 8 * c : 8 * c + 8] += level
    return image


# The resting value of each activation (its output for zero input), written out independently of the code.
def _rest(module: nn.Module) -> float:
    if isinstance(module, StarReLU):
        return float(module.bias.detach())
    return 0.0


def _record(model: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Outputs of the activation modules (as the next layer sees them) for one forward."""
    seen = {}
    handles = [
        m.register_forward_hook(lambda mod, i, o, n=n: seen.__setitem__(n, o.detach().clone()))
        for n, m in model.named_modules()
        if isinstance(m, (nn.ReLU, nn.GELU, StarReLU, SquaredReLU))
    ]
    with torch.no_grad():
        model(x)
    for h in handles:
        h.remove()
    return seen


def test_clamp_defense_holds_every_activation_in_bounds_measured_independently():
    model = _net()
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(1, 3, 16, 16, generator=gen)
    clean = _record(model, x)
    bounds = {}
    for name, module in model.named_modules():
        if name in clean:
            r = torch.full_like(clean[name], _rest(module))
            bounds[name] = (torch.minimum(clean[name], r), torch.maximum(clean[name], r))
    perturbed = x * torch.rand(x.shape, generator=gen) + 0.5 * torch.randn(x.shape, generator=gen)

    undefended = _record(model, perturbed)
    outside = sum(int(((a < bounds[n][0]) | (a > bounds[n][1])).sum()) for n, a in undefended.items())
    assert outside > 100  # without the defense the perturbed image leaves the bounds

    with ActivationBounds(model, x, ClampToBounds()) as guard:
        assert sorted(guard.bounds) == sorted(bounds)
        for n, ((lo, hi),) in guard.bounds.items():
            torch.testing.assert_close(lo, bounds[n][0])
            torch.testing.assert_close(hi, bounds[n][1])
        defended = _record(model, perturbed)  # hooks registered after the defense see what the next layer gets
    assert len(defended) == 4
    for n, a in defended.items():
        lo, hi = bounds[n]
        assert bool(((a >= lo - 1e-6) & (a <= hi + 1e-6)).all()), n
    # the hooks are gone after the context: the model is unchanged
    after = _record(model, perturbed)
    for n in after:
        torch.testing.assert_close(after[n], undefended[n])


@pytest.mark.parametrize("defense", [ClampToBounds(), FilterGradients()])
def test_defense_gradient_is_zero_exactly_outside_the_bounds(defense):
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(200, generator=gen, requires_grad=True)
    lo, hi = torch.full((200,), -0.5), torch.full((200,), 0.7)
    upstream = torch.randn(200, generator=gen)
    y = defense(a, lo, hi)
    y.backward(upstream)
    inside = (a.detach() >= lo) & (a.detach() <= hi)
    assert 0 < int(inside.sum()) < 200
    torch.testing.assert_close(a.grad, upstream * inside)
    expected = a.detach().clamp(-0.5, 0.7) if isinstance(defense, ClampToBounds) else a.detach()
    torch.testing.assert_close(y.detach(), expected)


def _softmax_top(model: nn.Module, x: torch.Tensor) -> int:
    with torch.no_grad():
        return int(F.softmax(model(x), -1).argmax())


@pytest.mark.parametrize("noise", [0.0, 0.1])
def test_mask_stays_in_unit_interval_and_deletes_what_the_class_needs(noise):
    model, image = _quadrant_net(), _quadrant_image()
    result = explain(model, image, max_iter=200, noise=noise, mean=(0,) * 3, std=(1,) * 3)
    assert result.mask.shape == (3, 16, 16)
    assert float(result.mask.min()) >= 0.0 and float(result.mask.max()) <= 1.0
    assert result.target == _softmax_top(model, image[None]) == 0
    assert result.stopped_early, result.tries
    deleted = 1 - result.mask
    assert float(deleted[:, :8, :8].sum()) > 0.9 * float(deleted.sum()) > 0  # the brightest quadrant only
    if noise == 0.0:  # the evidence of the returned mask no longer predicts the target
        assert _softmax_top(model, (image * result.mask)[None]) == result.final_class != result.target
    assert result.deleted_fraction == pytest.approx(float(deleted.mean()), abs=1e-6)
    assert result.mean == (0,) * 3 and result.std == (1,) * 3  # the normalisation given


def test_lambda_is_decreased_until_the_first_early_stop():
    model, image = _quadrant_net(), _quadrant_image()
    kwargs = dict(max_iter=60, noise=0.0, mean=(0,) * 3, std=(1,) * 3)
    # lambda = 10 outweighs any class-score gradient: the mask is pushed to 1 and never changes the class
    stuck = explain(model, image, lam=10.0, max_tries=1, **kwargs)
    assert not stuck.stopped_early and stuck.iterations == 60
    assert bool((stuck.mask == 1).all())
    result = explain(model, image, lam=10.0, lam_factor=1e5, max_tries=3, **kwargs)
    assert [t.lam for t in result.tries][:2] == pytest.approx([10.0, 1e-4])
    assert [t.stopped_early for t in result.tries] == [False] * (len(result.tries) - 1) + [True]
    assert result.lam == result.tries[-1].lam


class _NoiseFlips(nn.Module):
    """Two classes: class 0 leads by ``lead`` on the clean image, and any change of the input by more than
    ``lead`` in total gives class 1 the lead (so input noise switches the class before the mask moves)."""

    def __init__(self, image: torch.Tensor, lead: float) -> None:
        super().__init__()
        self.register_buffer("clean", image[None].clone())
        self.lead = lead
        self.weight = nn.Parameter(torch.ones(()))  # explain needs a parameter for the device

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        change = (x - self.clean).abs().flatten(1).sum(1) * self.weight
        return torch.stack([torch.full_like(change, self.lead), change], dim=1)


def test_undecided_when_the_noise_alone_switches_the_class(tmp_path):
    image = _quadrant_image()
    model = _NoiseFlips(image, lead=1e-3).eval()
    result = explain(model, image, max_iter=20, noise=0.1, defense=None, mean=(0,) * 3, std=(1,) * 3)
    assert result.target == 0 and result.stopped_early and result.iterations == 1
    assert result.undecided and result.deleted_fraction == 0.0
    assert result.margin == pytest.approx(float(torch.tanh(torch.tensor(5e-4))), rel=1e-3)  # p0 - p1 = tanh(lead/2)
    assert result.numbers()["undecided"] is True
    plot_explain([result])  # labelled, not an error
    # the quadrant game stops later, with a mask: decided; and its margin is the softmax lead of quadrant 0
    decided = explain(_quadrant_net(), image, max_iter=200, noise=0.0, mean=(0,) * 3, std=(1,) * 3)
    probs = F.softmax(_quadrant_net()(image[None]), dim=-1)[0].detach()
    assert decided.stopped_early and not decided.undecided
    assert decided.margin == pytest.approx(float(probs[0] - probs[1:].max()), abs=1e-6)


def test_explain_restores_the_model_and_works_on_hyenapixel():
    torch.manual_seed(0)
    model = timm.create_model("hpx_former_s4", dims=(8, 8, 16, 16), num_classes=4).train()
    image = torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(0))
    with ActivationBounds(model.eval(), image[None]) as guard:
        kinds = {type(m).__name__ for _, m in guard.modules()}
    assert {"StarReLU", "SquaredReLU"} <= kinds
    model.train()
    result = explain(model, image, max_iter=4, max_tries=2, generator=torch.Generator().manual_seed(0))
    assert 0.0 <= float(result.mask.min()) and float(result.mask.max()) <= 1.0
    assert sum(t.iterations for t in result.tries) <= 8
    assert (result.mean, result.std) == (model.pretrained_cfg["mean"], model.pretrained_cfg["std"])
    assert model.training and all(p.requires_grad for p in model.parameters())
    fig = plot_explain([result])
    assert len(fig.axes) == 3
    shown, mean_mask = explain_display(result)
    assert shown.shape == (32, 32, 3) and mean_mask.shape == (32, 32)
    torch.testing.assert_close(mean_mask, (result.mask**7).mean(0))


def test_errors():
    no_act = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.LazyLinear(3))
    image = torch.rand(3, 8, 8)
    no_act(image[None])
    with pytest.raises(UserError, match="no activation modules"):
        explain(no_act, image, max_iter=1)
    result = explain(no_act, image, max_iter=2, max_tries=1, defense=None, noise=0.0)  # undefended is allowed
    assert result.iterations >= 1
    with pytest.raises(UserError, match=r"values in \[0, 1\]"):
        explain(_net(), image * 3 - 1)
    with pytest.raises(UserError, match="target class 7"):
        explain(_net(), torch.rand(3, 16, 16), target=7)
    with pytest.raises(UserError, match="lam_factor > 1"):
        explain(_net(), torch.rand(3, 16, 16), lam_factor=0.5)


def test_cli_writes_masks_matching_the_numbers(tmp_path, capsys):
    pytest.importorskip("skimage")
    out = tmp_path / "out"
    code = main(
        ["explain", "--model", "resnet10t", "--img-size", "64", "--max-iter", "3", "--max-tries", "2"]
        + ["--num-images", "2", "--output", str(out)]
    )
    assert code == 0
    numbers = json.loads((out / "explain.json").read_text())
    masks = np.load(out / "explain_masks.npz")
    assert len(numbers["results"]) == 2 == len(masks.files)
    for r in numbers["results"]:
        mask = masks[f"{r['label']}/{r['name']}"]
        assert mask.shape == (3, 64, 64) and mask.min() >= 0 and mask.max() <= 1
        assert r["deleted_fraction"] == pytest.approx(1 - float(mask.mean()), abs=1e-6)
        assert len(r["tries"]) <= 2 and all(t["iterations"] <= 3 for t in r["tries"])
    assert (out / "explain.png").stat().st_size > 0
    cfg = timm.create_model("resnet10t", pretrained=False).pretrained_cfg
    assert numbers["normalisation"] == {"resnet10t": {"mean": list(cfg["mean"]), "std": list(cfg["std"])}}
    assert str(out / "explain.png") in capsys.readouterr().out


def test_cli_bad_input_is_one_line_exit_2(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["explain", "--images", str(empty), "--output", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "error" in err and str(empty) in err and "Traceback" not in err
    assert main(["explain", "--model", "resnet10t", "--img-size", "16", "--output", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "at least 32 px" in err and "Traceback" not in err


def test_display_panels_follow_fig9():
    from hyenapixel.analysis.explain import ExplainResult

    image = torch.rand(3, 4, 4, generator=torch.Generator().manual_seed(0))
    mask = torch.ones(3, 4, 4)
    mask[:, :2] = 0.0  # top half deleted
    r = ExplainResult(image, mask, 0, 1.0, 1, 0.0, 1e-4, 5, True)
    shown, mean_mask = explain_display(r, exponent=7, dim=0.4)
    gray = 0.299 * image[0] + 0.587 * image[1] + 0.114 * image[2]
    torch.testing.assert_close(shown[:2], image[:, :2].permute(1, 2, 0))  # deleted: the original colours
    torch.testing.assert_close(shown[2:], (0.4 * gray[2:, :, None]).expand(2, 4, 3))  # kept: dimmed grey
    torch.testing.assert_close(mean_mask, mask[0])
    assert r.deleted_fraction == pytest.approx(0.5)
