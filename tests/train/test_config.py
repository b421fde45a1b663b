"""Typed configs and the paper's recipes (Section 4.1): preset values, precedence, checks naming the flag."""

from __future__ import annotations

import dataclasses

import pytest
import yaml

from hyenapixel.configio import config_fields
from hyenapixel.train.config import DEFAULT_DIMS, ConfigError, DataConfig, TrainConfig, ValidateConfig
from hyenapixel.train.recipes import RECIPES, load_recipe, resolve_train_config


def test_in1k_recipe_is_the_paper_recipe() -> None:
    cfg = resolve_train_config("in1k")
    assert cfg.optim.opt == "adamw"
    assert cfg.optim.base_lr == 4e-3 and cfg.optim.base_batch == 4096 and cfg.run.global_batch == 4096
    assert cfg.optim.weight_decay == 0.05
    assert cfg.sched.epochs == 310
    assert cfg.sched.warmup_epochs == 20 and cfg.sched.warmup_lr == 1e-6
    assert cfg.sched.sched == "cosine" and cfg.sched.min_lr == 1e-5
    assert cfg.sched.epochs - cfg.sched.warmup_epochs - cfg.sched.cooldown_epochs == 280  # cosine epochs
    assert cfg.sched.cooldown_epochs == 10
    assert cfg.model.drop_path == 0.2
    assert cfg.aug.smoothing == 0.1
    assert cfg.model.res_scale_stages == (2, 3)  # res-scale in the last two stages
    assert (cfg.aug.mixup, cfg.aug.cutmix, cfg.aug.mixup_switch_prob) == (0.8, 1.0, 0.5)
    assert cfg.aug.auto_augment == "rand-m9-mstd0.5-inc1"
    assert (cfg.aug.re_prob, cfg.aug.re_mode) == (0.25, "pixel")
    assert cfg.run.amp is None  # auto: on for GPU
    assert cfg.optim.wd_filters == "paper"
    assert cfg.model.dims is None and cfg.model.kernel_sizes is None  # full-size architecture


def test_b36_recipe_differs_only_in_stochastic_depth_and_model() -> None:
    a, b = RECIPES["in1k"], RECIPES["in1k-b36"]
    assert b["drop_path"] == 0.6
    assert {k for k in a if a[k] != b[k]} == {"drop_path", "model"}


@pytest.mark.parametrize(("name", "size"), [("ft384", 384), ("ft512", 512)])
def test_finetune_recipes(name: str, size: int) -> None:
    cfg = resolve_train_config(name)
    assert cfg.sched.epochs == 30
    assert cfg.optim.opt == "adamw" and cfg.optim.base_lr == 5e-5
    assert cfg.run.global_batch == 1024 and cfg.optim.base_batch == 1024
    assert cfg.run.ema is True
    assert cfg.model.head_dropout == 0.4
    assert cfg.aug.mixup == 0 and cfg.aug.cutmix == 0
    assert cfg.sched.sched == "constant" and cfg.sched.warmup_epochs == 0 and cfg.sched.cooldown_epochs == 0
    assert cfg.data.input_size == size


def test_flags_override_recipe_and_recipe_overrides_defaults() -> None:
    cfg = resolve_train_config("in1k", {"epochs": 160, "lr": 1e-3})
    assert cfg.sched.epochs == 160 and cfg.optim.lr == 1e-3
    assert cfg.aug.mixup == 0.8  # from the recipe
    assert resolve_train_config().aug.mixup == 0.0  # default


def test_changing_model_resets_architecture_overrides() -> None:
    default = resolve_train_config()
    assert default.model.dims == DEFAULT_DIMS
    other = resolve_train_config(None, {"model": "hpx_former_s12"})
    assert other.model.dims is None and other.model.kernel_sizes is None
    explicit = resolve_train_config(None, {"model": "hpx_former_s12", "dims": [8, 16, 32, 64]})
    assert explicit.model.dims == (8, 16, 32, 64) and explicit.model.kernel_sizes is None


def test_config_yaml_round_trip_as_recipe(tmp_path) -> None:
    cfg = resolve_train_config("ft384", {"epochs": 3, "betas": [0.9, 0.95]})
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({**cfg.to_dict(), "resolved": {"lr": 1.0}}))
    again = resolve_train_config(str(path))
    assert again.flat() | {"recipe": None} == cfg.flat() | {"recipe": None}
    flat = tmp_path / "flat.yaml"
    flat.write_text("epochs: 7\nmixup: 0.2\n")
    assert load_recipe(str(flat)) == {"epochs": 7, "mixup": 0.2}


def test_field_names_unique_and_documented() -> None:
    for cls in (TrainConfig, ValidateConfig):
        for name, (_, f, _) in config_fields(cls).items():
            assert f.metadata.get("help"), f"{name} has no help text"


@pytest.mark.parametrize(
    ("overrides", "flag"),
    [
        ({"epochs": -1}, "--epochs"),
        ({"epochs": 0}, "--epochs"),
        ({"batch_size": 0}, "--batch-size"),
        ({"lr": -1.0}, "--lr"),
        ({"drop_path": 1.5}, "--drop-path"),
        ({"sched": "step"}, "--sched"),
        ({"wd_filters": "none"}, "--wd-filters"),
        ({"kernel_sizes": [4, 3, 3, 3]}, "--kernel-sizes"),
        ({"epochs": "many"}, "--epochs"),
        ({"warmup_epochs": 20}, "--epochs"),  # warmup longer than the run
        ({"mixup": 0.8, "batch_size": 7}, "--batch-size"),
        ({"no_such_option": 1}, "--no-such-option"),
    ],
)
def test_nonsense_values_name_the_flag(overrides: dict, flag: str) -> None:
    with pytest.raises(ConfigError, match=flag):
        resolve_train_config(None, overrides)


def test_unknown_recipe_lists_choices() -> None:
    with pytest.raises(ConfigError, match=r"--recipe.*in1k, in1k-b36, ft384, ft512"):
        resolve_train_config("in22k")


def test_choice_error_lists_choices() -> None:
    with pytest.raises(ConfigError, match="choose from cosine, constant"):
        resolve_train_config(None, {"sched": "linear"})


def test_builtin_choices_are_the_data_layers_datasets() -> None:
    from hyenapixel.data import BUILTIN_DATASETS, BUILTIN_SAMPLES, DEFAULT_BUILTIN

    field = {f.name: f for f in dataclasses.fields(DataConfig)}["builtin"]
    assert tuple(field.metadata["choices"]) == tuple(BUILTIN_DATASETS)
    assert DataConfig().builtin == DEFAULT_BUILTIN  # the default dataset of train, and of validate's fallback
    assert (DataConfig().train_samples, DataConfig().val_samples) == BUILTIN_SAMPLES
    with pytest.raises(ConfigError, match=r"--builtin.*balance, pathfinder"):
        resolve_train_config(None, {"builtin": "mnist"})


def test_unknown_option_suggests_close_match() -> None:
    with pytest.raises(ConfigError, match="did you mean --epochs"):
        TrainConfig.from_dict({"epoch": 3})


def test_validate_config_checks_and_crop_grid() -> None:
    cfg = ValidateConfig(checkpoint=("a.pt",), crop_search=True)
    assert cfg.crop_pcts() == [0.8, 0.85, 0.9, 0.95, 1.0]
    assert ValidateConfig(checkpoint=("a.pt",), crop_pct=0.9).crop_pcts() == [0.9]
    with pytest.raises(ConfigError, match="--checkpoint"):
        ValidateConfig()
    with pytest.raises(ConfigError, match="--model"):
        ValidateConfig(model=("a", "b"), checkpoint=("x.pt",))
    with pytest.raises(ConfigError, match="--crop-min"):
        ValidateConfig(checkpoint=("a.pt",), crop_min=0.9, crop_max=0.8)


def test_configs_and_recipes_import_without_torch() -> None:
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from hyenapixel.train import RECIPES, TrainConfig, resolve_train_config\n"
        "import hyenapixel.configio, hyenapixel.cli.train\n"
        "cfg = resolve_train_config('in1k', {'epochs': 33})\n"
        "print(cfg.sched.epochs, sorted({'torch', 'timm', 'numpy'} & set(sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["33", "[]"]


def test_the_torch_free_input_size_limit_is_the_models() -> None:
    """The config checks --input-size without importing torch, against the models' own limit."""
    from hyenapixel.models.metaformer import MIN_INPUT_SIZE

    with pytest.raises(ConfigError, match=f"must be >= {MIN_INPUT_SIZE}"):
        TrainConfig.from_dict({"input_size": MIN_INPUT_SIZE - 1})


def test_shared_options_are_declared_once() -> None:
    """The data and device options of training and validation are the same fields (one help text, one check)."""
    train, val = config_fields(TrainConfig), config_fields(ValidateConfig)
    for name in ("data", "input_size", "crop_pct", "interpolation", "workers", "skip_corrupt", "device", "amp"):
        assert train[name][1] is val[name][1], name
    for cls, key in ((DataConfig, "workers"), (ValidateConfig, "workers")):
        with pytest.raises(ConfigError, match="--workers: must be >= 0"):
            cls(**{key: -1}, **({"checkpoint": ("a.pt",)} if cls is ValidateConfig else {}))


@dataclasses.dataclass
class _SectionA:
    x: int = 1


@dataclasses.dataclass
class _SectionB:
    x: int = 2


@dataclasses.dataclass
class _Twice:
    a: _SectionA = dataclasses.field(default_factory=_SectionA)
    b: _SectionB = dataclasses.field(default_factory=_SectionB)


def test_config_conversion_is_generic() -> None:
    """configio builds flat and sectioned config classes alike and refuses an option declared twice."""
    from hyenapixel.configio import build_config, to_plain

    val = build_config(ValidateConfig, {"checkpoint": ["a.pt", "b.pt"], "crop_pct": "0.9", "amp": "yes"})
    assert val.checkpoint == ("a.pt", "b.pt") and val.crop_pct == 0.9 and val.amp is True
    nested = build_config(TrainConfig, {"optim": {"lr": "1e-3"}, "epochs": 4}, recipe="x")
    assert nested.optim.lr == 1e-3 and nested.sched.epochs == 4 and nested.recipe == "x"
    assert to_plain(nested)["model"]["dims"] == list(DEFAULT_DIMS)
    with pytest.raises(TypeError, match="'x' is declared twice"):
        config_fields(_Twice)


def test_amp_dtype_is_resolved_once_for_training_and_evaluation() -> None:
    import torch

    from hyenapixel.models.evaluation import amp_dtype_for

    cpu, cuda = torch.device("cpu"), torch.device("cuda", 0)
    assert amp_dtype_for(None, "bfloat16", cpu) is None  # auto: off on the CPU
    assert amp_dtype_for(None, "float16", cuda) is torch.float16
    assert amp_dtype_for(True, "bfloat16", cpu) is torch.bfloat16
    assert amp_dtype_for(False, "bfloat16", cuda) is None
    assert ValidateConfig(checkpoint=("a.pt",), amp_dtype="bfloat16").amp_dtype == "bfloat16"


def test_run_data_reads_what_a_run_records_and_defaults_to_the_training_defaults() -> None:
    from hyenapixel.data.settings import RunData

    defaults = TrainConfig()
    assert RunData() == RunData(
        folder=defaults.data.data,
        builtin=defaults.data.builtin,
        difficulty=defaults.data.difficulty,
        train_samples=defaults.data.train_samples,
        val_samples=defaults.data.val_samples,
        seed=defaults.run.seed,
    )
    cfg = TrainConfig.from_dict(
        {"builtin": "echo", "difficulty": "hard", "train_samples": 96, "val_samples": 40, "seed": 7, "input_size": 64}
    )
    meta = {"config": cfg.to_dict(), "input_size": [1, 64, 64], "in_chans": 1}
    assert RunData.from_meta(meta) == RunData(None, "echo", "hard", 96, 40, 7, 64, 1)
    assert RunData.from_meta({"input_size": [3, 224, 224]}) is None  # weights no training run of ours wrote
