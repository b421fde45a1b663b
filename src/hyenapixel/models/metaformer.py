"""The hierarchical MetaFormer that hosts the HyenaPixel and Hyena token mixers (paper Section 3, "Hierarchical
transformer", Fig. 3): a 7x7 stride-4 stem, 3x3 stride-2 downsampling with LayerNorm, blocks of
LayerNorm + token mixer + StarReLU MLP, res-scale in the last two stages, stochastic depth and an MLP head.

Blocks work channels-last (B, H, W, C); public boundaries (input, ``forward_features``, intermediates) are NCHW.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial

import torch
from timm.layers import DropPath, trunc_normal_
from timm.models import checkpoint_seq
from torch import nn

from hyenapixel.constants import MIN_INPUT_SIZE
from hyenapixel.layers import LayerNormNoBias, Mlp, MlpHead, Scale


class Stem(nn.Module):
    """7x7 stride-4 patch embedding followed by LayerNorm (no bias).

    Shape:
        (B, C_in, H, W) -> (B, H', W', C) with H' = floor((H - 3) / 4) + 1 (H / 4 for multiples of 4), W' alike
    """

    def __init__(self, in_chans: int, dim: int, norm_layer: Callable[[int], nn.Module]) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_chans, dim, kernel_size=7, stride=4, padding=2)
        self.norm = norm_layer(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.conv(x).permute(0, 2, 3, 1))


class Downsample(nn.Module):
    """LayerNorm (no bias) followed by a 3x3 stride-2 convolution.

    Shape:
        (B, H, W, C_in) -> (B, ceil(H / 2), ceil(W / 2), C)
    """

    def __init__(self, in_dim: int, dim: int, norm_layer: Callable[[int], nn.Module]) -> None:
        super().__init__()
        self.norm = norm_layer(in_dim)
        self.conv = nn.Conv2d(in_dim, dim, kernel_size=3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(self.norm(x).permute(0, 3, 1, 2)).permute(0, 2, 3, 1)


class MetaFormerBlock(nn.Module):
    """``x = rs1(x) + drop_path(mixer(norm1(x)));  x = rs2(x) + drop_path(mlp(norm2(x)))``.

    Shape:
        (B, H, W, C) -> (B, H, W, C)
    """

    def __init__(
        self,
        dim: int,
        token_mixer: Callable[[int], nn.Module],
        norm_layer: Callable[[int], nn.Module],
        mlp_ratio: float = 4.0,
        drop_path: float = 0.0,
        res_scale_init_value: float | None = None,
    ) -> None:
        super().__init__()
        self.norm1 = norm_layer(dim)
        self.token_mixer = token_mixer(dim)
        self.drop_path1 = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.res_scale1 = Scale(dim, res_scale_init_value) if res_scale_init_value is not None else nn.Identity()
        self.norm2 = norm_layer(dim)
        self.mlp = Mlp(dim, mlp_ratio)
        self.drop_path2 = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.res_scale2 = Scale(dim, res_scale_init_value) if res_scale_init_value is not None else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.res_scale1(x) + self.drop_path1(self.token_mixer(self.norm1(x)))
        return self.res_scale2(x) + self.drop_path2(self.mlp(self.norm2(x)))


class MetaFormerStage(nn.Module):
    """Optional downsampling followed by ``depth`` blocks.

    Shape:
        (B, H, W, C_in) -> (B, H', W', C)
    """

    def __init__(
        self,
        in_dim: int,
        dim: int,
        depth: int,
        token_mixer: Callable[[int], nn.Module],
        norm_layer: Callable[[int], nn.Module],
        downsample: bool,
        drop_path_rates: Sequence[float],
        res_scale_init_value: float | None,
        mlp_ratio: float = 4.0,
    ) -> None:
        super().__init__()
        self.grad_checkpointing = False
        self.downsample = Downsample(in_dim, dim, norm_layer) if downsample else nn.Identity()
        self.blocks = nn.Sequential(
            *[
                MetaFormerBlock(dim, token_mixer, norm_layer, mlp_ratio, drop_path_rates[j], res_scale_init_value)
                for j in range(depth)
            ]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.downsample(x)
        if self.grad_checkpointing and not torch.jit.is_scripting():
            return checkpoint_seq(self.blocks, x)
        return self.blocks(x)


def take_indices(num_stages: int, indices: int | Sequence[int] | None = None) -> tuple[list[int], int]:
    """The stages whose outputs ``forward_intermediates`` returns, with timm's convention: ``None`` all, an int ``n``
    the last ``n``, a sequence those indices (negative ones count from the end). Returns them and the largest.

    timm's own helper for this lives in a private module; tests/models/test_models.py pins that both agree.
    """
    if indices is None:
        indices = num_stages
    if isinstance(indices, int):
        if not 0 < indices <= num_stages:
            raise ValueError(f"last-n indices must be between 1 and {num_stages}, got {indices}")
        taken = list(range(num_stages - indices, num_stages))
    else:
        taken = [num_stages + i if i < 0 else i for i in indices]
        bad = [i for i in indices if not -num_stages <= i < num_stages]
        if bad or not taken:
            raise ValueError(f"stage indices must be in [-{num_stages}, {num_stages - 1}], got {list(indices)}")
    return taken, max(taken)


def _per_stage(value, n: int, name: str) -> list:
    if isinstance(value, (list, tuple)):
        if len(value) != n:
            raise ValueError(f"{name} needs one entry per stage ({n}), got {len(value)}")
        return list(value)
    return [value] * n


#: Global pooling of the classifier head: the mean (the paper's) or the maximum over the final feature map.
GLOBAL_POOLS = ("avg", "max")


def _check_pool(global_pool: str) -> str:
    if global_pool not in GLOBAL_POOLS:
        raise ValueError(
            f"global_pool {global_pool!r} is not supported; choose from {', '.join(GLOBAL_POOLS)} (for the unpooled "
            "map use forward_features or features_only=True)"
        )
    return global_pool


class MetaFormer(nn.Module):
    """MetaFormer backbone + MLP head with per-stage token mixers (timm model interface).

    Args:
        in_chans: input image channels.
        num_classes: classifier outputs (0 for a pure feature extractor).
        depths / dims: blocks and channels per stage.
        token_mixers: per stage, a class or partial called with the channel count.
        norm_layer: block / downsampling norm (LayerNorm without bias, eps 1e-6).
        drop_path_rate: stochastic depth, linearly increasing over all blocks.
        head_dropout: dropout before the last head layer.
        res_scale_init_values: per stage, res-scale init value or None (paper: last two stages).
        drop_rate: alias of ``head_dropout`` (timm convention); the larger of both is used.

    Shape:
        (B, in_chans, H, W) with H, W >= 32 -> (B, num_classes)
    """

    def __init__(
        self,
        in_chans: int = 3,
        num_classes: int = 1000,
        depths: Sequence[int] = (2, 2, 6, 2),
        dims: Sequence[int] = (64, 128, 320, 512),
        token_mixers: Callable[[int], nn.Module] | Sequence[Callable[[int], nn.Module]] = nn.Identity,
        norm_layer: Callable[[int], nn.Module] = partial(LayerNormNoBias, eps=1e-6),
        mlp_ratio: float = 4.0,
        drop_path_rate: float = 0.0,
        head_dropout: float = 0.0,
        drop_rate: float = 0.0,
        res_scale_init_values: Sequence[float | None] = (None, None, 1.0, 1.0),
        global_pool: str = "avg",
    ) -> None:
        super().__init__()
        depths, dims = list(depths), list(dims)
        num_stages = len(depths)
        if len(dims) != num_stages:
            raise ValueError(f"depths and dims need the same number of stages, got {depths} and {dims}")
        if in_chans < 1:
            raise ValueError(f"in_chans must be >= 1, got {in_chans}")
        if num_classes < 0:
            raise ValueError(f"num_classes must be >= 0 (0: no classifier), got {num_classes}")
        if not 0.0 <= drop_path_rate < 1.0:
            raise ValueError(f"drop_path_rate must be in [0, 1), got {drop_path_rate}")
        token_mixers = _per_stage(token_mixers, num_stages, "token_mixers")
        res_scale_init_values = _per_stage(res_scale_init_values, num_stages, "res_scale_init_values")
        self.in_chans = in_chans
        self.num_classes = num_classes
        self.global_pool = _check_pool(global_pool)
        self.num_features = dims[-1]
        self.dims = dims
        self.head_dropout = max(head_dropout, drop_rate)
        self.grad_checkpointing = False

        self.stem = Stem(in_chans, dims[0], norm_layer)
        n_blocks = sum(depths)
        dpr = [drop_path_rate * i / max(n_blocks - 1, 1) for i in range(n_blocks)]  # linear, meta-device safe
        self.stages = nn.ModuleList()
        self.feature_info = []
        cur = 0
        for i in range(num_stages):
            self.stages.append(
                MetaFormerStage(
                    dims[i - 1] if i > 0 else dims[0],
                    dims[i],
                    depths[i],
                    token_mixers[i],
                    norm_layer,
                    downsample=i > 0,
                    drop_path_rates=dpr[cur : cur + depths[i]],
                    res_scale_init_value=res_scale_init_values[i],
                    mlp_ratio=mlp_ratio,
                )
            )
            cur += depths[i]
            self.feature_info.append(dict(num_chs=dims[i], reduction=2 ** (i + 2), module=f"stages.{i}"))
        self.norm = nn.LayerNorm(dims[-1], eps=1e-6)
        self.head = MlpHead(dims[-1], num_classes, mlp_ratio=4.0, head_dropout=self.head_dropout)
        self.head_hidden_size = self.head.fc1.out_features
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        if isinstance(m, (nn.Conv2d, nn.Conv1d, nn.Linear)):
            trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)

    # ---- timm model interface -------------------------------------------------------------------------------------
    @torch.jit.ignore
    def no_weight_decay(self) -> set[str]:
        return {"norm.weight", "norm.bias"}

    @torch.jit.ignore
    def hyena_no_weight_decay(self) -> set[str]:
        """Parameters the Hyena convention keeps free of weight decay: filter positional embeddings, decays,
        shifts and skip terms (the paper default instead follows timm's rule, which decays all >= 2-D tensors)."""
        names = set()
        for name, _ in self.named_parameters():
            if ".filter." in name and name.rsplit(".", 1)[-1] in {"pos_emb", "decay", "shift", "skip"}:
                names.add(name)
        return names

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> dict:
        """Parameter groups for timm's layer decay: stem; each stage (coarse) or block, a stage's downsampling
        with its first block; the final norm with the last block (timm's convention)."""
        if coarse:
            blocks = [(r"^stages\.(\d+)", None), (r"^norm", (99999,))]
        else:
            blocks = [
                (r"^stages\.(\d+)\.blocks\.(\d+)", None),
                (r"^stages\.(\d+)\.downsample", (0,)),
                (r"^norm", (99999,)),
            ]
        return dict(stem=r"^stem", blocks=blocks)

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.grad_checkpointing = enable
        for stage in self.stages:
            stage.grad_checkpointing = enable

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        return self.head.fc2

    def reset_classifier(self, num_classes: int, global_pool: str | None = None, reset_other: bool = False) -> None:
        if global_pool is not None:
            self.global_pool = _check_pool(global_pool)
        self.num_classes = num_classes
        if reset_other or not isinstance(self.head, MlpHead):
            self.norm = nn.Identity() if reset_other else self.norm
            self.head = nn.Identity() if num_classes == 0 else MlpHead(self.num_features, num_classes)
            return
        self.head.fc2 = nn.Linear(self.head.fc1.out_features, num_classes) if num_classes > 0 else nn.Identity()

    def check_input(self, x: torch.Tensor) -> None:
        """Raise a ``ValueError`` that says what was expected when ``x`` cannot be processed."""
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"expected a torch.Tensor image batch, got {type(x).__name__}")
        if x.dim() != 4:
            raise ValueError(f"expected a 4-D image batch (B, {self.in_chans}, H, W), got shape {tuple(x.shape)}")
        if x.shape[1] != self.in_chans:
            raise ValueError(
                f"expected {self.in_chans} input channels (B, {self.in_chans}, H, W), got shape {tuple(x.shape)}"
            )
        if not x.is_floating_point():
            raise TypeError(
                f"expected a floating-point image batch, got {x.dtype}; convert with .float() and normalise it as "
                "the model's data config says (timm.data.resolve_data_config)"
            )
        if min(x.shape[-2:]) < MIN_INPUT_SIZE:
            raise ValueError(
                f"input {tuple(x.shape[-2:])} is smaller than the network's total stride: "
                f"height and width must be >= {MIN_INPUT_SIZE}"
            )

    def forward_intermediates(
        self,
        x: torch.Tensor,
        indices: int | list[int] | None = None,
        norm: bool = False,
        stop_early: bool = False,
        output_fmt: str = "NCHW",
        intermediates_only: bool = False,
    ) -> list[torch.Tensor] | tuple[torch.Tensor, list[torch.Tensor]]:
        """Features after each selected stage (strides 4/8/16/32), NCHW or NHWC. ``norm=True`` applies the final
        norm (a LayerNorm over channels) to the last stage's output, as timm's ``features_only`` models expect; the
        returned final map stays unnormalised, since :meth:`forward_head` pools before normalising.

        Shape:
            (B, C_in, H, W) -> [(B, dims[i], H_i, W_i) for i in indices]: H_0 = floor((H - 3) / 4) + 1, then
            H_{i+1} = ceil(H_i / 2) (H / 2**(i+2) for multiples of 32), W alike
        """
        if output_fmt not in ("NCHW", "NHWC"):
            raise ValueError(f"output_fmt must be 'NCHW' or 'NHWC', got {output_fmt!r}")
        self.check_input(x)
        taken, max_index = take_indices(len(self.stages), indices)
        stages = self.stages[: max_index + 1] if stop_early else self.stages
        last = len(self.stages) - 1
        intermediates = []
        x = self.stem(x)
        for i, stage in enumerate(stages):
            x = stage(x)
            if i in taken:
                y = self.norm(x) if norm and i == last else x
                intermediates.append(y if output_fmt == "NHWC" else y.permute(0, 3, 1, 2))
        if intermediates_only:
            return intermediates
        return x.permute(0, 3, 1, 2), intermediates

    def prune_intermediate_layers(
        self, indices: int | list[int] = 1, prune_norm: bool = False, prune_head: bool = True
    ) -> list[int]:
        taken, max_index = take_indices(len(self.stages), indices)
        self.stages = self.stages[: max_index + 1]
        if max_index < len(self.feature_info) - 1:
            self.num_features = self.head_hidden_size = self.feature_info[max_index]["num_chs"]
            prune_head = prune_norm = True
        if prune_head:
            self.head = nn.Identity()
            self.num_classes = 0
        if prune_norm:
            self.norm = nn.Identity()
        return taken

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Shape: (B, C_in, H, W) -> (B, C, H_3, W_3) (NCHW; H_3 = H / 32 for multiples of 32, see
        :meth:`forward_intermediates`)."""
        self.check_input(x)
        x = self.stem(x)
        for stage in self.stages:
            x = stage(x)
        return x.permute(0, 3, 1, 2)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Shape: (B, C, h, w) -> (B, num_classes), or (B, C) / (B, hidden) features with ``pre_logits``."""
        x = x.mean((2, 3)) if self.global_pool == "avg" else x.amax((2, 3))
        x = self.norm(x)
        if isinstance(self.head, MlpHead):
            return self.head(x, pre_logits=pre_logits)
        return x if pre_logits else self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))
