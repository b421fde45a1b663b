"""Kernel-spectrum cache of the mixers' long convolutions (paper Section 3): in eval, or whenever the filter's
parameters cannot change, a kernel and its spectrum are computed once per input size and reused.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from hyenapixel.ops import ConvPlan, apply_spectrum, conv_with_plan, kernel_spectrum


class SpectrumCache:
    """Caches a filter's kernel spectrum per input plan while no gradient can reach the filter's parameters.

    The cache is used only when ``torch.is_grad_enabled()`` is false or none of the filter's parameters requires
    grad, so a cached, detached spectrum can never hide a gradient. Entries are keyed on the plan, dtype and device
    and are dropped as soon as any filter parameter changes: the signature includes each parameter's storage
    pointer and version counter, which optimizer steps, ``load_state_dict`` (in-place ``copy_``) and ``.to()``
    (new storage) all change.
    """

    max_entries = 8

    def __init__(self) -> None:
        self.enabled = True
        self._signature: tuple | None = None
        self._entries: dict[Hashable, torch.Tensor] = {}

    def clear(self) -> None:
        self._signature = None
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)

    @staticmethod
    def usable(filter_module: nn.Module) -> bool:
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
        # (tens of MiB per block at 111 x 111) for a cost that is small against the convolution.
        kernel = checkpoint(make_kernel, use_reentrant=False) if torch.is_grad_enabled() else make_kernel()
        return conv_with_plan(u, kernel, plan)

    def get(self, filter_module: nn.Module, key: Hashable, compute: Callable[[], torch.Tensor]) -> torch.Tensor:
        """Return ``compute()``, from the cache when allowed and valid."""
        if not self.enabled or not self.usable(filter_module):
            return compute()
        signature = tuple((p.data_ptr(), p._version, p.dtype, p.device) for p in filter_module.parameters())
        if signature != self._signature:
            self.clear()
            self._signature = signature
        key = (key, torch.is_inference_mode_enabled())
        value = self._entries.get(key)
        if value is None:
            with torch.no_grad():
                value = compute()
            if len(self._entries) >= self.max_entries:
                self._entries.pop(next(iter(self._entries)))
            self._entries[key] = value
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
