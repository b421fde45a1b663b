"""hyenapixel.models.evaluation against numbers worked out by hand: accuracy, loss, the top-5 rule, the reduce hook."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from hyenapixel.errors import UserError
from hyenapixel.models import evaluate, predict, topk_from_probs
from hyenapixel.models.evaluation import format_accuracy

# Three images, six classes; the logits are log-probabilities, so the cross-entropy is -log p[target].
# Probabilities by rank: 0.40 0.25 0.15 0.10 0.06 0.04 (no ties).
P = [0.40, 0.25, 0.15, 0.10, 0.06, 0.04]
ROWS = [
    [P[0], P[1], P[2], P[3], P[4], P[5]],  # target 0: rank 1 -> top-1 and top-5 hit
    [P[1], P[0], P[5], P[2], P[3], P[4]],  # target 5: rank 5 (p 0.06) -> top-5 hit only
    [P[2], P[5], P[0], P[1], P[3], P[4]],  # target 1: rank 6 (p 0.04) -> no hit
]
TARGETS = [0, 5, 1]
LOGITS = torch.tensor(ROWS, dtype=torch.float32).log()
LOADER = [(LOGITS[:2], torch.tensor(TARGETS[:2])), (LOGITS[2:], torch.tensor(TARGETS[2:]))]
LOSS = -(math.log(0.40) + math.log(0.06) + math.log(0.04)) / 3


class Counter:
    def __init__(self) -> None:
        self.seen: list[int] = []

    def update(self, n: int) -> None:
        self.seen.append(n)


def test_evaluate_matches_the_hand_count() -> None:
    progress = Counter()
    got = evaluate(nn.Identity(), LOADER, progress=progress)  # no parameters: the device falls back to CPU
    assert got.count == 3 and progress.seen == [2, 1]
    assert got.top1 == pytest.approx(100 / 3) and got.top5 == pytest.approx(200 / 3)
    assert got.loss == pytest.approx(LOSS, rel=1e-6)


def test_the_reduce_hook_sums_the_counts_of_all_processes() -> None:
    """Two processes with the same shard: counts double, percentages and the mean loss stay."""
    got = evaluate(nn.Identity(), LOADER, reduce=lambda totals: totals.mul_(2))
    assert got.count == 6 and got.top1 == pytest.approx(100 / 3) and got.loss == pytest.approx(LOSS, rel=1e-6)


def test_top5_is_not_reported_below_six_classes() -> None:
    logits = torch.tensor([[2.0, 1.0], [0.0, 3.0], [1.0, 0.5], [0.2, 0.1]])
    targets = torch.tensor([0, 0, 0, 1])  # argmax 0, 1, 0, 0 -> hits on images 0 and 2
    got = evaluate(nn.Identity(), [(logits, targets)])
    assert got.top1 == 50.0 and got.top5 is None and format_accuracy(got.top5) == "n/a"
    assert topk_from_probs(logits.softmax(-1), targets).top5 is None


def test_evaluate_uses_the_models_device_and_restores_its_mode() -> None:
    model = nn.Linear(6, 6, bias=False).train()
    with torch.no_grad():
        model.weight.copy_(torch.eye(6))
    got = evaluate(model, LOADER)
    assert model.training and got.top1 == pytest.approx(100 / 3)


def test_an_empty_loader_is_a_user_error() -> None:
    with pytest.raises(UserError, match="the evaluation data is empty"):
        evaluate(nn.Identity(), [])
    with pytest.raises(UserError, match="the evaluation data is empty"):
        predict(nn.Identity(), [])


def test_predict_and_topk_from_probs_agree_with_the_hand_count() -> None:
    probs, targets = predict(nn.Identity(), LOADER)
    assert torch.allclose(probs, torch.tensor(ROWS), atol=1e-6) and targets.tolist() == TARGETS
    got = topk_from_probs(probs, targets)
    assert (got.top1, got.top5, got.count) == (pytest.approx(100 / 3), pytest.approx(200 / 3), 3)
