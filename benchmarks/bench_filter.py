"""The fused implicit filter of HyenaPixel (paper Section 3, Eq. 4; :mod:`hyenapixel.ops.implicit`) against its
floor, and optionally against another checkout's filter, at the S18 stage shapes: 224 px (kernels 111/55/27/13) and
a dense input with covering kernels (``--dense-size``, default 800 x 1333: ``[667, 333, 167, 83]``, the taps that
reach the map only).

Each case is the kernel's forward and backward (``kernel.sum().backward()``: every parameter's gradient, the
positional embedding's included) at ``--threads`` torch threads, with the filter of each stage's first mixer of
``hpx_former_s18`` (random weights) and the library's own dispatch (Python threads or one loop).

* **floor**: the arithmetic the fused function cannot avoid, timed op by op alone at one thread on preallocated
  outputs, at the shape of one block of kernel rows: every matrix product (forward, the recomputation in backward,
  both gradients of every layer) and every sine, cosine and exponential pass, scaled to all taps and divided by the
  thread count (perfect scaling, nothing else: no elementwise products, sums, copies, allocations or Python).
  ``fused / floor`` says how close the implementation is to it.
* ``--against SRC``: the fused filter of another checkout (its ``hyenapixel/ops/implicit.py`` under ``SRC``, e.g. a
  ``git worktree`` of an older commit), timed interleaved with this one in the same process; ``ratio`` is the median
  of the per-round ratios this / that with its 95 % interval (< 1: this checkout is faster).

Run from the repository root, holding the machine's CPU lock::

    flock /tmp/hpx-cpu.lock .venv/bin/python -m benchmarks.bench_filter
    git worktree add /tmp/old <rev>
    flock /tmp/hpx-cpu.lock .venv/bin/python -m benchmarks.bench_filter --against /tmp/old/src

Results: docs/benchmarks.md, "Two threads".
"""

from __future__ import annotations

import argparse
import importlib.util
import inspect
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType

import torch
from torch import nn

from benchmarks.common import interleaved_times, machine_info, markdown_table, median_interval
from hyenapixel.ops import implicit, plan_conv2d
from hyenapixel.ops.parallel import intra_op_threads

Fn = Callable[[], object]


def load_implicit(src: str | Path) -> ModuleType:
    """``hyenapixel/ops/implicit.py`` of another checkout's source tree ``src``, as a module of its own (it imports
    the rest of the package from this checkout)."""
    path = Path(src) / "hyenapixel" / "ops" / "implicit.py"
    if not path.is_file():
        raise FileNotFoundError(f"--against {src}: no {path}")
    spec = importlib.util.spec_from_file_location("_implicit_against", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def kernel_call(module: ModuleType, filt: nn.Module, region: tuple[slice, slice]) -> Fn:
    """Forward and backward of ``filt``'s kernel over the taps ``region`` by ``module.implicit_kernel`` (a module
    whose function takes ``region``, or an older one given the cropped embedding and distances)."""
    takes_region = "region" in inspect.signature(module.implicit_kernel).parameters

    def run() -> None:
        args = (filt.decay, filt.shift, filt.mlp[-1].weight, *filt.mlp.folded_weights())
        if takes_region:
            k = module.implicit_kernel(filt.pos_emb, filt.distance, *args, region=region)
        else:
            k = module.implicit_kernel(filt.pos_emb[:, region[0], region[1]], filt.distance[region], *args)
        k.sum().backward()
        filt.zero_grad(set_to_none=True)

    return run


def _time_alone(fn: Fn, repeats: int = 20) -> float:
    """Median seconds of ``fn`` over ``repeats`` calls after two untimed ones."""
    fn()
    fn()
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts)


def floor_seconds(filt: nn.Module, taps: int, width: int, threads: int) -> float:
    """The filter's unavoidable arithmetic over ``taps`` positions (see the module docstring), from the ops timed
    alone at one thread on a block of the library's size (rows of ``width`` taps), divided by ``threads``."""
    *body, last = list(filt.mlp)
    layers = [(lin.out_features, lin.in_features) for lin in body[0::2]]  # (out, in) of the hidden layers
    c, h = last.weight.shape
    widest = max(c, *(o for o, _ in layers))
    n = max(1, implicit.BLOCK_ELEMENTS // (widest * width)) * width  # positions of one block
    r = torch.randn
    ops: list[Fn] = []
    for out, inp in layers:  # forward, and once more in backward: product and sine
        w, x, y = r(out, inp + 1), r(inp + 1, n), torch.empty(out, n)
        ops += [lambda w=w, x=x, y=y: torch.mm(w, x, out=y), lambda y=y: torch.sin(y, out=y)] * 2
        g, gw, gx = r(out, n), torch.empty(out, inp + 1), torch.empty(inp, n)
        ops += [lambda g=g, y=y: torch.cos(y, out=g)]  # sin'
        ops += [lambda g=g, x=x, gw=gw: torch.mm(g, x.t(), out=gw)]  # weight gradient
        ops += [lambda w=w, g=g, gx=gx, inp=inp: torch.mm(w[:, :inp].t(), g, out=gx)]  # input gradient
    wo, hh, k, go = r(c, h), r(h, n), torch.empty(c, n), torch.empty(c, h)
    gh = torch.empty(h, n)
    ops += [lambda: torch.mm(wo, hh, out=k)] * 2  # the kernel, and the raw kernel again in backward
    ops += [lambda: torch.exp(k, out=k)] * 2  # the window, forward and backward
    ops += [lambda: torch.mm(k, hh.t(), out=go), lambda: torch.mm(wo.t(), k, out=gh)]  # both output gradients
    with intra_op_threads(1):
        per_block = sum(_time_alone(op) for op in ops)
    return per_block * taps / n / threads


def stage_filters(size: tuple[int, int], kernel_sizes: Sequence[int] | None) -> list[tuple[nn.Module, tuple, str]]:
    """Per stage of ``hpx_former_s18`` at input ``size``: the first mixer's filter, the taps that reach the map and
    a label."""
    import timm

    import hyenapixel  # noqa: F401 - registers the models
    from benchmarks.bench_two_cores import stage_inputs

    torch.manual_seed(0)
    kwargs = {} if kernel_sizes is None else {"kernel_sizes": list(kernel_sizes)}
    model = timm.create_model("hpx_former_s18", **kwargs)
    out = []
    for i, (block, x, _) in enumerate(stage_inputs(model, torch.zeros(1, 3, *size)), start=1):
        filt = block.token_mixer.filter
        (hm, wm), (kh, kw) = x.shape[1:3], filt.kernel_size  # the block's input is channels-last
        taps = plan_conv2d(hm, wm, kh, kw).taps
        rows, cols = (len(range(*s.indices(n))) for s, n in zip(taps, (kh, kw)))
        label = f"stage {i} {size[0]}x{size[1]}: C {filt.channels}, kernel {kh}, taps {rows} x {cols}"
        out.append((filt.train(), taps, label))
    return out


def run(
    size_cases: Sequence[tuple[tuple[int, int], Sequence[int] | None]], threads: int, rounds: int, against: str | None
) -> list[list[str]]:
    other = load_implicit(against) if against else None
    rows = []
    with intra_op_threads(threads):
        for size, kernels in size_cases:
            for filt, region, label in stage_filters(size, kernels):
                fns = {"this": kernel_call(implicit, filt, region)}
                if other is not None:
                    fns["against"] = kernel_call(other, filt, region)
                times = interleaved_times(fns, 1, rounds)
                this = statistics.median(times["this"])
                taps = filt.pos_emb[0, region[0], region[1]]
                floor = floor_seconds(filt, taps.numel(), taps.shape[1], threads)
                row = [label, f"{1000 * this:.1f}", f"{1000 * floor:.1f}", f"{this / floor:.2f}"]
                if other is not None:
                    low, med, high = median_interval([a / b for a, b in zip(times["this"], times["against"])])
                    row += [f"{1000 * statistics.median(times['against']):.1f}", f"{med:.3f} [{low:.3f}, {high:.3f}]"]
                rows.append(row)
    return rows


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=11, help="interleaved timed rounds (default 11)")
    p.add_argument("--dense-size", default="800x1333", help="HEIGHTxWIDTH with covering kernels ('none': skip)")
    p.add_argument("--no-224", action="store_true", help="skip the 224-px shapes")
    p.add_argument("--against", default=None, help="another checkout's source tree (its src/ folder)")
    p.add_argument("--quick", action="store_true", help="smoke run: 64 px and 64x96, 1 round")
    args = p.parse_args(argv)
    if args.quick:
        args.rounds, args.dense_size = 1, "64x96"
    return args


def main(argv: Sequence[str] | None = None) -> list[list[str]]:
    from benchmarks.bench_dense import covering_kernel_sizes

    args = parse_args(argv)
    cases: list[tuple[tuple[int, int], Sequence[int] | None]] = []
    if not args.no_224:
        cases.append(((64, 64) if args.quick else (224, 224), None))
    if args.dense_size != "none":
        h, w = (int(v) for v in args.dense_size.split("x"))
        cases.append(((h, w), covering_kernel_sizes(h, w)))
    print(f"# {machine_info(args.threads)}")
    rows = run(cases, args.threads, args.rounds, args.against)
    header = ["filter fwd+bwd", f"fused ms ({args.threads} threads)", "floor ms", "fused / floor"]
    if args.against:
        header += [f"{args.against} ms", "ratio this / that"]
    print(f"\nmedian of {args.rounds} interleaved rounds\n")
    print(markdown_table(header, rows))
    return rows


if __name__ == "__main__":
    main()
