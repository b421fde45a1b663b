"""Whether a graph is being traced: the CPU fast paths of the ops (blocked threads, oneDNN linear layers, the
depthwise backward of paper Section 3's short convolution) step aside for ``torch.compile``, ``torch.export`` and
``torch.jit``, which get the plain operations."""

from __future__ import annotations

import torch

__all__ = ["tracing"]


def tracing() -> bool:
    """True while ``torch.compile`` / ``torch.export`` / ``torch.jit`` trace. Call it before any other check of a
    fast path: dynamo cannot trace queries such as ``torch.backends`` or the thread count."""
    return (
        torch.compiler.is_compiling()
        or torch.compiler.is_exporting()
        or torch.jit.is_tracing()
        or torch.jit.is_scripting()
    )
