"""The learning-rate schedule of paper Section 4.1 against its closed form at key epochs."""

from __future__ import annotations

import math

import pytest
import torch

from hyenapixel.models.training import LRSchedule, peak_lr

PEAK, WARM, MIN = 4e-3, 1e-6, 1e-5


@pytest.fixture
def in1k() -> LRSchedule:
    return LRSchedule(PEAK, 310, warmup_epochs=20, warmup_lr=WARM, min_lr=MIN, cooldown_epochs=10, kind="cosine")


@pytest.mark.parametrize(
    ("epoch", "expected"),
    [
        (0.0, WARM),  # warmup starts at 1e-6
        (10.0, WARM + (PEAK - WARM) / 2),  # linear
        (20.0, PEAK),  # peak after 20 warmup epochs
        (160.0, MIN + (PEAK - MIN) / 2),  # half-way through the 280 cosine epochs
        (90.0, MIN + 0.5 * (PEAK - MIN) * (1 + math.cos(math.pi * 70 / 280))),
        (299.999, MIN),  # end of the cosine
        (300.0, MIN),  # cooldown
        (309.5, MIN),
    ],
)
def test_in1k_schedule_closed_form(in1k: LRSchedule, epoch: float, expected: float) -> None:
    assert in1k.lr_at(epoch) == pytest.approx(expected, rel=1e-6, abs=1e-12)


def test_schedule_is_monotone_in_each_phase(in1k: LRSchedule) -> None:
    warm = [in1k.lr_at(t) for t in torch.linspace(0, 19.99, 50).tolist()]
    decay = [in1k.lr_at(t) for t in torch.linspace(20, 300, 50).tolist()]
    assert warm == sorted(warm) and decay == sorted(decay, reverse=True)


def test_constant_schedule_for_finetuning() -> None:
    s = LRSchedule(5e-5, 30, kind="constant")
    assert {s.lr_at(t) for t in (0, 1.5, 15, 29.9)} == {5e-5}


def test_per_step_application_and_state() -> None:
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([{"params": [param]}], lr=1.0)
    s = LRSchedule(1.0, 2, warmup_epochs=1, warmup_lr=0.0, min_lr=0.0, updates_per_epoch=4)
    seen = []
    for _ in range(8):
        seen.append(s.apply(opt))
        assert opt.param_groups[0]["lr"] == seen[-1]
        s.step()
    assert seen[:5] == pytest.approx([0.0, 0.25, 0.5, 0.75, 1.0])
    assert seen[6] == pytest.approx(0.5)  # cosine half-way through the second epoch
    again = LRSchedule(1.0, 2, warmup_epochs=1, updates_per_epoch=4)
    again.load_state_dict(s.state_dict())
    assert again.num_updates == 8


def test_linear_lr_scaling() -> None:
    assert peak_lr(None, 4e-3, 4096, 4096) == 4e-3
    assert peak_lr(None, 4e-3, 4096, 1024) == pytest.approx(1e-3)
    assert peak_lr(2e-3, 4e-3, 4096, 1024) == 2e-3  # --lr is absolute
