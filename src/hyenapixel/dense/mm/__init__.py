"""MMDetection / MMSegmentation support (paper Section 4.3): the ``HyenaPixelBackbone`` module, the layer-wise
lr-decay rule of the official configs and its optimizer constructor, and config files for the paper's two setups
(``configs/``). Importing this package needs no OpenMMLab package; ``hyenapixel.dense.mm.plugin`` registers the
pieces in the installed registries.
"""

from pathlib import Path

from hyenapixel.dense.mm.backbone import HyenaPixelBackbone
from hyenapixel.dense.mm.layer_decay import layer_decay_param_groups, layer_id, lr_scale

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
"""Where the paper-setup configs live (``hyenapixel.dense.mm.CONFIG_DIR / "<name>.py"``)."""

__all__ = ["CONFIG_DIR", "HyenaPixelBackbone", "layer_decay_param_groups", "layer_id", "lr_scale"]
