"""Fine-grained visual explanations with FGVis (paper Appendix C, Fig. 9 and 10; Wagner et al., CVPR 2019).

The game of Appendix C: a mask ``m`` (one value per pixel and colour channel, initialised to 1) makes the evidence
``e = x * m`` (pixels scaled towards black, then normalised for the model). SGD with learning rate 0.1 minimises

    loss = y_e - lambda * ||m||_1

where ``y_e`` is the softmax score of the class the model predicts on the unmasked image: the mask deletes the
pixels the class needs while the sparsity term keeps everything else. The run stops early as soon as the top class
of the evidence changes (at most 500 iterations). ``lambda`` starts at 1e-4 and is divided by ``lambda_factor``
until a run stops early; that run's mask is the explanation. Further regularisation, as in the paper: the gradient
is divided by its largest magnitude, the mask is clamped to [0, 1], and Gaussian noise is added to the input.

The defense against adversarial evidence bounds every activation layer (ReLU, GELU, SiLU, StarReLU, SquaredReLU,
... found as modules on any timm model) by what it produced on the unmasked image: between the activation's value
on the original image and its resting value (its output for a zero input, 0 for ReLU and GELU, ``b`` for StarReLU).
Deleting pixels may weaken a feature but never create one. :class:`ClampToBounds` (the default) holds the values
within the bounds and stops the gradient of every value outside them; :class:`FilterGradients` only stops the
gradient, as in Wagner et al.'s "filtering gradients".
"""

from __future__ import annotations

import contextlib
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from torch import nn

from hyenapixel.errors import UserError
from hyenapixel.layers import SquaredReLU, StarReLU

__all__ = [
    "ACTIVATION_TYPES",
    "ActivationBounds",
    "ClampToBounds",
    "ExplainResult",
    "FilterGradients",
    "explain",
    "explain_display",
    "model_normalisation",
    "plot_explain",
]


def _activation_types() -> tuple[type[nn.Module], ...]:
    types: list[type[nn.Module]] = [
        nn.ReLU,
        nn.ReLU6,
        nn.LeakyReLU,
        nn.PReLU,
        nn.ELU,
        nn.GELU,
        nn.SiLU,
        nn.Mish,
        nn.Hardswish,
        StarReLU,
        SquaredReLU,
    ]
    # timm's own module classes (MetaFormer baselines and timm.layers.activations) are not subclasses of torch's
    import timm.layers.activations as timm_act
    import timm.models.metaformer as timm_metaformer

    for module, names in (
        (timm_act, ("GELU", "GELUTanh", "QuickGELU", "Swish", "Mish", "HardSwish", "HardMish", "PReLU")),
        (timm_metaformer, ("StarReLU", "SquaredReLU")),
    ):
        types += [getattr(module, n) for n in names if isinstance(getattr(module, n, None), type)]
    return tuple(dict.fromkeys(types))


#: The module classes whose outputs the defense bounds (the activations of our models and of timm's).
ACTIVATION_TYPES: tuple[type[nn.Module], ...] = _activation_types()


class _FilterGradient(torch.autograd.Function):
    """Identity forward; backward passes the gradient only where ``lo <= a <= hi``."""

    @staticmethod
    def forward(ctx: Any, a: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward((a >= lo) & (a <= hi))
        return a.view_as(a)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        (inside,) = ctx.saved_tensors
        return grad * inside, None, None


class ClampToBounds:
    """The default defense: each activation is clamped to its bounds, so the values stay within them, and the
    gradient of every value outside the bounds is zero (the derivative of the clamp)."""

    def __call__(self, a: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
        return torch.maximum(torch.minimum(a, hi), lo)


class FilterGradients:
    """Wagner et al.'s gradient filter: activations pass unchanged, their gradient is zero outside the bounds."""

    def __call__(self, a: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
        return _FilterGradient.apply(a, lo, hi)


Defense = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


class ActivationBounds:
    """Context manager: measure the bounds of every activation module on an image, then apply ``defense`` to each
    activation output while the context is active (forward hooks, removed on exit; the model is not modified).

    Bounds are per element: ``lo = min(a, r)`` and ``hi = max(a, r)`` with ``a`` the activation on ``image`` and
    ``r`` the activation's resting value (the module applied to zeros). A module called several times per forward
    gets bounds per call.

    Args:
        model: any network; its activation modules are those of ``types``.
        image: the unmasked input the bounds are measured on (normalised, as the model takes it).
        defense: how bounds are enforced (:class:`ClampToBounds` or :class:`FilterGradients`).
        types: module classes treated as activations.

    Shape:
        image (1, C, H, W)
    """

    def __init__(
        self,
        model: nn.Module,
        image: torch.Tensor,
        defense: Defense | None = None,
        types: Sequence[type[nn.Module]] = ACTIVATION_TYPES,
    ) -> None:
        self.model, self.image = model, image
        self.defense = defense if defense is not None else ClampToBounds()
        self.types = tuple(types)
        self.bounds: dict[str, list[tuple[torch.Tensor, torch.Tensor]]] = {}
        self._handles: list[torch.utils.hooks.RemovableHandle] = []
        self._calls: dict[str, int] = defaultdict(int)

    def modules(self) -> list[tuple[str, nn.Module]]:
        """The activation modules of the model, by name."""
        return [(n, m) for n, m in self.model.named_modules() if isinstance(m, self.types)]

    def _reset_calls(self, *_: Any) -> None:
        self._calls.clear()

    def measure(self) -> dict[str, list[tuple[torch.Tensor, torch.Tensor]]]:
        """Run the model once on the image and record the bounds of every activation output."""
        found = self.modules()
        if not found:
            names = ", ".join(sorted({t.__name__ for t in self.types}))
            raise UserError(
                f"{type(self.model).__name__} has no activation modules ({names}) for the FGVis defense to bound; "
                "pass defense=None (--no-defense) to explain it undefended"
            )
        bounds: dict[str, list[tuple[torch.Tensor, torch.Tensor]]] = defaultdict(list)

        def record(name: str, module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
            a = output.detach().clone()
            rest = module.forward(torch.zeros_like(inputs[0])).detach()  # .forward: no hooks
            bounds[name].append((torch.minimum(a, rest), torch.maximum(a, rest)))

        handles = [m.register_forward_hook(_bind(record, n)) for n, m in found]
        try:
            with torch.no_grad():
                self.model(self.image)
        finally:
            for h in handles:
                h.remove()
        self.bounds = dict(bounds)
        return self.bounds

    def _apply(self, name: str, module: nn.Module, inputs: tuple, output: torch.Tensor) -> torch.Tensor:
        calls = self.bounds.get(name, [])
        i = self._calls[name]
        self._calls[name] = i + 1
        if i >= len(calls) or calls[i][0].shape != output.shape:
            raise UserError(
                f"activation {name!r} ran with a different shape or more often than on the unmasked image; "
                "explain one image at a time at the size the bounds were measured at"
            )
        lo, hi = calls[i]
        return self.defense(output, lo, hi)

    def __enter__(self) -> ActivationBounds:
        self.measure()
        self._handles.append(self.model.register_forward_pre_hook(self._reset_calls))
        for name, module in self.modules():
            self._handles.append(module.register_forward_hook(_bind(self._apply, name)))
        return self

    def __exit__(self, *exc: object) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()


def _bind(fn: Callable[..., Any], name: str) -> Callable[..., Any]:
    return lambda module, inputs, output: fn(name, module, inputs, output)


@dataclass
class ExplainTry:
    """One run of the game at one ``lam``."""

    lam: float
    iterations: int
    stopped_early: bool


@dataclass
class ExplainResult:
    """The explanation of one image.

    ``mask`` is the mask of the first run that stopped early (or of the last run if none did; then
    ``stopped_early`` is false). ``score`` is the softmax score of ``target`` on the unmasked image and
    ``final_score`` on the final evidence (without noise); ``final_class`` the evidence's top class. ``margin`` is
    ``score`` minus the next class's score on the unmasked image; :attr:`undecided` flags a result where the input
    noise alone switched the class, so that the mask deletes nothing. ``mean`` and ``std`` are the normalisation the
    model's inputs got.

    Shape:
        image, mask (3, H, W) in [0, 1]
    """

    image: torch.Tensor
    mask: torch.Tensor
    target: int
    score: float
    final_class: int
    final_score: float
    lam: float
    iterations: int
    stopped_early: bool
    tries: list[ExplainTry] = field(default_factory=list)
    seconds: float = 0.0
    label: str = ""
    name: str = ""
    margin: float = float("nan")
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()

    @property
    def undecided(self) -> bool:
        """Whether the class switched at the first iteration of a run, before the mask had changed: the noisy
        unmasked image already predicts another class (a small ``margin``), and the explanation is empty."""
        return self.stopped_early and self.iterations == 1

    @property
    def deleted_fraction(self) -> float:
        """Mean of ``1 - mask``: how much of the image the explanation removes."""
        return float(1.0 - self.mask.mean())

    def numbers(self) -> dict[str, Any]:
        """The result without its images (for JSON)."""
        keys = ("label", "name", "target", "score", "margin", "final_class", "final_score", "lam", "iterations")
        out: dict[str, Any] = {k: getattr(self, k) for k in keys}
        out.update(
            stopped_early=self.stopped_early,
            undecided=self.undecided,
            deleted_fraction=self.deleted_fraction,
            seconds=self.seconds,
            tries=[t.__dict__ for t in self.tries],
        )
        return out


def model_normalisation(model: nn.Module) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The mean and std of the model's data config (``pretrained_cfg``; for a run of ours its data's), else
    ImageNet's."""
    cfg = getattr(model, "pretrained_cfg", None) or getattr(model, "default_cfg", None) or {}
    return tuple(cfg.get("mean", IMAGENET_DEFAULT_MEAN)), tuple(cfg.get("std", IMAGENET_DEFAULT_STD))


class _FrozenEval:
    """Eval mode and no parameter gradients while active; the previous state is restored on exit."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model

    def __enter__(self) -> None:
        self.training = self.model.training
        self.flags = [(p, p.requires_grad) for p in self.model.parameters()]
        self.model.eval()
        for p, _ in self.flags:
            p.requires_grad_(False)

    def __exit__(self, *exc: object) -> None:
        for p, flag in self.flags:
            p.requires_grad_(flag)
        self.model.train(self.training)


def explain(
    model: nn.Module,
    image: torch.Tensor,
    *,
    target: int | None = None,
    lam: float = 1e-4,
    lam_factor: float = 10.0,
    max_tries: int = 6,
    max_iter: int = 500,
    lr: float = 0.1,
    noise: float = 0.1,
    defense: Defense | None = ClampToBounds(),
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    generator: torch.Generator | None = None,
    progress: Callable[[int], None] | None = None,
) -> ExplainResult:
    """FGVis explanation of one image (Appendix C): the mask that deletes what the predicted class needs.

    Args:
        model: a classifier returning logits (any timm model).
        image: the image in [0, 1] (not normalised); the model's ``pretrained_cfg`` mean/std normalise it unless
            ``mean``/``std`` are given.
        target: the class to explain (default: the top class on the unmasked image).
        lam, lam_factor, max_tries: the sparsity weight of the first run, the factor it is divided by after a
            run that does not stop early, and the number of runs.
        max_iter, lr, noise: iterations per run, SGD learning rate, std of the Gaussian input noise (added in the
            normalised space).
        defense: :class:`ClampToBounds` (default), :class:`FilterGradients` or ``None`` (no defense).
        generator: random source of the input noise (for reproducible explanations).
        progress: called with 1 after every iteration (a tqdm ``update``).

    Shape:
        image (3, H, W) or (1, 3, H, W) -> result.mask (3, H, W)
    """
    if image.dim() == 3:
        image = image[None]
    if image.dim() != 4 or image.shape[0] != 1 or image.shape[1] != 3:
        raise UserError(f"explain takes one RGB image of shape (3, H, W), got {tuple(image.shape)}")
    if float(image.min()) < 0.0 or float(image.max()) > 1.0:
        raise UserError("explain takes an image with values in [0, 1] (not normalised); pass ImageSet.raw")
    if lam <= 0 or lam_factor <= 1 or max_tries < 1 or max_iter < 1 or lr <= 0 or noise < 0:
        raise UserError(
            f"explain needs lam > 0, lam_factor > 1, max_tries >= 1, max_iter >= 1, lr > 0 and noise >= 0; got "
            f"lam={lam}, lam_factor={lam_factor}, max_tries={max_tries}, max_iter={max_iter}, lr={lr}, noise={noise}"
        )
    device = next(iter(model.parameters()), torch.empty(0)).device
    image = image.to(device=device, dtype=torch.float32)
    m_default, s_default = model_normalisation(model)
    mean, std = tuple(mean or m_default), tuple(std or s_default)
    mean_t = torch.tensor(mean, device=device).view(1, -1, 1, 1)
    std_t = torch.tensor(std, device=device).view(1, -1, 1, 1)

    def normalise(x: torch.Tensor) -> torch.Tensor:
        return (x - mean_t) / std_t

    start = time.perf_counter()
    with _FrozenEval(model):
        with torch.no_grad():
            probs = F.softmax(model(normalise(image)).float(), dim=-1)[0]
        num_classes = probs.numel()
        if target is None:
            target = int(probs.argmax())
        elif not 0 <= target < num_classes:
            raise UserError(f"target class {target} is not one of the model's {num_classes} classes")
        score = float(probs[target])
        others = torch.cat([probs[:target], probs[target + 1 :]])
        margin = score - float(others.max()) if others.numel() else score

        guard = ActivationBounds(model, normalise(image), defense) if defense is not None else None
        tries: list[ExplainTry] = []
        mask = torch.ones_like(image)
        with guard if guard is not None else contextlib.nullcontext():
            for t in range(max_tries):
                try_lam = lam / lam_factor**t
                mask, iterations, stopped = _play(
                    model, image, normalise, target, try_lam, max_iter, lr, noise, generator, progress
                )
                tries.append(ExplainTry(try_lam, iterations, stopped))
                if stopped:
                    break
        with torch.no_grad():
            final = F.softmax(model(normalise(image * mask)).float(), dim=-1)[0]
    last = tries[-1]
    return ExplainResult(
        image=image[0].cpu(),
        mask=mask[0].detach().cpu(),
        target=target,
        score=score,
        final_class=int(final.argmax()),
        final_score=float(final[target]),
        lam=last.lam,
        iterations=last.iterations,
        stopped_early=last.stopped_early,
        tries=tries,
        seconds=time.perf_counter() - start,
        margin=margin,
        mean=mean,
        std=std,
    )


def _play(
    model: nn.Module,
    image: torch.Tensor,
    normalise: Callable[[torch.Tensor], torch.Tensor],
    target: int,
    lam: float,
    max_iter: int,
    lr: float,
    noise: float,
    generator: torch.Generator | None,
    progress: Callable[[int], None] | None,
) -> tuple[torch.Tensor, int, bool]:
    """One run of the game. Returns the mask, the iterations run and whether the top class changed.

    Shape:
        image (1, 3, H, W) -> mask (1, 3, H, W)
    """
    mask = torch.ones_like(image, requires_grad=True)
    optimizer = torch.optim.SGD([mask], lr=lr)
    for it in range(1, max_iter + 1):
        evidence = normalise(image * mask)
        if noise:
            evidence = evidence + noise * torch.randn(
                evidence.shape, generator=generator, device=evidence.device, dtype=evidence.dtype
            )
        probs = F.softmax(model(evidence).float(), dim=-1)[0]
        if progress is not None:
            progress(1)
        if int(probs.argmax()) != target:
            return mask.detach(), it, True  # the mask that made the class switch
        loss = probs[target] - lam * mask.abs().sum()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad = mask.grad
        grad.div_(grad.abs().max().clamp_min(torch.finfo(grad.dtype).tiny))
        optimizer.step()
        with torch.no_grad():
            mask.clamp_(0.0, 1.0)
    return mask.detach(), max_iter, False


#: Exponent applied to the mask for display (Fig. 9: "raised by exponentiation with 7 for better visibility").
DISPLAY_EXPONENT = 7.0
#: Brightness of the kept (grey) part of the explanation panel.
DISPLAY_DIM = 0.4


def explain_display(
    result: ExplainResult, exponent: float = DISPLAY_EXPONENT, dim: float = DISPLAY_DIM
) -> tuple[torch.Tensor, torch.Tensor]:
    """The two panels of Fig. 9: the explanation ``x * (1 - m') + dim * gray(x) * m'`` (deleted pixels in their
    colours, kept ones in dimmed grey, which also shows up on grayscale images) and the mean mask ``mean_c(m')``,
    with ``m' = m ** exponent``.

    Shape:
        -> explanation (H, W, 3), mean mask (H, W), both in [0, 1]
    """
    m = result.mask.clamp(0, 1) ** exponent
    x = result.image
    gray = (0.299 * x[0] + 0.587 * x[1] + 0.114 * x[2]).expand_as(x)
    shown = x * (1 - m) + dim * gray * m
    return shown.permute(1, 2, 0).clamp(0, 1), m.mean(0)


def plot_explain(results: Sequence[ExplainResult], exponent: float = DISPLAY_EXPONENT, dim: float = DISPLAY_DIM) -> Any:
    """Fig. 9/10 layout: one row per image; the input, then explanation and mean mask for each model
    (``result.label``). Results of the same image are matched by ``result.name``. A bare
    :class:`~matplotlib.figure.Figure` (no pyplot, no backend change): save it with ``fig.savefig`` or
    :func:`~hyenapixel.analysis.save_report`."""
    from matplotlib.figure import Figure

    if not results:
        raise UserError("plot_explain needs at least one result")
    labels = list(dict.fromkeys(r.label for r in results))
    names = list(dict.fromkeys(r.name for r in results))
    by_key = {(r.name, r.label): r for r in results}
    cols = 1 + 2 * len(labels)
    fig = Figure(figsize=(2.2 * cols, 2.4 * len(names)), dpi=100)
    axes = fig.subplots(len(names), cols, squeeze=False)
    for row, name in enumerate(names):
        first = next(r for r in results if r.name == name)
        axes[row, 0].imshow(first.image.permute(1, 2, 0).clamp(0, 1).numpy())
        axes[row, 0].set_title(name or "image", fontsize=8)
        for j, label in enumerate(labels):
            r = by_key.get((name, label))
            ax_e, ax_m = axes[row, 1 + 2 * j], axes[row, 2 + 2 * j]
            if r is not None:
                shown, mean_mask = explain_display(r, exponent, dim)
                ax_e.imshow(shown.numpy())
                ax_m.imshow(mean_mask.numpy(), cmap="gray", vmin=0, vmax=1)
                stop = f"stop@{r.iterations}" if r.stopped_early else f"no stop ({r.iterations})"
                stop = "undecided (stop@1)" if r.undecided else stop
                ax_e.set_title(f"{label}\nclass {r.target}, lam {r.lam:.0e}", fontsize=7)
                ax_m.set_title(f"mean mask^{exponent:g}\n{stop}", fontsize=7)
        for ax in axes[row]:
            ax.set_axis_off()
    fig.tight_layout()
    return fig
