"""The shared training loop: gradient accumulation equals one large batch, a diverged loss stops before the step,
detector-style batches (lists of images, dicts of targets) train, and the step-counted warmup of the dense run."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from hyenapixel.errors import NonFiniteLossError
from hyenapixel.models.training import LRSchedule, train_one_epoch

CPU = torch.device("cpu")


def _mse(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return nn.functional.mse_loss(model(x), y)


def _trained(batches: list[tuple[torch.Tensor, torch.Tensor]], accum: int) -> nn.Linear:
    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    train_one_epoch(model, batches, opt, _mse, LRSchedule(0.1, 1, kind="constant"), device=CPU, epoch=1,
                    accum_steps=accum)  # fmt: skip
    return model


def test_accumulated_micro_batches_equal_one_batch() -> None:
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(8, 3, generator=g), torch.randn(8, 2, generator=g)
    whole = _trained([(x, y)], accum=1)
    split = _trained([(x[:4], y[:4]), (x[4:], y[4:])], accum=2)
    torch.testing.assert_close(split.weight, whole.weight)
    torch.testing.assert_close(split.bias, whole.bias)
    assert not torch.equal(whole.weight, _trained([], accum=1).weight)  # the step did change the weights


def test_non_finite_loss_stops_before_the_step() -> None:
    model = nn.Linear(3, 2)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    batch = (torch.full((2, 3), float("nan")), torch.zeros(2, 2))
    with pytest.raises(NonFiniteLossError, match="loss is nan"):
        train_one_epoch(model, [batch], opt, _mse, LRSchedule(0.1, 1), device=CPU, epoch=1)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_detector_style_batches_and_per_step_lr() -> None:
    """Lists of images and dicts of targets reach ``loss_fn`` as given; the lr is set before every step."""
    model = nn.Linear(3, 1)
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    seen_lr = []

    def loss_fn(m: nn.Module, images: list[torch.Tensor], targets: list[dict]) -> torch.Tensor:
        seen_lr.append(opt.param_groups[0]["lr"])
        return sum((m(im).sum() - t["value"]) ** 2 for im, t in zip(images, targets))

    data = [([torch.ones(1, 3), torch.zeros(2, 3)], [{"value": torch.tensor(1.0)}, {"value": torch.tensor(0.0)}])] * 4
    warmup = 2  # the dense run's warmup: lr / W, 2 lr / W, ..., lr, then cosine down to zero
    schedule = LRSchedule(0.5, 4, warmup_epochs=warmup - 1, warmup_lr=0.5 / warmup)
    stats = train_one_epoch(model, data, opt, loss_fn, schedule, device=CPU, epoch=1)
    assert schedule.num_updates == 4 and stats.images == 8
    # the lr of steps 0-2, read by the next step's loss_fn: warmup 0.25, peak 0.5, then the cosine over 3 steps
    assert seen_lr[1:] == pytest.approx([0.25, 0.5, 0.375])
    assert opt.param_groups[0]["lr"] == pytest.approx(0.125)  # the last step's
