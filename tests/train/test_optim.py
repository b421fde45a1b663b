"""Weight decay of Hyena filter parameters (paper default vs. Hyena convention) and batch/lr resolution."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from train_helpers import make_tiny_model

from hyenapixel.train.build import Batching, resolve_batching
from hyenapixel.train.config import ConfigError
from hyenapixel.train.optim import build_optimizer, param_groups
from hyenapixel.train.recipes import resolve_train_config


@pytest.fixture
def tiny_model() -> nn.Module:
    return make_tiny_model()


def _by_group(groups: list[dict]) -> dict[str, set[str]]:
    return {g["group"]: set(g["param_names"]) for g in groups}


def test_paper_rule_is_timms_rule(tiny_model: nn.Module) -> None:
    """paper: no decay only for <=1-D params, biases and model.no_weight_decay(); 4-D/3-D filters are decayed."""
    groups = _by_group(param_groups(tiny_model, 0.05, "paper"))
    named = dict(tiny_model.named_parameters())
    skip = set(tiny_model.no_weight_decay())
    for name, p in named.items():
        expect_no_decay = p.ndim <= 1 or name.endswith(".bias") or name in skip
        assert (name in groups["no_decay"]) == expect_no_decay, name
    assert groups["decay"] | groups["no_decay"] == set(named)
    hyena = tiny_model.hyena_no_weight_decay()
    multi_dim = {n for n in hyena if named[n].ndim > 1}
    assert multi_dim, "the filter positional embeddings are multi-dimensional"
    assert multi_dim <= groups["decay"]  # the official code decayed them


def test_paper_rule_matches_timm_factory(tiny_model: nn.Module) -> None:
    from timm.optim import create_optimizer_v2

    ours = build_optimizer(tiny_model, opt="adamw", lr=1e-3, weight_decay=0.05, wd_filters="paper")
    theirs = create_optimizer_v2(tiny_model, opt="adamw", lr=1e-3, weight_decay=0.05)

    def decayed(opt: torch.optim.Optimizer) -> set[int]:
        return {id(p) for g in opt.param_groups if g["weight_decay"] > 0 for p in g["params"]}

    assert decayed(ours) == decayed(theirs)


def test_hyena_rule_excludes_hyena_names(tiny_model: nn.Module) -> None:
    groups = _by_group(param_groups(tiny_model, 0.05, "hyena"))
    paper = _by_group(param_groups(tiny_model, 0.05, "paper"))
    hyena = set(tiny_model.hyena_no_weight_decay())
    assert hyena <= groups["no_decay"]
    assert groups["no_decay"] == paper["no_decay"] | hyena
    assert groups["decay"] == paper["decay"] - hyena
    opt = build_optimizer(tiny_model, opt="adamw", lr=1e-3, weight_decay=0.05, wd_filters="hyena")
    wd = {n: g["weight_decay"] for g in opt.param_groups for n in g["param_names"]}
    assert all(wd[n] == 0.0 for n in hyena)


def test_hyena_rule_needs_a_hyena_model() -> None:
    with pytest.raises(ValueError, match="hyena_no_weight_decay"):
        param_groups(nn.Linear(2, 2), 0.05, "hyena")


def test_global_batch_by_accumulation_and_lr_scaling() -> None:
    cfg = resolve_train_config("in1k", {"batch_size": 128})
    b = resolve_batching(cfg, world_size=8)
    assert b == Batching(world_size=8, global_batch=4096, accum_steps=4, lr=4e-3)
    b = resolve_batching(resolve_train_config("in1k", {"batch_size": 128, "global_batch": 1024}), 8)
    assert b.accum_steps == 1 and b.lr == pytest.approx(1e-3)  # linear scaling
    b = resolve_batching(resolve_train_config("in1k", {"batch_size": 128, "global_batch": 1024, "lr": 3e-3}), 8)
    assert b.lr == 3e-3
    with pytest.raises(ConfigError, match="--global-batch.*not divisible"):
        resolve_batching(resolve_train_config("in1k", {"batch_size": 96}), 8)
