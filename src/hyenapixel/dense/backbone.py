"""HyenaPixel backbones at dense-prediction sizes (paper Section 4.3, "Object detection ..." and "Semantic
segmentation ..."): the four stage outputs at strides 4/8/16/32, each through a stage-specific LayerNorm, with the
long kernels either as trained at 224 px or resampled to cover the feature maps of the task's images.

Kernel policies (the paper's Section 4.2 "almost twice the feature map" rule is what makes a layer global):

* :class:`PaperKernels` (``"paper"``): keep the kernels the weights were trained with (111/55/27/13 for the
  ImageNet models). This is what the paper's detection and segmentation runs did; at 800x1333 a stage-1 kernel of
  111 covers 111 of the 200x333 positions, so the layers are large-kernel but not global.
* :class:`CoverKernels` (``"cover"``): resample every HyenaPixel filter to ``2F - 1`` taps, ``F`` the longest side
  of that stage's feature map at the largest input the model will see (``img_size``), so every output position sees
  the whole map. The kernels stay square (``F = max(h, w)``): the learned filter is stretched by the same factor
  along both axes, so its shape is kept. Inputs larger than ``img_size`` are refused (the kernels would no longer
  cover them).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from timm.layers import LayerNorm2d
from torch import nn

from hyenapixel.constants import MIN_INPUT_SIZE
from hyenapixel.errors import UserError
from hyenapixel.mixers import BidirectionalHyenaMixer, CausalHyenaMixer, HyenaPixelMixer
from hyenapixel.models import load_model, resample_hyenapixel_filters, stage_sizes

__all__ = [
    "KERNEL_POLICIES",
    "CoverKernels",
    "DenseBackbone",
    "DenseInputError",
    "KernelPolicy",
    "PaperKernels",
    "StageNorm",
    "backbone",
    "hyenapixel_kernel_sizes",
    "padded_size",
]

STRIDES = (4, 8, 16, 32)


class DenseInputError(UserError, ValueError):
    """An image size, backbone name or option that a dense backbone cannot take; the message says what to change."""


def StageNorm(channels: int) -> nn.Module:  # noqa: N802 - a layer factory, used like a class
    """The stage-specific output norm of the official detection/segmentation backbones: a LayerNorm over the channels
    with weight and bias, eps 1e-5 (``torch.nn.LayerNorm``'s default), applied to an NCHW map.

    Shape:
        (B, C, H, W) -> (B, C, H, W)
    """
    return LayerNorm2d(channels, eps=1e-5)


class KernelPolicy:
    """How a dense backbone sets the long-kernel sizes of its HyenaPixel stages. Subclass and override :meth:`apply`."""

    name = "custom"

    def apply(self, model: nn.Module) -> None:
        """Change ``model``'s (a MetaFormer) HyenaPixel filters in place."""

    def check(self, model: nn.Module, height: int, width: int) -> None:
        """Raise :class:`DenseInputError` if ``model`` built under this policy cannot take an input of this size."""


class PaperKernels(KernelPolicy):
    """Keep the kernel sizes the weights were trained with (the paper's dense runs: 111/55/27/13 at any size)."""

    name = "paper"


class CoverKernels(KernelPolicy):
    """Resample each HyenaPixel stage's kernels to ``2F - 1``, ``F`` the longest side of that stage's map at
    ``img_size`` (the largest input, after the detector's resizing and padding)."""

    name = "cover"

    def __init__(self, img_size: int | Sequence[int]) -> None:
        size = (int(img_size), int(img_size)) if isinstance(img_size, (int, float)) else tuple(int(v) for v in img_size)
        if len(size) != 2 or min(size) < MIN_INPUT_SIZE:
            raise DenseInputError(
                f"kernel_policy='cover' needs img_size = the largest input (H, W) it must cover, each >= "
                f"{MIN_INPUT_SIZE}; got {img_size!r}"
            )
        self.img_size = size

    def kernel_sizes(self, model: nn.Module) -> list[int]:
        """``2 * max(h, w) - 1`` for each stage's map at ``img_size`` (e.g. 665/333/167/83 at 800x1333)."""
        return [2 * max(h, w) - 1 for h, w in stage_sizes(model, *self.img_size)]

    def apply(self, model: nn.Module) -> None:
        resample_hyenapixel_filters(model, self.kernel_sizes(model))

    def check(self, model: nn.Module, height: int, width: int) -> None:
        if max(height, width) > max(self.img_size):  # square kernels: only the longest side matters
            raise DenseInputError(
                f"input {height}x{width} has a longer side than the {self.img_size[0]}x{self.img_size[1]} the "
                f"covering kernels were built for, so they would no longer see the whole feature map; build the "
                f"backbone with img_size >= {max(height, width)} or resize the images"
            )

    def __repr__(self) -> str:
        return f"CoverKernels(img_size={self.img_size})"


KERNEL_POLICIES: dict[str, type[KernelPolicy]] = {"paper": PaperKernels, "cover": CoverKernels}


def _policy(kernel_policy: str | KernelPolicy, img_size: int | Sequence[int] | None) -> KernelPolicy:
    if isinstance(kernel_policy, KernelPolicy):
        return kernel_policy
    if kernel_policy == "paper":
        return PaperKernels()
    if kernel_policy == "cover":
        if img_size is None:
            raise DenseInputError(
                "kernel_policy='cover' needs img_size, the largest input (H, W) the kernels must cover "
                "(e.g. (1344, 1344) for detection at 800x1333, (512, 512) for ADE20k crops)"
            )
        return CoverKernels(img_size)
    raise DenseInputError(f"unknown kernel_policy {kernel_policy!r}; choose from {sorted(KERNEL_POLICIES)}")


def _check_2d_mixers(name: str, model: nn.Module) -> None:
    """HbFormer (1D Hyena over the flattened image) weights do not transfer to other image sizes: refuse them."""
    if any(isinstance(m, (BidirectionalHyenaMixer, CausalHyenaMixer)) for m in model.modules()):
        raise DenseInputError(
            f"{name} mixes tokens with 1D Hyena filters over the row-major flattened feature map, whose learned lags "
            f"mean 'so many rows and columns away' only at the 56x56 (224 px) map they were trained on; at a "
            f"detection or segmentation size a lag of one training row lands elsewhere in the image, so the "
            f"ImageNet kernels do not transfer (the paper evaluates only HpxFormer on dense tasks). Use "
            f"hpx_former_*, c_hpx_former_* or hpx_a_former_* instead"
        )


class DenseBackbone(nn.Module):
    """The stage outputs of a MetaFormer (timm ``features_only`` model), each through a stage-specific norm.

    Attributes:
        body: the timm feature extractor (``body.model`` is the MetaFormer).
        norms: one output norm per returned stage (``nn.Identity`` without norms).
        out_channels: channels of each returned map; ``strides``: their strides (4, 8, 16, 32).
        kernel_policy: the :class:`KernelPolicy` the kernels were set with.

    Shape:
        (B, C_in, H, W), H, W >= 32 -> [(B, out_channels[i], h_i, w_i)], (h_i, w_i) = ``feature_sizes(H, W)[i]``
    """

    def __init__(
        self,
        body: nn.Module,
        kernel_policy: KernelPolicy,
        out_norm: Callable[[int], nn.Module] | None = StageNorm,
    ) -> None:
        super().__init__()
        self.body = body
        info = body.feature_info
        self.out_indices = list(info.out_indices)
        self.out_channels = list(info.channels())
        self.strides = list(info.reduction())
        self.norms = nn.ModuleList(out_norm(c) if out_norm is not None else nn.Identity() for c in self.out_channels)
        self.kernel_policy = kernel_policy
        self.in_chans = body.model.in_chans

    @property
    def metaformer(self) -> nn.Module:
        return self.body.model

    def feature_sizes(self, height: int, width: int) -> list[tuple[int, int]]:
        """(h, w) of each returned map for an input of ``height x width``."""
        sizes = stage_sizes(self.metaformer, height, width)
        return [sizes[i] for i in self.out_indices]

    def check_input(self, x: torch.Tensor) -> None:
        """Raise :class:`DenseInputError` naming the problem when ``x`` cannot be processed."""
        if not isinstance(x, torch.Tensor) or x.dim() != 4 or x.shape[1] != self.in_chans:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise DenseInputError(f"expected an image batch (B, {self.in_chans}, H, W), got {shape}")
        h, w = x.shape[-2:]
        if min(h, w) < MIN_INPUT_SIZE:
            raise DenseInputError(
                f"input {h}x{w} is too small: the backbone's total stride is 32, so height and width must be >= "
                f"{MIN_INPUT_SIZE} (resize or pad the images)"
            )
        self.kernel_policy.check(self.metaformer, int(h), int(w))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        self.check_input(x)
        return [norm(f) for norm, f in zip(self.norms, self.body(x))]


def backbone(
    name: str | None = "hpx_former_s18",
    *,
    checkpoint: str | None = None,
    pretrained: bool = False,
    kernel_policy: str | KernelPolicy = "paper",
    img_size: int | Sequence[int] | None = None,
    out_norm: Callable[[int], nn.Module] | None = StageNorm,
    out_indices: Sequence[int] = (0, 1, 2, 3),
    **timm_kwargs: Any,
) -> DenseBackbone:
    """A HyenaPixel (or any timm MetaFormer) backbone for detection and segmentation.

    Args:
        name: a registered model name (``hpx_former_s18``, ``c_hpx_former_s18``, ...); may be None with a checkpoint
            of ours, which names its model.
        checkpoint: ImageNet weights to start from: an official ``pytorch_model.bin`` / ``.safetensors`` or a
            ``last.pt`` / ``best.safetensors`` of ``hyenapixel train`` (see :func:`hyenapixel.models.load_model`).
        pretrained: the official hub weights (needs network access).
        kernel_policy: ``"paper"`` (224-px kernels, as the paper), ``"cover"`` (``2F - 1`` at ``img_size``) or a
            :class:`KernelPolicy`.
        img_size: the largest (H, W) input; needed by ``"cover"``.
        out_norm: factory of the per-stage output norm (default :func:`StageNorm`, the official configs'
            LayerNorm); ``None`` for none (e.g. when the decoder normalises its inputs itself).
        out_indices: which stages to return.
        timm_kwargs: for ``timm.create_model``: ``drop_path_rate=0.4`` (the paper's dense runs), ``depths``,
            ``dims``, ``in_chans``, ...

    Raises:
        DenseInputError: an unknown name or policy, an HbFormer (see :func:`_check_2d_mixers`).
        WeightsError: a checkpoint that cannot be read or belongs to another variant.
    """
    policy = _policy(kernel_policy, img_size)
    for key in ("features_only", "num_classes"):
        if key in timm_kwargs:
            raise DenseInputError(f"{key} is set by the dense backbone; do not pass it")
    body = load_model(
        name,
        checkpoint=checkpoint,
        pretrained=pretrained,
        features_only=True,
        out_indices=tuple(out_indices),
        **timm_kwargs,
    )
    model = getattr(body, "model", None)
    if model is None or not hasattr(model, "stages") or not hasattr(model, "stem"):
        raise DenseInputError(f"{name} is not a MetaFormer of this package; dense.backbone takes the hpx/hb families")
    _check_2d_mixers(name or "the checkpoint's model", model)
    policy.apply(model)
    return DenseBackbone(body, policy, out_norm)


def hyenapixel_kernel_sizes(model: nn.Module) -> list[int | None]:
    """The long-kernel size (longest side) of each stage's HyenaPixel mixers, None for stages without them."""
    out: list[int | None] = []
    for stage in model.stages:
        sizes = {max(m.filter.kernel_size) for m in stage.modules() if isinstance(m, HyenaPixelMixer)}
        out.append(max(sizes) if sizes else None)
    return out


def padded_size(size: int, divisor: int = 32) -> int:
    """``size`` rounded up to a multiple of ``divisor`` (torchvision's detection batching pads to 32)."""
    return int(math.ceil(size / divisor) * divisor)
