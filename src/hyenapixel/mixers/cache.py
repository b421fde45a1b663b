"""Kernel-spectrum cache of the mixers' long convolutions (paper Section 3): in eval, or whenever the filter's
parameters cannot change, a kernel and its spectrum are computed once per input size and reused.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable, Iterator
from typing import Any, TypeVar

import torch
from torch import nn
from torch.optim.optimizer import register_optimizer_step_post_hook
from torch.utils.checkpoint import checkpoint
from torch.utils.weak import WeakIdKeyDictionary

from hyenapixel.ops import ConvPlan, apply_spectrum, conv_with_plan, kernel_spectrum

__all__ = ["ClearsCacheOnModeSwitch", "SpectrumCache", "clear_spectrum_caches"]

T = TypeVar("T", torch.Tensor, tuple)


#: Optimizer steps per parameter. Fused optimizer steps (``fused=True``) change the weights in place without bumping
#: their version counters, so a step hook counts every optimizer's steps for its own parameters. The hook is
#: registered when a cache first stores a spectrum (no import-time hook): steps taken before that cannot make a
#: stored spectrum stale, since none existed.
_STEPS = WeakIdKeyDictionary()  # tensor (by identity) -> steps
_hook_lock = threading.Lock()
_hook_installed = False


def _count_step(optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
    for group in optimizer.param_groups:
        for p in group["params"]:
            _STEPS[p] = _STEPS.get(p, 0) + 1


def _count_optimizer_steps() -> None:
    """Register the step-counting hook on every ``torch.optim`` optimizer, once per process."""
    global _hook_installed
    if _hook_installed:
        return
    with _hook_lock:
        if not _hook_installed:
            register_optimizer_step_post_hook(_count_step)
            _hook_installed = True


def _state_tensors(module: nn.Module) -> Iterator[torch.Tensor]:
    yield from module.parameters()
    yield from module.buffers()


def clear_spectrum_caches(model: nn.Module) -> None:
    """Empty the kernel-spectrum cache of every mixer in ``model``: needed only after changing filter weights in a
    way no counter sees (in-place edits of ``.data`` while the model stays in eval); see :class:`SpectrumCache`."""
    for m in model.modules():
        cache = getattr(m, "spectrum_cache", None)
        if isinstance(cache, SpectrumCache):
            cache.clear()


class SpectrumCache:
    """Caches a filter's kernel spectrum per input plan while no gradient can reach the filter's parameters.

    The cache is used only when ``torch.is_grad_enabled()`` is false or none of the filter's parameters requires
    grad, so a cached, detached spectrum can never hide a gradient. Entries are keyed on the plan, dtype and device
    and are dropped as soon as any filter parameter or buffer changes: the signature includes each one's storage
    pointer and version counter, which in-place updates, ``load_state_dict`` (``copy_``) and ``.to()`` (new
    storage) change, and the optimizer steps taken on it (counted by a step hook on every ``torch.optim``
    optimizer, fused ones included, whose steps leave the version counters alone; the hook is registered when the
    first spectrum is stored, not on import). The mixers also clear it on
    a switch between ``train()`` and ``eval()``. Only an in-place edit of ``.data`` while the model stays in one
    mode goes unseen: call :func:`clear_spectrum_caches` after one.

    While torch.compile or torch.export traces the model the cache steps aside and the kernel is computed in the
    graph (the bookkeeping above cannot be traced); ``hyenapixel.export.freeze_long_convs`` gives a copy with
    constant spectra for compiled inference.
    """

    #: At most this many input sizes are kept, and at most ``max_bytes`` of spectra (the oldest go first; the newest
    #: is always kept). The spectrum sizes at detection resolutions: docs/models.md, "Eval kernel cache".
    max_entries = 8
    max_bytes = 512 * 2**20

    def __init__(self) -> None:
        self.enabled = True
        self._signature: tuple | None = None
        self._entries: dict[Hashable, torch.Tensor] = {}

    def clear(self) -> None:
        self._signature = None
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)

    def nbytes(self) -> int:
        """Memory held by the cached spectra (an entry is a tensor or a tuple of tensors)."""
        entries = (v if isinstance(v, tuple) else (v,) for v in self._entries.values())
        return sum(t.numel() * t.element_size() for entry in entries for t in entry)

    @staticmethod
    def usable(filter_module: nn.Module) -> bool:
        # torch.compile / torch.export cannot trace the bookkeeping. Not ops.tracing(): under torch.jit.trace the cache
        # must stay in use, as fvcore's MAC count of the inference path (analysis.macs) reads the cached spectra.
        if torch.compiler.is_compiling():
            return False
        if not torch.is_grad_enabled():
            return True
        return not any(p.requires_grad for p in filter_module.parameters())

    def active(self, filter_module: nn.Module) -> bool:
        """Whether a cached spectrum may be used now."""
        return self.enabled and self.usable(filter_module)

    def convolve(
        self, filter_module: nn.Module, u: torch.Tensor, plan: ConvPlan, make_kernel: Callable[[], torch.Tensor]
    ) -> torch.Tensor:
        """Long convolution of ``u`` with ``make_kernel()`` under ``plan``: from the cached kernel spectrum when no
        gradient can reach the filter, otherwise differentiably (kernel regenerated, memory-lean backward).

        Shape:
            u: (B, C, *spatial) -> (B, C, *spatial)
        """
        if self.active(filter_module):
            k_f = self.get(
                filter_module, (plan, u.dtype, u.device), lambda: kernel_spectrum(make_kernel(), plan, u.dtype)
            )
            return apply_spectrum(u, k_f, plan)
        # The kernel MLP's activations do not depend on the batch; recomputing them in backward saves their memory
        # for a cost that is small against the convolution.
        kernel = checkpoint(make_kernel, use_reentrant=False) if torch.is_grad_enabled() else make_kernel()
        return conv_with_plan(u, kernel, plan)

    def get(self, filter_module: nn.Module, key: Hashable, compute: Callable[[], T]) -> T:
        """Return ``compute()`` (a tensor or a tuple of tensors), from the cache when allowed and valid."""
        if not self.enabled or not self.usable(filter_module):
            return compute()
        _count_optimizer_steps()  # before the signature: every later step is counted
        signature = tuple(
            (t.data_ptr(), t._version, _STEPS.get(t, 0), t.dtype, t.device) for t in _state_tensors(filter_module)
        )
        if signature != self._signature:
            self.clear()
            self._signature = signature
        key = (key, torch.is_inference_mode_enabled())
        value = self._entries.get(key)
        if value is None:
            with torch.no_grad():
                value = compute()
            self._entries[key] = value
            while len(self._entries) > 1 and (len(self._entries) > self.max_entries or self.nbytes() > self.max_bytes):
                self._entries.pop(next(iter(self._entries)))
        return value

    def __deepcopy__(self, memo: dict) -> SpectrumCache:  # model copies (EMA) start with an empty cache
        new = SpectrumCache()
        new.enabled = self.enabled
        return new

    def __getstate__(self) -> dict:
        return {"enabled": self.enabled}

    def __setstate__(self, state: dict) -> None:
        self.__init__()
        self.enabled = state["enabled"]


class ClearsCacheOnModeSwitch:
    """Mixin for modules with a ``spectrum_cache``: switching between ``train()`` and ``eval()`` empties it, so that
    a training phase never leaves kernels of earlier weights behind (put it before ``nn.Module`` in the bases)."""

    spectrum_cache: SpectrumCache

    def train(self, mode: bool = True) -> Any:
        if mode != self.training:  # type: ignore[attr-defined] - nn.Module.training
            self.spectrum_cache.clear()
        return super().train(mode)  # type: ignore[misc] - nn.Module.train
