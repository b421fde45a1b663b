"""Backward passes without map-sized temporaries (issue 24): the library's forms against the forms before them,
one change at a time (``--change``).

``padding`` (commit ``38098c5``):

* the depthwise short convolution's weight gradient (paper Section 3, Fig. 3; ``ops.depthwise``): the
  convolution pads the input itself, where the previous form made a padded copy of it;
* StarReLU's scale gradient ``sum(g relu(x) x)`` (``ops.pointwise``): one dot product of the two contiguous maps,
  where the previous form built their product map first.

``dft`` (the default):

* the long convolution of small maps by DFT products (``ops.dft.DFTConv2d``, stages 3-4 at 224 px): in training a
  hand-written backward that writes the spectral products into one tensor and reuses the map's spectrum, where the
  previous form let autograd differentiate the individual products, concatenation included; in the cached eval
  the same forward, where the previous form made two half products and concatenated them.

Both compute the same values up to float rounding (checked before timing). Allocations as large as these maps are
fresh memory mappings, page-faulted on first touch, which can cost more than the arithmetic; timing the ops alone
hides part of that, so the script times them alone and inside hpx_former_s18's training step.

Every row is timed interleaved in one process, at 2 threads by default: each round runs the library's form and the
previous one in turn, each timed call right after an untimed one of the same form (the previous call decides what
the allocator holds). Printed: medians and the median of the per-round ratios library / previous with its
distribution-free 95 % interval. Rows: each op alone at S18 stage shapes of a 224-px batch of 8 (and, for
``padding``, of an 800 x 1333 image), the training step at 224 px (batch 8, cross-entropy, AdamW) and, for
``dft``, the cached eval forward at batch 16; ``--dense`` adds ``bench_dense``'s 800 x 1333 ``features_only``
training step with covering kernels (batch 1).

Run from the repository root, holding the machine's CPU lock::

    flock /tmp/hpx-cpu.lock .venv/bin/python -m benchmarks.bench_backward_maps --dense
    flock /tmp/hpx-cpu.lock .venv/bin/python -m benchmarks.bench_backward_maps --change padding --dense
    .venv/bin/python -m benchmarks.bench_backward_maps --quick     # smoke run: small shapes, one round

Results and the machine: docs/benchmarks.md, "Two threads".
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
from collections.abc import Callable, Iterator, Sequence

import torch
import torch.nn.functional as F

from benchmarks.bench_two_cores import HPX, _train_step, create_model, dense_backbone, timed_rounds
from benchmarks.common import finish, machine_info, markdown_table, median_interval
from hyenapixel.ops import depthwise, dft, plan_conv2d, pointwise

Fn = Callable[[], object]

# (batch, channels, height, width): the short convolution's 3C maps and the MLP's 4C hidden maps of S18
SHORT_MAPS = {"224 px b8": [(8, 192, 56, 56), (8, 384, 28, 28), (8, 960, 14, 14)], "800x1333": [(1, 192, 200, 333)]}
HIDDEN_MAPS = {"224 px b8": [(8, 56, 56, 256), (8, 14, 14, 1280)], "800x1333": [(1, 200, 333, 256), (1, 50, 84, 1280)]}
# (batch, height, width, channels, kernel): the long convolutions of S18 that take DFT products in training
DFT_MAPS = {"224 px b8": [(8, 14, 14, 320, 27), (8, 7, 7, 512, 13)]}
DFT_EVAL_MAPS = {"224 px b16": [(16, 14, 14, 320, 27), (16, 7, 7, 512, 13)]}
QUICK_SHORT = {"quick": [(2, 12, 16, 16)]}
QUICK_HIDDEN = {"quick": [(2, 16, 16, 32)]}
QUICK_DFT = {"quick": [(2, 7, 7, 16, 13)]}


def weight_grad_padded_copy(x: torch.Tensor, grad_y: torch.Tensor, padding: int) -> torch.Tensor:
    """The previous depthwise weight gradient: per sample, a valid correlation of a padded copy of ``x`` with the
    output gradient as the kernel.

    Shape:
        x: (B, C, H, W), grad_y: (B, C, H', W') -> (C, 1, H + 2p - H' + 1, W + 2p - W' + 1)
    """
    xp = F.pad(x, (padding,) * 4) if padding else x
    total = None
    for n in range(x.shape[0]):
        part = F.conv2d(xp[n : n + 1], grad_y[n : n + 1].transpose(0, 1), groups=x.shape[1])
        total = part if total is None else total + part
    return total.transpose(0, 1)


def dot_by_product_map(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """The previous StarReLU scale gradient: ``(a * b).sum()`` through the product map.

    Shape:
        a, b: the same shape -> ()
    """
    return (a * b).sum()


class DFTProducts:
    """The previous training long convolution of small maps: autograd through :func:`~hyenapixel.ops.dft.dft_conv2d`'s
    individual products (stands in for :class:`~hyenapixel.ops.dft.DFTConv2d`)."""

    apply = staticmethod(dft.dft_conv2d_channels_last)


@contextlib.contextmanager
def _swapped(module: object, **forms: object) -> Iterator[None]:
    saved = {name: getattr(module, name) for name in forms}
    for name, form in forms.items():
        setattr(module, name, form)
    try:
        yield
    finally:
        for name, form in saved.items():
            setattr(module, name, form)


@contextlib.contextmanager
def previous_forms(active: bool = True, change: str = "dft") -> Iterator[None]:
    """Within the block the library computes ``change``'s passes in their previous forms (``active=False``: as it
    is)."""
    if not active:
        yield
    elif change == "padding":
        with _swapped(depthwise, _weight_grad=weight_grad_padded_copy), _swapped(pointwise, _dot=dot_by_product_map):
            yield
    else:
        with _swapped(dft, DFTConv2d=DFTProducts):
            yield


def in_forms(fn: Fn, change: str) -> dict[str, Fn]:
    """``fn`` run with the library's forms and with the previous ones."""

    def run(previous: bool) -> None:
        with previous_forms(previous, change):
            fn()

    return {"library": lambda: run(False), "previous": lambda: run(True)}


def short_conv_step(shape: Sequence[int]) -> Fn:
    """Forward and backward of the 5 x 5 depthwise convolution of a channels-last map of ``shape``."""
    x = torch.randn(*shape).to(memory_format=torch.channels_last).requires_grad_()
    w = torch.randn(shape[1], 1, 5, 5, requires_grad=True)
    g = torch.randn(*shape).to(memory_format=torch.channels_last)
    return lambda: torch.autograd.grad(depthwise.depthwise_conv2d(x, w, None, 2), (x, w), g)


def star_relu_step(shape: Sequence[int]) -> Fn:
    """Forward and backward of StarReLU on a contiguous map of ``shape``."""
    x = torch.randn(*shape, requires_grad=True)
    scale, bias = torch.ones(1, requires_grad=True), torch.zeros(1, requires_grad=True)
    g = torch.randn(*shape)
    return lambda: torch.autograd.grad(pointwise.star_relu(x, scale, bias), (x, scale, bias), g)


def dft_conv_step(shape: Sequence[int]) -> Fn:
    """Forward and both gradients of the training long convolution by DFT products of a channels-last
    ``(B, H, W, C)`` map with a ``kernel x kernel`` kernel."""
    b, h, w, c, kernel = shape
    full = plan_conv2d(h, w, kernel, kernel)
    x = torch.randn(b, h, w, c, requires_grad=True)
    k = (torch.randn(c, kernel, kernel) / kernel)[(slice(None), *full.taps)].requires_grad_()
    g = torch.randn(b, h, w, c)
    return lambda: torch.autograd.grad(dft.dft_conv2d(x, k, full.cropped()), (x, k), g)


def dft_cached_step(shape: Sequence[int]) -> Fn:
    """The cached eval long convolution by DFT products (a fixed kernel's spectrum), without autograd."""
    b, h, w, c, kernel = shape
    full = plan_conv2d(h, w, kernel, kernel)
    spectrum = dft.DFTSpectrum2d.make(torch.randn(c, kernel, kernel) / kernel, full)
    x = torch.randn(b, h, w, c)

    def run() -> tuple[torch.Tensor]:
        with torch.inference_mode():
            return (dft.dft_conv2d_cached(x, spectrum, full.cropped()),)

    return run


def check_same_values(makers: Sequence[Callable[[], Fn]], change: str) -> float:
    """Largest relative difference between the library's and the previous forms (what each op's step returns: its
    gradients, or the cached eval's output)."""
    worst = 0.0
    for make in makers:
        torch.manual_seed(0)
        step = make()
        with previous_forms(False, change):
            new = step()
        with previous_forms(True, change):
            old = step()
        for a, b in zip(new, old):
            worst = max(worst, ((a - b).abs().max() / b.abs().max().clamp_min(1e-30)).item())
    return worst


def compare(name: str, fn: Fn, threads: int, warmup: int, rounds: int, change: str) -> list[object]:
    """One table row: medians of both forms and the ratio library / previous with its interval."""
    forms = in_forms(fn, change)
    raw = timed_rounds({k: (threads, f) for k, f in forms.items()}, warmup, rounds, after_itself=True)
    low, med, high = median_interval([a / b for a, b in zip(raw["library"], raw["previous"])])
    new, old = (statistics.median(raw[k]) * 1e3 for k in ("library", "previous"))
    return [name, f"{old:.1f}", f"{new:.1f}", f"{med:.3f} [{low:.3f}, {high:.3f}]"]


def train_224(batch: int, img: int) -> Fn:
    model = create_model(HPX)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x, y = torch.randn(batch, 3, img, img), torch.randint(0, 1000, (batch,))
    return lambda: _train_step(model, opt, x, y)


def eval_224(batch: int, img: int) -> Fn:
    model = create_model(HPX)
    model.eval()
    x = torch.randn(batch, 3, img, img)

    def run() -> None:
        with torch.inference_mode():
            model(x)

    return run


def train_dense(size: tuple[int, int]) -> Fn:
    from benchmarks.bench_dense import train_step

    return train_step(dense_backbone(HPX, size), torch.randn(1, 3, *size))


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--change", choices=["dft", "padding"], default="dft", help="which change to compare")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=9, help="timed rounds (the dense step: at most 5)")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--dense", action="store_true", help="add the 800 x 1333 training step (about 2 min per round)")
    p.add_argument("--quick", action="store_true", help="smoke run: small shapes, one round, a 64-px step")
    p.add_argument("--json", default=None, help="write the rows here")
    return p.parse_args(argv)


def op_rows(change: str, quick: bool) -> list[tuple[str, Callable[[], Fn]]]:
    """The ops alone that ``change`` touches: (row name, step maker)."""
    short, hidden, maps = (QUICK_SHORT, QUICK_HIDDEN, QUICK_DFT) if quick else (SHORT_MAPS, HIDDEN_MAPS, DFT_MAPS)
    if change == "padding":
        rows = [
            (f"depthwise 5x5 fwd+bwd {size} {tuple(s)}", short_conv_step, s) for size, ss in short.items() for s in ss
        ]
        rows += [(f"StarReLU fwd+bwd {size} {tuple(s)}", star_relu_step, s) for size, ss in hidden.items() for s in ss]
    else:
        rows = [(f"DFT long conv fwd+bwd {size} {tuple(s)}", dft_conv_step, s) for size, ss in maps.items() for s in ss]
        evals = maps if quick else DFT_EVAL_MAPS
        rows += [
            (f"DFT long conv cached eval {size} {tuple(s)}", dft_cached_step, s)
            for size, ss in evals.items()
            for s in ss
        ]
    return [(name, lambda make=make, shape=shape: make(shape)) for name, make, shape in rows]


def main(argv: Sequence[str] | None = None) -> dict:
    args = parse_args(argv)
    rounds, warmup = (1, 0) if args.quick else (args.rounds, args.warmup)
    print(machine_info(args.threads))
    ops = op_rows(args.change, args.quick)
    worst = check_same_values([make for _, make in ops], args.change)
    print(f"largest relative difference of the gradients, library against previous forms ({args.change}): {worst:.1e}")
    rows = [compare(name, make(), args.threads, warmup, rounds, args.change) for name, make in ops]
    img, batch = (64, 2) if args.quick else (224, 8)
    rows.append(
        compare(f"{HPX} train step b{batch} {img} px", train_224(batch, img), args.threads, warmup, rounds, args.change)
    )
    if args.change == "dft":
        img, batch = (64, 2) if args.quick else (224, 16)
        name = f"{HPX} eval b{batch} {img} px"
        rows.append(compare(name, eval_224(batch, img), args.threads, warmup, rounds, args.change))
    if args.dense or args.quick:
        size = (64, 96) if args.quick else (800, 1333)
        name = f"{HPX} features_only train step {size[0]}x{size[1]}"
        rows.append(compare(name, train_dense(size), args.threads, warmup, min(rounds, 5), args.change))
    header = ["row", "previous ms", "library ms", "library / previous [95 % interval]"]
    print(markdown_table(header, rows))
    results = {"change": args.change, "threads": args.threads, "rounds": rounds, "max_rel_diff": worst, "rows": rows}
    return finish(results, args.json)


if __name__ == "__main__":
    main(sys.argv[1:])
