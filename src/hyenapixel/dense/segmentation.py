"""UPerNet from segmentation_models_pytorch with a HyenaPixel backbone (paper Section 4.3, "Semantic segmentation on
ADE20k": UperNet on the four stage outputs).

After ``import hyenapixel`` every registered model is a timm encoder for smp, so
``smp.UPerNet(encoder_name="tu-hpx_former_s18", encoder_weights=None, classes=150)`` works as it is. smp 0.6's UPerNet
decoder already puts a LayerNorm on each stage output (the paper's stage-specific norm). :func:`upernet`
adds what smp cannot do by itself: start from an official or our own checkpoint, and the kernel policies.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import nn

from hyenapixel.dense.backbones import DenseInputError, KernelPolicy, backbone

__all__ = ["upernet"]


def upernet(
    backbone_name: str | None = "hpx_former_s18",
    classes: int = 150,
    *,
    checkpoint: str | None = None,
    pretrained: bool = False,
    kernel_policy: str | KernelPolicy = "paper",
    img_size: int | Sequence[int] | None = None,
    backbone_kwargs: dict[str, Any] | None = None,
    **smp_kwargs: Any,
) -> nn.Module:
    """``segmentation_models_pytorch.UPerNet`` whose encoder is a :class:`~hyenapixel.dense.DenseBackbone`.

    Args:
        backbone_name: a registered model name (None: the one a checkpoint of ours names).
        classes: output classes.
        checkpoint / pretrained: ImageNet weights for the encoder (see :func:`hyenapixel.dense.backbones`).
        kernel_policy / img_size: ``"paper"`` or ``"cover"`` with the largest input size (e.g. 512 for ADE20k crops).
        backbone_kwargs: for ``timm.create_model`` (``drop_path_rate=0.4`` as the paper).
        smp_kwargs: for ``smp.UPerNet`` (``decoder_channels``, ``upsampling``, ...).

    Inputs must have height and width divisible by 32 (smp checks this). The output has the input's size.

    Shape:
        (B, C_in, H, W) -> (B, classes, H, W)
    """
    try:
        import segmentation_models_pytorch as smp
    except ImportError as exc:
        raise DenseInputError(
            "upernet needs segmentation_models_pytorch >= 0.4: pip install 'hyenapixel[dense]'"
        ) from exc
    for key in ("encoder_name", "encoder_weights", "encoder_depth"):
        if key in smp_kwargs:
            raise DenseInputError(f"{key} is set by hyenapixel.dense.upernet; pass the backbone name instead")
    body = backbone(
        backbone_name,
        checkpoint=checkpoint,
        pretrained=pretrained,
        kernel_policy=kernel_policy,
        img_size=img_size,
        **(backbone_kwargs or {}),
    )
    if body.out_indices != [0, 1, 2, 3]:
        raise DenseInputError(f"UPerNet needs the four stage outputs, got out_indices {body.out_indices}")
    arch = body.metaformer.pretrained_cfg.get("architecture") or backbone_name
    # smp builds its own encoder to learn the channels; a one-block-per-stage stand-in with the same dims keeps
    # that cheap, and is replaced by the real backbone below.
    stand_in = dict(depths=(1,) * 4, dims=tuple(body.out_channels))
    model = smp.UPerNet(
        encoder_name=f"tu-{arch}", encoder_weights=None, in_channels=body.in_chans, classes=classes,
        **stand_in, **smp_kwargs,
    )  # fmt: skip
    if hasattr(model.decoder, "feature_norms"):  # smp's decoder normalises each stage itself: no second norm
        body.norms = nn.ModuleList(nn.Identity() for _ in body.out_channels)
    model.encoder.model = body
    return model
