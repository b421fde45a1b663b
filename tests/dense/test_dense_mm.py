"""The MMDetection/MMSegmentation pieces, as far as they can run without mmdet/mmseg/mmcv: the backbone module, the
layer-wise lr-decay rule against the official configs' rule, the optimizer constructor and the configs (mmengine)."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from torch import nn

from hyenapixel.dense import DenseInputError
from hyenapixel.dense.mm import CONFIG_DIR, HyenaPixelBackbone, layer_decay_param_groups, layer_id

S18_DEPTHS = (3, 3, 9, 3)
TINY = dict(depths=(1, 1, 1, 1), dims=(32, 32, 64, 96))


def official_layer_id(name: str, max_layer_id: int = 6) -> int:
    """The official configs' rule, written against the official MetaFormer's names (``backbone.model.`` +
    ``downsample_layers.<s>`` for the stem and the downsamplings, ``stages.<s>.<b>`` for blocks)."""
    if name.startswith("backbone.model.downsample_layers"):
        return {0: 0, 1: 2, 2: 3, 3: max_layer_id}[int(name.split(".")[3])]
    if name.startswith("backbone.model.stages"):
        stage, block = int(name.split(".")[3]), int(name.split(".")[4])
        return {0: 1, 1: 2, 2: 3 + block // 3, 3: max_layer_id}[stage]
    return max_layer_id + 1


def to_official(name: str) -> str:
    """Our parameter name (model.backbone.body.body.model....) in the official naming."""
    if not name.startswith("backbone."):
        return name
    rest = name.split(".body.model.", 1)[1] if ".body.model." in name else "fnorm." + name.split(".")[-1]
    parts = rest.split(".")
    if parts[0] == "stem":
        return "backbone.model.downsample_layers.0." + ".".join(parts[1:])
    if parts[0] == "stages" and parts[2] == "downsample":
        return f"backbone.model.downsample_layers.{parts[1]}." + ".".join(parts[3:])
    if parts[0] == "stages" and parts[2] == "blocks":
        return f"backbone.model.stages.{parts[1]}.{parts[3]}." + ".".join(parts[4:])
    return "backbone.model." + rest


class Detector(nn.Module):
    """A stand-in for an MM detector: ``backbone`` + a neck."""

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.neck = nn.Conv2d(96, 8, 1)


@pytest.fixture(scope="module")
def s18_detector() -> Detector:
    with torch.device("meta"):  # names and shapes only: the full S18 without allocating it
        return Detector(HyenaPixelBackbone("hpx_former_s18"))


def test_layer_ids_match_the_official_rule_for_s18(s18_detector):
    names = [n for n, _ in s18_detector.named_parameters()]
    assert any(".stages.2.blocks.8." in n for n in names)
    ours = {n: layer_id(n, S18_DEPTHS) for n in names}
    official = {n: official_layer_id(to_official(n)) for n in names}
    assert ours == official
    assert set(ours.values()) == set(range(8))
    stage_norms = [n for n in names if n.startswith("backbone.body.norms.")]
    assert stage_norms and all(ours[n] == 7 for n in stage_norms)


def test_param_groups_lr_and_weight_decay(s18_detector):
    groups = layer_decay_param_groups(s18_detector, S18_DEPTHS, base_lr=2e-4, weight_decay=0.05)
    seen = set()
    for g in groups:
        for name, p in zip(g["param_names"], g["params"]):
            lid = official_layer_id(to_official(name))
            assert g["lr"] == pytest.approx(2e-4 * 0.7 ** (7 - lid)), name
            assert g["weight_decay"] == (0.0 if p.ndim == 1 or name.endswith(".bias") else 0.05), name
            seen.add(name)
    assert seen == {n for n, _ in s18_detector.named_parameters()}
    stem = next(g for g in groups if "backbone.body.body.model.stem.conv.weight" in g["param_names"])
    assert stem["lr"] == pytest.approx(2e-4 * 0.7**7)


def test_deeper_stage3_is_split_into_equal_groups():
    """B36 has 18 stage-3 blocks: the official ``block // 3`` would give ids above num_layers (lr > base); the
    generalised rule spreads them over ids 3-5."""
    ids = [layer_id(f"backbone.stages.2.blocks.{b}.mlp.fc1.weight", (3, 12, 18, 3)) for b in range(18)]
    assert ids == [3] * 6 + [4] * 6 + [5] * 6


def test_backbone_module_outputs_and_init_cfg():
    bb = HyenaPixelBackbone("hpx_former_s4", model_kwargs=TINY)
    outs = bb(torch.randn(1, 3, 64, 96))
    assert isinstance(outs, tuple) and [o.shape[1] for o in outs] == [32, 32, 64, 96]
    assert [o.shape[-2:] for o in outs] == [(16, 24), (8, 12), (4, 6), (2, 3)]
    bb.init_weights()  # no-op, what MM runners call
    with pytest.raises(DenseInputError, match="not init_cfg"):
        HyenaPixelBackbone("hpx_former_s4", init_cfg=dict(type="Pretrained", checkpoint="x.pth"))


def test_import_needs_no_optional_framework():
    code = (
        "import sys, hyenapixel, hyenapixel.dense, hyenapixel.dense.mm, hyenapixel.data.shapes\n"
        "bad = [m for m in ('mmengine', 'mmdet', 'mmseg', 'mmcv', 'segmentation_models_pytorch', 'pycocotools',"
        " 'torchmetrics', 'matplotlib') if m in sys.modules]\n"
        "print(bad); sys.exit(1 if bad else 0)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


# ---- with mmengine ------------------------------------------------------------------------------------------------
def test_plugin_registers_and_constructor_builds_groups():
    mmengine_registry = pytest.importorskip("mmengine.registry")
    from hyenapixel.dense.mm import plugin

    assert "mmengine.registry" in plugin.REGISTERED_IN
    bb = mmengine_registry.MODELS.build(dict(type="HyenaPixelBackbone", model_name="hpx_former_s4", model_kwargs=TINY))
    assert isinstance(bb, HyenaPixelBackbone)
    model = Detector(bb)
    wrapper = mmengine_registry.OPTIM_WRAPPER_CONSTRUCTORS.build(
        dict(
            type="HyenaPixelLayerDecayOptimizerConstructor",
            optim_wrapper_cfg=dict(type="OptimWrapper", optimizer=dict(type="AdamW", lr=1e-4, weight_decay=0.05)),
            paramwise_cfg=dict(decay_rate=0.7, decay_type="layer_wise", num_layers=6),
        )
    )(model)
    lr_of = {id(p): g["lr"] for g in wrapper.optimizer.param_groups for p in g["params"]}
    for name, p in model.named_parameters():
        assert lr_of[id(p)] == pytest.approx(1e-4 * 0.7 ** (7 - layer_id(name, TINY["depths"]))), name
    assert lr_of[id(model.neck.weight)] == pytest.approx(1e-4)


def test_constructor_rejects_other_backbones():
    mmengine_registry = pytest.importorskip("mmengine.registry")
    from hyenapixel.dense.mm import plugin  # noqa: F401

    constructor = mmengine_registry.OPTIM_WRAPPER_CONSTRUCTORS.build(
        dict(
            type="HyenaPixelLayerDecayOptimizerConstructor",
            optim_wrapper_cfg=dict(type="OptimWrapper", optimizer=dict(type="AdamW", lr=1e-4)),
            paramwise_cfg=dict(decay_rate=0.7, num_layers=6),
        )
    )
    with pytest.raises(DenseInputError, match="needs model.backbone = HyenaPixelBackbone"):
        constructor(Detector(nn.Conv2d(3, 96, 1)))


def test_detection_config_parses_with_official_hyperparameters():
    Config = pytest.importorskip("mmengine").Config
    cfg = Config.fromfile(str(CONFIG_DIR / "cascade_mask_rcnn_hpx_former_s18_fpn_giou_ms_3x_coco.py"))
    assert cfg.model.type == "CascadeRCNN"
    assert cfg.model.backbone.type == "HyenaPixelBackbone" and cfg.model.backbone.model_name == "hpx_former_s18"
    assert cfg.model.backbone.drop_path_rate == 0.4 and cfg.model.backbone.out_norm == "layernorm"
    assert cfg.model.neck.in_channels == [64, 128, 320, 512]
    heads = cfg.model.roi_head.bbox_head
    assert len(heads) == 3 and all(h.num_shared_convs == 4 and h.num_shared_fcs == 1 for h in heads)
    assert all(h.loss_bbox.type == "GIoULoss" for h in heads)
    opt = cfg.optim_wrapper
    assert opt.optimizer.type == "AdamW" and opt.optimizer.lr == 2e-4 and opt.optimizer.weight_decay == 0.05
    assert opt.constructor == "HyenaPixelLayerDecayOptimizerConstructor"
    assert opt.paramwise_cfg.decay_rate == 0.7 and opt.paramwise_cfg.num_layers == 6
    step = cfg.param_scheduler[1]
    assert step.type == "MultiStepLR" and step.milestones == [27, 33] and step.gamma == 0.1
    assert cfg.train_cfg.max_epochs == 36
    resize = cfg.train_pipeline[3].transforms[0][0]
    assert [s[0] for s in resize.scales] == list(range(480, 801, 32)) and {s[1] for s in resize.scales} == {1333}
    assert cfg.custom_imports.imports == ["hyenapixel.dense.mm.plugin"]


@pytest.mark.parametrize("name", sorted(p.name for p in CONFIG_DIR.glob("*.py")))
def test_configs_survive_dump_and_reload(name, tmp_path):
    """MM runners dump the resolved config into their work_dir; the dump must rebuild the same model and optimizer."""
    Config = pytest.importorskip("mmengine").Config
    cfg = Config.fromfile(str(CONFIG_DIR / name))
    cfg.dump(str(tmp_path / name))
    again = Config.fromfile(str(tmp_path / name))
    assert again.model.to_dict() == cfg.model.to_dict()
    assert again.optim_wrapper.to_dict() == cfg.optim_wrapper.to_dict()


def test_segmentation_config_parses_with_official_hyperparameters():
    Config = pytest.importorskip("mmengine").Config
    cfg = Config.fromfile(str(CONFIG_DIR / "upernet_hpx_former_s18_160k_ade20k_512x512.py"))
    assert cfg.model.decode_head.type == "UPerHead" and cfg.model.decode_head.num_classes == 150
    assert cfg.model.backbone.drop_path_rate == 0.4
    assert cfg.crop_size == (512, 512)
    assert cfg.optim_wrapper.optimizer.lr == 1e-4 and cfg.optim_wrapper.optimizer.weight_decay == 0.05
    assert cfg.optim_wrapper.paramwise_cfg.decay_rate == 0.7
    assert cfg.train_cfg.max_iters == 160000
    assert cfg.train_dataloader.batch_size * 4 == 16  # 4 GPUs x 4 images
