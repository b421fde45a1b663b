"""Importing this module registers the HyenaPixel pieces in the registries of whichever OpenMMLab packages are
installed (paper Section 4.3 was run with MMDetection 3 and MMSegmentation 1):

* ``HyenaPixelBackbone`` in ``MODELS`` (backbone ``type``),
* ``HyenaPixelLayerDecayOptimizerConstructor`` in ``OPTIM_WRAPPER_CONSTRUCTORS`` (``optim_wrapper.constructor``).

Configs load it with ``custom_imports = dict(imports=["hyenapixel.dense.mm.plugin"], allow_failed_imports=False)``.
Nothing else in hyenapixel imports this module, so ``import hyenapixel`` never needs mmengine, mmdet or mmseg.
"""

from __future__ import annotations

import importlib

from hyenapixel.dense.mm.backbone import HyenaPixelBackbone

__all__ = ["REGISTERED_IN", "register"]

REGISTRY_MODULES = ("mmengine.registry", "mmdet.registry", "mmseg.registry")


def register() -> list[str]:
    """Register in every installed registry module of :data:`REGISTRY_MODULES`; return the ones found.

    Raises:
        ImportError: mmengine is not installed (nothing can be registered).
    """
    from hyenapixel.dense.mm.constructor import HyenaPixelLayerDecayOptimizerConstructor

    found = []
    for module_name in REGISTRY_MODULES:
        try:
            registry = importlib.import_module(module_name)
        except ImportError:
            continue
        registry.MODELS.register_module(name="HyenaPixelBackbone", module=HyenaPixelBackbone, force=True)
        registry.OPTIM_WRAPPER_CONSTRUCTORS.register_module(
            name="HyenaPixelLayerDecayOptimizerConstructor", module=HyenaPixelLayerDecayOptimizerConstructor, force=True
        )
        found.append(module_name)
    return found


REGISTERED_IN = register()
