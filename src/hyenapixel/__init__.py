"""hyenapixel: HyenaPixel and bidirectional Hyena vision models for timm.

Reference implementation of "HyenaPixel: Global Image Context with Convolutions" (Spravil, Houben, Behnke,
ECAI 2024, arXiv:2402.19305). After ``import hyenapixel`` the model families (paper Sections 3 and 4) are
registered in timm: ``timm.create_model("hpx_former_s18")`` works.

Importing the package itself is light (no torch, no timm), so that the ``hyenapixel`` command parses its options
and prints ``--help`` in a fraction of a second, and the configs import without torch. Two mechanisms keep the
promise above nonetheless:

* the public names below (``HyenaPixelMixer``, ``fftconv2d``, ...) are loaded on first access (PEP 562);
* the models are registered the moment timm is imported: at once if timm is already loaded, otherwise right
  after ``import timm`` finishes (an import hook that waits for timm, :class:`_RegisterModelsWhenTimmLoads`).
  Whoever can call ``timm.create_model`` has imported timm, so the models are always there when asked for.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
from typing import Any

from hyenapixel.lazy import lazy_attributes

__version__ = "0.1.0"

#: Public name -> module that defines it (loaded on first access).
_LAZY = {
    "BidirectionalHyenaMixer": "hyenapixel.mixers",
    "CausalHyenaMixer": "hyenapixel.mixers",
    "HyenaPixelMixer": "hyenapixel.mixers",
    "REGISTERED_MODELS": "hyenapixel.models",
    "MetaFormer": "hyenapixel.models",
    "checkpoint_filter_fn": "hyenapixel.models",
    "load_checkpoint_into": "hyenapixel.models",
    "load_model": "hyenapixel.models",
    "read_checkpoint": "hyenapixel.models",
    "resample_hyenapixel_filters": "hyenapixel.models",
    "fftconv1d": "hyenapixel.ops",
    "fftconv2d": "hyenapixel.ops",
}

__all__ = ["create_model", "register_models", *sorted(_LAZY)]


__getattr__, __dir__ = lazy_attributes(__name__, _LAZY)


def create_model(name: str, pretrained: bool = False, **kwargs: Any) -> Any:
    """Thin alias of ``timm.create_model`` (importing timm registers the HyenaPixel models)."""
    import timm

    return timm.create_model(name, pretrained=pretrained, **kwargs)


def register_models() -> None:
    """Register the HyenaPixel model families in timm now (imports torch and timm).

    Called automatically when timm is imported. While a ``hyenapixel.models`` import is in progress it does
    nothing: that import registers the models itself when it completes.
    """
    if "hyenapixel.models" not in sys.modules:
        importlib.import_module("hyenapixel.models")


class _RegisterModelsWhenTimmLoads(importlib.abc.MetaPathFinder):
    """Finds nothing itself; when ``timm`` is first imported, it wraps timm's loader so that, once timm's own
    module code has run, :func:`register_models` runs too. Removes itself after that."""

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        if fullname != "timm":
            return None
        if self in sys.meta_path:
            sys.meta_path.remove(self)
        spec = importlib.util.find_spec("timm")
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        exec_timm = spec.loader.exec_module

        def exec_module(module: Any) -> None:
            exec_timm(module)
            register_models()

        spec.loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


if "timm" in sys.modules:
    register_models()
elif not any(isinstance(f, _RegisterModelsWhenTimmLoads) for f in sys.meta_path):
    sys.meta_path.insert(0, _RegisterModelsWhenTimmLoads())
