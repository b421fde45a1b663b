"""CPU benchmark of HyenaPixel backbones at dense-prediction sizes (paper Section 4.3; issue 9, point 6).

Batch 1, fp32, ``features_only`` backbones (strides 4/8/16/32) at detection / segmentation input sizes, against
timm's ``convformer_s18`` measured in the same run. Rows (``--rows``):

* ``convformer_s18``: the baseline every ratio divides by;
* ``hpx_former_s18 (224-px kernels)``: the paper's 111/55/27/13 kernels, global only at 224 px;
* ``hpx_former_s18 (covering kernels)``: kernels ``2F - 1`` for the largest stage map side ``F = ceil(side /
  stride)`` (``[667, 333, 167, 83]`` at 800 x 1333), so every output sees the whole map;
* ``caformer_s18``: attention in stages 3-4;
* ``c_hpx_former_s18 (covering kernels)``: SepConv in stages 1-2, HyenaPixel with covering kernels in 3-4.

Columns: eval forward (``model.eval()``, no grad; the HyenaPixel kernel-spectrum cache is filled by the warmup
call and reused) and training step (``model.train()``: forward, backward of the sum of the four feature means,
gradients dropped; no optimizer step), as the median of interleaved calls (:func:`benchmarks.common.compare`), and
the training peak RSS: each row in a fresh process (:func:`benchmarks.common.run_isolated`, glibc's mmap threshold
fixed so the RSS follows the live tensors) builds the model and runs ``--mem-steps`` training steps; reported is the
process's whole peak RSS (``VmHWM``), imports included.

Run from the repository root (``--quick``: a smoke run at 64 x 96 px)::

    flock /tmp/hpx-heavy.lock .venv/bin/python -m benchmarks.bench_dense          # heavy: docs/benchmarks.md
    .venv/bin/python -m benchmarks.bench_dense --quick

Results and the machine they came from: docs/benchmarks.md, section "Detection and segmentation sizes".
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from benchmarks.common import CLOCKS, PeakRSS, compare, finish, machine_info, markdown_table, ms, run_isolated

BASELINE = "convformer_s18"
STRIDES = (4, 8, 16, 32)


def covering_kernel_sizes(height: int, width: int) -> list[int]:
    """Per stage ``2 F - 1`` with ``F = ceil(max(height, width) / stride)``: odd kernels that reach from any
    position of the stage's feature map to any other (the paper's "almost twice the feature map" rule).

    >>> covering_kernel_sizes(800, 1333)
    [667, 333, 167, 83]
    """
    return [2 * math.ceil(max(height, width) / s) - 1 for s in STRIDES]


def paper_kernels(height: int, width: int) -> None:
    """The model's own kernel sizes (for the HyenaPixel families: the paper's 224-px 111/55/27/13)."""
    return None


@dataclass(frozen=True)
class Row:
    """One benchmarked backbone: a registered timm name and how its HyenaPixel kernel sizes follow the input."""

    label: str
    model: str
    kernels: Callable[[int, int], list[int] | None] = field(default=paper_kernels)

    def build(self, height: int, width: int, features_only: bool = True) -> nn.Module:
        """The backbone (``features_only``) or whole model for this input size (random weights, seed 0)."""
        import timm

        import hyenapixel  # noqa: F401 - registers the HyenaPixel models in timm

        torch.manual_seed(0)
        sizes = self.kernels(height, width)
        kwargs = {} if sizes is None else {"kernel_sizes": sizes}
        return timm.create_model(self.model, features_only=features_only, **kwargs)


ROWS = {
    r.label: r
    for r in (
        Row(BASELINE, BASELINE),
        Row("hpx_former_s18 (224-px kernels)", "hpx_former_s18"),
        Row("hpx_former_s18 (covering kernels)", "hpx_former_s18", covering_kernel_sizes),
        Row("caformer_s18", "caformer_s18"),
        Row("c_hpx_former_s18 (covering kernels)", "c_hpx_former_s18", covering_kernel_sizes),
    )
}


def parse_size(text: str) -> tuple[int, int]:
    """``"800x1333"`` -> ``(800, 1333)`` (height x width)."""
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must be HEIGHTxWIDTH like 800x1333, got {text!r}") from None
    if min(h, w) < 32:
        raise argparse.ArgumentTypeError(f"size {text!r}: height and width must be >= 32 (the total stride)")
    return h, w


def eval_forward(model: nn.Module, x: torch.Tensor) -> Callable[[], object]:
    """One eval forward without gradients (the kernel-spectrum caches fill on the first call)."""

    def run() -> object:
        model.eval()
        with torch.no_grad():
            return model(x)

    return run


def train_step(model: nn.Module, x: torch.Tensor) -> Callable[[], None]:
    """Forward in train mode and backward of the sum of the feature means; gradients are dropped afterwards."""

    def run() -> None:
        model.train()
        feats = model(x)
        sum(f.float().mean() for f in feats).backward()
        model.zero_grad(set_to_none=True)

    return run


KINDS: dict[str, Callable[[nn.Module, torch.Tensor], Callable[[], object]]] = {
    "eval": eval_forward,
    "train": train_step,
}


def bench_size(
    rows: Sequence[Row],
    size: tuple[int, int],
    warmup: int,
    repeats: int,
    clock: Callable[[], float],
    kinds: Sequence[str] = tuple(KINDS),
) -> dict[str, dict[str, float]]:
    """Median seconds of the eval forward and/or the training step (``kinds``) of every row at ``size`` (batch 1),
    interleaved over all rows and kinds of call; and each time over the baseline row's (if it is among ``rows``)."""
    x = torch.randn(1, 3, *size)
    fns: dict[str, Callable[[], object]] = {}
    for row in rows:
        model = row.build(*size)
        for kind in kinds:
            fns[f"{row.label}|{kind}"] = KINDS[kind](model, x)
    medians = compare(fns, next(iter(fns)), warmup=max(warmup, 1), repeats=repeats, clock=clock).medians
    out: dict[str, dict[str, float]] = {}
    for row in rows:
        out[row.label] = {kind: medians[f"{row.label}|{kind}"] for kind in kinds}
    if BASELINE in out:
        for r in out.values():
            for kind in kinds:
                r[f"{kind}_ratio"] = r[kind] / out[BASELINE][kind]
    return out


def stage_blocks(row: Row, size: tuple[int, int]) -> list[tuple[nn.Module, torch.Size, int]]:
    """The first block of every stage, the shape of its input at ``size`` (in the layout the model's blocks use)
    and the stage's depth, for a row's whole model.

    Shape:
        -> [(block, (1, *block_input), depth)] per stage
    """
    model = row.build(*size, features_only=False)
    shapes: dict[int, torch.Size] = {}

    def record(i: int) -> Callable[[nn.Module, tuple], None]:
        def hook(_module: nn.Module, args: tuple) -> None:
            shapes[i] = args[0].shape

        return hook

    hooks = [stage.blocks[0].register_forward_pre_hook(record(i)) for i, stage in enumerate(model.stages)]
    with torch.no_grad():
        model.eval().forward_features(torch.randn(1, 3, *size))
    for h in hooks:
        h.remove()
    model.train()
    return [(stage.blocks[0], shapes[i], len(stage.blocks)) for i, stage in enumerate(model.stages)]


def bench_blocks(
    rows: Sequence[Row], size: tuple[int, int], warmup: int, repeats: int, clock: Callable[[], float]
) -> dict[str, dict[str, float]]:
    """A light estimate of the training step: forward + backward of the first block of each stage alone (interleaved
    over rows and stages), times the stage depth, summed. Leaves out stem, downsampling and the feature sum, which
    are the same for all rows; needs well under 3 GB at 800 x 1333."""
    fns: dict[str, Callable[[], object]] = {}
    depths: dict[str, list[int]] = {}
    for row in rows:
        depths[row.label] = []
        for i, (block, shape, depth) in enumerate(stage_blocks(row, size)):
            x = torch.randn(shape, requires_grad=True)
            fns[f"{row.label}|{i}"] = lambda b=block, x=x: b(x).square().mean().backward()
            depths[row.label].append(depth)
    medians = compare(fns, next(iter(fns)), warmup=max(warmup, 1), repeats=repeats, clock=clock).medians
    out: dict[str, dict[str, float]] = {}
    for label, ds in depths.items():
        r = {f"stage{i + 1}": medians[f"{label}|{i}"] for i in range(len(ds))}
        r["blocks_total"] = sum(d * medians[f"{label}|{i}"] for i, d in enumerate(ds))
        out[label] = r
    if BASELINE in out:
        for r in out.values():
            r["ratio"] = r["blocks_total"] / out[BASELINE]["blocks_total"]
    return out


def format_blocks_table(results: dict[str, dict[str, float]]) -> str:
    """Markdown table of :func:`bench_blocks`: per-stage block fwd+bwd in ms, the depth-weighted sum and its ratio."""
    header = ["backbone (batch 1)", "stage 1 block ms", "stage 2", "stage 3", "stage 4", "sum x depth ms"]
    header.append(f"vs {BASELINE}")
    rows = []
    for label, r in results.items():
        stages = [ms(r[f"stage{i}"]) for i in range(1, 5)]
        rows.append([label, *stages, ms(r["blocks_total"]), f"{r['ratio']:.2f}x" if "ratio" in r else "-"])
    return markdown_table(header, rows)


def memory_child(label: str, size: tuple[int, int], steps: int) -> dict[str, float | str]:
    """Peak RSS of building one row's model and running ``steps`` training steps in this process."""
    with PeakRSS() as mem:
        model = ROWS[label].build(*size)
        step = train_step(model, torch.randn(1, 3, *size))
        for _ in range(steps):
            step()
    return mem.result()


def measure_memory(label: str, size: tuple[int, int], steps: int, threads: int) -> dict:
    """:func:`memory_child` in a fresh process (glibc's mmap threshold fixed)."""
    argv = ["--memory-child", label, "--sizes", f"{size[0]}x{size[1]}", "--mem-steps", str(steps)]
    return run_isolated("benchmarks.bench_dense", [*argv, "--threads", str(threads)])


def format_table(results: dict[str, dict[str, float]], memory: dict[str, dict]) -> str:
    """Markdown table of one size: times in ms, ratios to the baseline row, training peak RSS in GiB."""
    header = ["backbone (batch 1)", "eval fwd ms", f"eval vs {BASELINE}", "train step ms", f"train vs {BASELINE}"]
    header += ["train peak RSS GiB", f"RSS vs {BASELINE}"]
    ref_mem = memory.get(BASELINE, {}).get("peak_mib")
    rows = []
    for label, r in results.items():
        peak = memory.get(label, {}).get("peak_mib")
        rows.append(
            [
                label,
                ms(r["eval"]) if "eval" in r else "-",
                f"{r['eval_ratio']:.2f}x" if "eval_ratio" in r else "-",
                ms(r["train"]) if "train" in r else "-",
                f"{r['train_ratio']:.2f}x" if "train_ratio" in r else "-",
                f"{peak / 1024:.2f}" if peak is not None else "-",
                f"{peak / ref_mem:.2f}x" if peak is not None and ref_mem else "-",
            ]
        )
    return markdown_table(header, rows)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="smoke run: 64x96 px, no warmup beyond the first call")
    p.add_argument("--sizes", default="800x1333,512x2048", help="input sizes HEIGHTxWIDTH, comma-separated")
    p.add_argument("--rows", default=",".join(ROWS), help="rows, comma-separated, from: " + "; ".join(ROWS))
    p.add_argument("--warmup", type=int, default=1, help="untimed rounds (at least 1: fills the kernel caches)")
    p.add_argument("--repeats", type=int, default=3, help="timed rounds")
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--clock", choices=("wall", "cpu"), default="wall", help="wall time or process CPU time")
    p.add_argument("--no-memory", action="store_true", help="skip the per-row peak-RSS processes")
    p.add_argument(
        "--kinds", default="eval,train", help="what to time: eval, train or both (eval alone is light: no backward)"
    )
    p.add_argument(
        "--blocks",
        action="store_true",
        help="light mode: time one block per stage (fwd+bwd) and sum x depth instead of whole training steps",
    )
    p.add_argument("--mem-steps", type=int, default=2, help="training steps in each peak-RSS process")
    p.add_argument("--json", help="also write the results to this JSON file")
    p.add_argument("--memory-child", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.sizes = [parse_size(s) for s in args.sizes.split(",") if s.strip()]
    args.rows = [s.strip() for s in args.rows.split(",") if s.strip()]
    args.kinds = [s.strip() for s in args.kinds.split(",") if s.strip()]
    if not args.kinds or any(k not in KINDS for k in args.kinds):
        p.error(f"--kinds takes eval, train or eval,train; got {','.join(args.kinds)!r}")
    unknown = [r for r in args.rows if r not in ROWS]
    if unknown:
        p.error(f"unknown rows {unknown}; choose from: {'; '.join(ROWS)}")
    if args.quick:
        args.sizes, args.warmup, args.repeats, args.mem_steps = [(64, 96)], 1, 1, 1
    return args


def main(argv: Sequence[str] | None = None) -> dict:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.memory_child:
        print(json.dumps(memory_child(args.memory_child, args.sizes[0], args.mem_steps)))
        return {}
    clock = CLOCKS[args.clock]
    rows = [ROWS[r] for r in args.rows]
    results: dict = {"machine": machine_info(args.threads), "clock": args.clock, "sizes": {}}
    print(f"# {results['machine']}; clock: {args.clock}; {args.warmup} warmup + {args.repeats} timed rounds")
    for size in args.sizes:
        key = f"{size[0]}x{size[1]}"
        t0 = time.perf_counter()
        if args.blocks:
            blocks = bench_blocks(rows, size, args.warmup, args.repeats, clock)
            results["sizes"][key] = {"blocks": blocks}
            print(f"\n## {key} px, fp32, batch 1: one block per stage, fwd+bwd ({time.perf_counter() - t0:.0f} s)")
            print(f"covering kernels at this size: {covering_kernel_sizes(*size)}\n")
            print(format_blocks_table(blocks))
            continue
        speed = bench_size(rows, size, args.warmup, args.repeats, clock, args.kinds)
        memory = {}
        if not args.no_memory:
            memory = {r.label: measure_memory(r.label, size, args.mem_steps, args.threads) for r in rows}
        results["sizes"][key] = {"speed": speed, "memory": memory}
        print(f"\n## {key} px, fp32, batch 1 ({time.perf_counter() - t0:.0f} s)")
        kernels = covering_kernel_sizes(*size)
        print(f"covering kernels at this size: {kernels}\n")
        print(format_table(speed, memory))
    return finish(results, args.json)


if __name__ == "__main__":
    main()
