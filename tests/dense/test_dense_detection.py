"""torchvision Mask/Faster R-CNN with a HyenaPixel backbone: loss dicts, training lowers the loss, eval outputs."""

from __future__ import annotations

import pytest
import torch

from hyenapixel import dense
from hyenapixel.data.shapes import ShapesDataset

REDUCED = dict(depths=(1, 1, 1, 1), dims=(32, 32, 64, 96))
# small images and few sampled proposals/RoIs keep the heads (torchvision's 256-channel mask head) cheap
SMALL = dict(
    min_size=64,
    max_size=64,
    fpn_channels=32,
    backbone_kwargs=REDUCED,
    rpn_pre_nms_top_n_train=200,
    rpn_post_nms_top_n_train=100,
    rpn_batch_size_per_image=64,
    box_batch_size_per_image=32,
)


def _batch(n: int = 2, size: int = 64):
    ds = ShapesDataset(n, image_size=size, seed=3)
    images, targets = zip(*[ds[i] for i in range(n)])
    return list(images), [{k: t[k] for k in ("boxes", "labels", "masks")} for t in targets]


def test_mask_rcnn_train_loss_dict_and_training_lowers_loss():
    torch.manual_seed(0)
    model = dense.mask_rcnn("hpx_former_s4", num_classes=4, kernel_policy="cover", **SMALL)
    assert isinstance(model.backbone.body, dense.DenseBackbone)
    images, targets = _batch()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model.train()
    losses = []
    for _ in range(6):
        loss_dict = model(images, targets)
        assert set(loss_dict) == {"loss_classifier", "loss_box_reg", "loss_mask", "loss_objectness", "loss_rpn_box_reg"}
        loss = sum(loss_dict.values())
        assert torch.isfinite(loss)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0], losses
    grads = [p.grad for p in model.backbone.body.parameters() if p.requires_grad]
    assert all(g is not None for g in grads)  # every backbone parameter, stage norms included, gets a gradient


def test_mask_rcnn_eval_structures():
    model = dense.mask_rcnn("hpx_former_s4", num_classes=4, box_score_thresh=0.0, **SMALL).eval()
    images = [torch.rand(3, 60, 80), torch.rand(3, 70, 50)]
    with torch.no_grad():
        out = model(images)
    assert len(out) == 2
    for o, img in zip(out, images):
        assert set(o) == {"boxes", "labels", "scores", "masks"}
        n = o["boxes"].shape[0]
        assert o["boxes"].shape == (n, 4) and o["labels"].shape == (n,) and o["scores"].shape == (n,)
        assert o["masks"].shape == (n, 1, *img.shape[-2:])
        assert n > 0 and ((o["labels"] >= 1) & (o["labels"] <= 3)).all()
        assert (o["boxes"][:, 2] <= img.shape[-1] + 1e-3).all() and (o["boxes"][:, 3] <= img.shape[-2] + 1e-3).all()


def test_faster_rcnn_train_and_eval():
    model = dense.faster_rcnn("c_hpx_former_s4", num_classes=3, box_score_thresh=0.0, **SMALL)
    images, targets = _batch()
    targets = [{"boxes": t["boxes"], "labels": t["labels"].clamp(max=2)} for t in targets]
    loss_dict = model.train()(images, targets)
    assert set(loss_dict) == {"loss_classifier", "loss_box_reg", "loss_objectness", "loss_rpn_box_reg"}
    with torch.no_grad():
        out = model.eval()(images)
    assert set(out[0]) == {"boxes", "labels", "scores"}


def test_detector_from_built_backbone_and_cover_default_size():
    body = dense.backbone("hpx_former_s4", **REDUCED)
    model = dense.mask_rcnn(body, num_classes=2, min_size=64, max_size=64)
    assert model.backbone.body is body
    cover = dense.mask_rcnn("hpx_former_s4", num_classes=2, kernel_policy="cover", min_size=800, max_size=1333,
                            backbone_kwargs=REDUCED)  # fmt: skip
    assert cover.backbone.body.kernel_policy.img_size == (1344, 1344)  # max_size padded to a multiple of 32


def test_detector_bad_input():
    with pytest.raises(dense.DenseInputError, match="num_classes counts the background"):
        dense.mask_rcnn("hpx_former_s4", num_classes=1, backbone_kwargs=REDUCED)
    body = dense.backbone("hpx_former_s4", out_indices=(1, 2, 3), **REDUCED)
    with pytest.raises(dense.DenseInputError, match="four stage outputs"):
        dense.faster_rcnn(body, num_classes=3)
