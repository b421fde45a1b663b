"""MetaFormer sub-layers: channel MLP, MLP classifier head, residual scale and the inverted separable convolution of
ConvFormer (paper Section 3, Fig. 3; the CH_px Former uses SepConv in its first two stages).

All layers work channels-last: (B, H, W, C).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from hyenapixel.layers.activations import SquaredReLU, StarReLU
from hyenapixel.ops.depthwise import depthwise_conv2d
from hyenapixel.ops.pointwise import pixel_linear


class PixelLinear(nn.Linear):
    """:class:`torch.nn.Linear` over the channels of a channels-last map, computed by
    :func:`~hyenapixel.ops.pointwise.pixel_linear` (oneDNN's 1 x 1 convolution on multi-threaded CPUs); the same
    parameters and state dict as ``nn.Linear``.

    Shape:
        (B, H, W, C_in) -> (B, H, W, C_out); other shapes as ``nn.Linear``
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return pixel_linear(x, self.weight, self.bias)


class DepthwiseConv2d(nn.Conv2d):
    """A depthwise ``k x k`` convolution with "same" padding (stride 1) whose CPU backward is
    :func:`~hyenapixel.ops.depthwise.depthwise_conv2d`'s (a faster weight gradient); the same parameters and state
    dict as the equivalent ``nn.Conv2d``.

    Shape:
        (B, C, H, W) -> (B, C, H, W)
    """

    def __init__(self, channels: int, kernel_size: int, bias: bool = True) -> None:
        super().__init__(channels, channels, kernel_size, padding=kernel_size // 2, groups=channels, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return depthwise_conv2d(x, self.weight, self.bias, self.padding[0])


class Scale(nn.Module):
    """Learnable per-channel scale (res-scale, Shleifer et al.), applied to the residual branch input.

    Shape:
        (..., C) -> (..., C)
    """

    def __init__(self, dim: int, init_value: float = 1.0) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.full((dim,), float(init_value)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale


class Mlp(nn.Module):
    """Channel MLP of a MetaFormer block: ``fc2(act(fc1(x)))`` without biases, hidden width ``mlp_ratio * dim``.
    The default StarReLU works in place on ``fc1``'s output, which nothing else reads.

    Shape:
        (..., C) -> (..., C)
    """

    def __init__(
        self,
        dim: int,
        mlp_ratio: float = 4.0,
        act_layer: Callable[[], nn.Module] = partial(StarReLU, inplace=True),
        drop: float = 0.0,
    ) -> None:
        super().__init__()
        hidden = int(mlp_ratio * dim)
        self.fc1 = PixelLinear(dim, hidden, bias=False)
        self.act = act_layer()
        self.drop1 = nn.Dropout(drop)
        self.fc2 = PixelLinear(hidden, dim, bias=False)
        self.drop2 = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop2(self.fc2(self.drop1(self.act(self.fc1(x)))))

    def fold_star_relu(self) -> bool:
        """Fold a StarReLU ``s * relu(h) ** 2 + b`` into the second layer, in place, for inference:
        ``W2 (s r + b 1) = (s W2) r + b W2 1`` with ``r = relu(h) ** 2``, so ``fc2`` gets the weight ``s W2`` and
        the bias ``b W2 1`` and the activation becomes a plain :class:`SquaredReLU`. The same function to float32
        rounding, without the scale and shift passes over the hidden map (four times the channels; see
        docs/deploy.md). Returns whether it folded: an MLP with another activation is left as it is.
        """
        if type(self.act) is not StarReLU:
            return False
        with torch.no_grad():
            scale, shift, weight = self.act.scale, self.act.bias, self.fc2.weight
            bias = shift * weight.sum(1)
            if self.fc2.bias is not None:
                bias = bias + self.fc2.bias
            self.fc2.weight = nn.Parameter(weight * scale, requires_grad=weight.requires_grad)
            self.fc2.bias = nn.Parameter(bias, requires_grad=weight.requires_grad)
        self.act = SquaredReLU()
        return True


class PointwiseConvMlp(Mlp):
    """The layers of a channel MLP with a squared ReLU (a folded one, :meth:`Mlp.fold_star_relu`) run as two 1x1
    convolutions on the channels-first view of its (B, H, W, C) map, the square written as a product; other inputs
    and activations go through :meth:`Mlp.forward`. The same function to float32 rounding, for deployment: ONNX
    runtimes run the two convolutions in a blocked layout with the ReLU fused into the first (docs/deploy.md).

    Args:
        mlp: the MLP whose layers (the same modules and parameters) this one runs.

    Shape:
        (B, H, W, C) -> (B, H, W, C); other shapes (..., C) as :class:`Mlp`
    """

    def __init__(self, mlp: Mlp) -> None:
        nn.Module.__init__(self)  # the parts come from ``mlp``, not from Mlp's constructor
        self.fc1, self.act, self.drop1, self.fc2, self.drop2 = mlp.fc1, mlp.act, mlp.drop1, mlp.fc2, mlp.drop2
        self.train(mlp.training)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or type(self.act) is not SquaredReLU:
            return super().forward(x)
        h = F.relu(F.conv2d(x.permute(0, 3, 1, 2), self.fc1.weight[:, :, None, None], self.fc1.bias))
        y = F.conv2d(self.drop1(h * h), self.fc2.weight[:, :, None, None], self.fc2.bias)
        return self.drop2(y.permute(0, 2, 3, 1))


class MlpHead(nn.Module):
    """MLP classifier: ``fc2(dropout(norm(SquaredReLU(fc1(x)))))`` with hidden width ``mlp_ratio * dim``.

    Shape:
        (B, C) -> (B, num_classes)
    """

    def __init__(
        self,
        dim: int,
        num_classes: int = 1000,
        mlp_ratio: float = 4.0,
        act_layer: Callable[[], nn.Module] = SquaredReLU,
        norm_layer: Callable[[int], nn.Module] = nn.LayerNorm,
        head_dropout: float = 0.0,
    ) -> None:
        super().__init__()
        hidden = int(mlp_ratio * dim)
        self.fc1 = nn.Linear(dim, hidden)
        self.act = act_layer()
        self.norm = norm_layer(hidden)
        self.head_dropout = nn.Dropout(head_dropout)
        self.fc2 = nn.Linear(hidden, num_classes) if num_classes > 0 else nn.Identity()

    def forward(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.head_dropout(self.norm(self.act(self.fc1(x))))
        return x if pre_logits else self.fc2(x)


class SepConv(nn.Module):
    """Inverted separable convolution (MobileNetV2, ConvFormer): pointwise expand, StarReLU, depthwise k x k,
    pointwise project; no biases.

    Shape:
        (B, H, W, C) -> (B, H, W, C)
    """

    def __init__(self, dim: int, expansion_ratio: float = 2.0, kernel_size: int = 7, drop: float = 0.0) -> None:
        super().__init__()
        hidden = int(expansion_ratio * dim)
        self.pwconv1 = PixelLinear(dim, hidden, bias=False)
        self.act1 = StarReLU(inplace=True)  # on pwconv1's output, which nothing else reads
        self.dwconv = DepthwiseConv2d(hidden, kernel_size, bias=False)
        self.pwconv2 = PixelLinear(hidden, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act1(self.pwconv1(x))
        # (B, H, W, C') viewed as a channels_last NCHW tensor: no copy needed for the depthwise conv
        x = self.dwconv(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        return self.pwconv2(x)
