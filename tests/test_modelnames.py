"""The model names read from timm's and our sources (no import) are exactly the names timm knows after
``import hyenapixel``, so the command line's check before the heavy imports agrees with timm's own."""

from __future__ import annotations

import subprocess
import sys

import pytest
import timm

import hyenapixel.models  # noqa: F401  (registers the HyenaPixel models)
from hyenapixel.errors import UserError
from hyenapixel.modelnames import known_model_names, unknown_model_problem
from hyenapixel.models.weights import check_model_name


def test_names_read_from_the_sources_are_the_names_timm_lists() -> None:
    names = known_model_names()
    assert names is not None
    listed = set(timm.list_models())
    assert listed <= names  # every model timm creates is accepted
    extra = names - listed  # and what timm does not list are its deprecated aliases, which it still creates
    assert all(timm.is_model(name) for name in extra), sorted(n for n in extra if not timm.is_model(n))[:5]
    assert {"hpx_former_s18", "hb_a_former_b36", "hpx_former_s18_384", "convformer_s18"} <= names


def test_the_names_are_read_without_importing_torch_or_timm() -> None:
    code = (
        "import sys\nfrom hyenapixel.modelnames import known_model_names, unknown_model_problem\n"
        "n = known_model_names()\n"
        "print(len(n), unknown_model_problem('hpx_former_s4'), sorted({'torch', 'timm'} & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert int(out[0]) == len(known_model_names()) and out[1:] == ["None", "[]"]


@pytest.mark.parametrize("name", ["hpx_former_s4", "convformer_s18.sail_in1k", "resnet18", "hf-hub:someone/model"])
def test_known_names_tags_and_hub_names_pass(name: str) -> None:
    assert unknown_model_problem(name) is None


@pytest.mark.parametrize(
    ("name", "close"), [("hpx_formr_s18", "hpx_former_s18"), ("convformer_s19", "convformer_s18"), ("restnet18", "")]
)
def test_unknown_names_give_the_same_words_as_timms_check(name: str, close: str) -> None:
    problem = unknown_model_problem(name)
    assert problem is not None and problem.startswith(f"unknown model {name!r}; ")
    assert close in problem
    with pytest.raises(UserError) as info:
        check_model_name(name)
    assert str(info.value) == problem


def test_a_name_far_from_every_model_lists_ours() -> None:
    problem = unknown_model_problem("qqqqqqqqqq")
    assert problem is not None and "HyenaPixel models: " in problem and "hpx_former_s18" in problem
