"""The sine-activated feed-forward network that maps positional embeddings to kernel values (paper Section 3,
"Hyena": implicit filters are an FFN with sinusoidal activation applied to a positional embedding).
"""

from __future__ import annotations

import torch
from torch import nn


class Sine(nn.Module):
    """``sin(freq * x)`` with a learnable frequency per feature (initialised to ``w``).

    Shape:
        (..., D) -> (..., D)
    """

    def __init__(self, dim: int, w: float = 1.0) -> None:
        super().__init__()
        self.freq = nn.Parameter(torch.full((dim,), float(w)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sin(self.freq * x)


class SineMLP(nn.Sequential):
    """``Linear -> Sine -> (Linear -> Sine) * num_inner -> Linear(no bias)``, evaluated position by position.

    Children are numbered like a plain ``nn.Sequential`` (``0`` Linear, ``1`` Sine, ...), so the layout matches the
    usual Hyena implicit filter. :meth:`forward` returns the output channels-first, which is the layout the FFT
    convolution wants, without a transpose copy.

    Shape:
        (P, in_dim) -> (out_dim, P)
    """

    def __init__(self, in_dim: int, hidden: int, out_dim: int, num_inner: int = 1, w: float = 1.0) -> None:
        layers: list[nn.Module] = [nn.Linear(in_dim, hidden), Sine(hidden, w)]
        for _ in range(num_inner):
            layers += [nn.Linear(hidden, hidden), Sine(hidden, w)]
        layers.append(nn.Linear(hidden, out_dim, bias=False))
        super().__init__(*layers)

    def folded_weights(self) -> list[torch.Tensor]:
        """The hidden layers as ``[f W | f b]`` each: the sine frequency ``f`` folded into the linear layer before it
        and the bias as a last column, since ``sin(f (W h + b)) = sin((f W) h + f b)`` (what
        :func:`hyenapixel.ops.implicit.implicit_kernel` takes; differentiable in the parameters).

        Shape:
            -> [(H_i, H_{i-1} + 1)] per hidden layer
        """
        *body, _ = list(self)
        return [
            torch.cat([sine.freq[:, None] * linear.weight, (sine.freq * linear.bias)[:, None]], 1)
            for linear, sine in zip(body[0::2], body[1::2])
        ]

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        *body, last = list(self)
        h = z
        for layer in body:
            h = layer(h)
        return torch.mm(last.weight, h.t())  # (out_dim, P)
