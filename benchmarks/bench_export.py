"""Inference speed of the deployment paths (docs/deploy.md): onnxruntime (CPU provider) vs PyTorch eager vs
torch.compile, for ``hpx_former_s18`` (paper Section 3) and timm's ``convformer_s18`` at batch 1 and 16, 224 px.

Per model, in one process:

* **eager**: ``model.eval()`` under ``torch.no_grad()``; HyenaPixel with its kernel-spectrum cache (the fastest
  eager path).
* **onnxruntime**: the file of :func:`hyenapixel.export.to_onnx` (long convolutions as DFT matrix products with
  constant kernel spectra, those of maps of 28 x 28 pixels or more image by image in an ONNX ``Scan``; dynamic
  batch), CPU provider, as many intra-op threads as PyTorch.
* **onnxruntime_batched**: the same without ``Scan`` (``to_onnx(..., per_image_min_pixels=0)``, the command line's
  ``--no-scan``): every long convolution on the whole batch. For models without such convolutions the same file
  as **onnxruntime**.
* **compile**: ``torch.compile`` (inductor by default) of :func:`hyenapixel.export.freeze_long_convs`' copy (the
  same frozen model the ONNX file holds; for convformer a plain eval copy), under ``torch.no_grad()``.
* **compile_unfrozen**: ``torch.compile`` of the model itself (kernels regenerated in the graph on every call, as
  the spectrum cache steps aside while compiling), under ``torch.no_grad()``; for models without long
  convolutions the same compiled model as **compile**.

Before timing, every path's output is compared with eager on the same input (printed as max |diff|). Timing is
interleaved round-robin over all paths of both models at one batch size (``benchmarks.common.interleaved_medians``,
with an untimed ``--pause`` before each call so that one runtime's spinning worker threads do not slow down the
next), so a change of machine load affects all alike; the table gives ms per image and ratios measured in the same
run: runtime / eager of the same model, and hpx / convformer within each runtime. Below it, the ratios computed
round by round (the calls of one round run within seconds of each other): for each runtime, its time over eager's
and the speed target's statistic, (hpx / convformer in the runtime) / (hpx / convformer in eager), which is at most
1 where the runtime keeps hpx's cost relative to convformer no worse than eager does; each as the median over the
rounds with a distribution-free 95 % interval (``benchmarks.common.median_interval``; ``--repeats 20`` or more
gives a useful one).

Run ``python -m benchmarks.bench_export`` from the repository root (about 20 min on 2 cores, most of it exporting
and compiling); ``--quick`` is a smoke run on reduced models at 64 px.
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from functools import partial

import torch
from torch import nn

import hyenapixel  # noqa: F401 - registers the models in timm
from benchmarks.common import (
    interleaved_medians,
    interleaved_times,
    interval,
    machine_info,
    median_interval,
    trained_like,
    write_json,
)
from hyenapixel.export import FrozenConv1d, FrozenConv2d, freeze_long_convs, onnx_session, run_onnx, to_onnx
from hyenapixel.export.frozen import PER_IMAGE_MIN_PIXELS

RUNTIMES = ("eager", "onnxruntime", "onnxruntime_batched", "compile", "compile_unfrozen")
QUICK_ARCH = {"depths": (1, 1, 1, 1), "dims": (16, 16, 32, 32)}


def build(name: str, quick: bool) -> nn.Module:
    """The model with random weights moved off their initial scales of 1 and shifts of 0
    (:func:`~benchmarks.common.trained_like`: onnxruntime drops those operators, trained weights keep them);
    HyenaPixel models with reduced depths/dims in quick mode."""
    import timm

    from hyenapixel.models import REGISTERED_MODELS

    torch.manual_seed(0)
    kwargs = dict(QUICK_ARCH) if quick and name in REGISTERED_MODELS else {}
    return trained_like(timm.create_model(name, **kwargs).eval())


def prepare(
    name: str,
    model: nn.Module,
    img: int,
    backend: str,
    threads: int,
    workdir: str,
    runtimes: Sequence[str] = RUNTIMES,
    per_image_min_pixels: int = PER_IMAGE_MIN_PIXELS,
) -> dict[str, Callable]:
    """One ``fn(x) -> output`` per runtime in ``runtimes`` (eager always), with export and compile timed and
    printed; **onnxruntime** exported with ``per_image_min_pixels``."""
    fns: dict[str, Callable] = {}

    def eager(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return model(x)

    fns["eager"] = eager
    paths: dict[str, str] = {}
    for runtime, limit in (("onnxruntime", per_image_min_pixels), ("onnxruntime_batched", 0)):
        if runtime not in runtimes:
            continue
        if runtime == "onnxruntime_batched" and "onnxruntime" in paths and not _has_scan(paths["onnxruntime"]):
            fns[runtime] = fns["onnxruntime"]  # no Scan in the file: the same graph
            continue
        t0 = time.perf_counter()
        paths[runtime] = path = os.path.join(workdir, f"{name}.{runtime}.onnx")
        to_onnx(model, path, img, per_image_min_pixels=limit)
        fns[runtime] = partial(run_onnx, onnx_session(path, threads))
        size = os.path.getsize(path) / 2**20
        print(f"# {name}: ONNX export ({runtime}) {time.perf_counter() - t0:.0f} s ({size:.0f} MiB)", flush=True)
    if not {"compile", "compile_unfrozen"} & set(runtimes):
        return fns
    compiled = torch.compile(freeze_long_convs(model, img), backend=backend)

    def comp(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return compiled(x)

    fns["compile"] = comp
    if not any(isinstance(m, FrozenConv1d | FrozenConv2d) for m in compiled.modules()):
        fns["compile_unfrozen"] = comp  # nothing was frozen: the same model, compiled once
        return fns
    compiled_model = torch.compile(model, backend=backend)

    def comp_model(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return compiled_model(x)

    fns["compile_unfrozen"] = comp_model
    return fns


def _has_scan(path: str) -> bool:
    """Whether the ONNX file has a ``Scan`` (a long convolution run image by image, :class:`PerImage`)."""
    import onnx

    return any(node.op_type == "Scan" for node in onnx.load(path, load_external_data=False).graph.node)


def check(fns: dict[str, Callable], x: torch.Tensor) -> dict[str, float]:
    """Max |runtime - eager| on ``x`` (the first compiled call also triggers compilation, timed here)."""
    ref = fns["eager"](x)
    out = {}
    for k in [r for r in fns if r != "eager"]:
        t0 = time.perf_counter()
        y = fns[k](x)
        out[k] = (y.float() - ref.float()).abs().max().item()
        if k.startswith("compile"):
            out[f"{k}_s"] = time.perf_counter() - t0
    return out


def grad_diff(ref: nn.Module, other: nn.Module) -> float:
    """Largest ``max |g_other - g_ref| / max |g_ref|`` over the parameters with a gradient."""
    worst = 0.0
    for (name, p), q in zip(ref.named_parameters(), other.parameters(), strict=True):
        if p.grad is None or q.grad is None:
            if (p.grad is None) != (q.grad is None):
                raise RuntimeError(f"{name}: a gradient in only one of the two models")
            continue
        scale = p.grad.abs().max().item() or 1.0
        worst = max(worst, (q.grad - p.grad).abs().max().item() / scale)
    return worst


def bench_train(
    models: Sequence[str],
    quick: bool,
    img: int,
    batch: int,
    backend: str,
    warmup: int,
    repeats: int,
    pause: float = 0.0,
) -> dict[str, dict[str, float]]:
    """Seconds per training step, eager and ``torch.compile``d (same weights), interleaved; and, from the first
    step, the loss difference and the largest parameter-gradient difference relative to that gradient's largest
    eager entry."""
    steps: dict[str, Callable[[], float]] = {}
    out: dict[str, dict[str, float]] = {}
    x = torch.randn(batch, 3, img, img)
    y = torch.randint(0, 1000, (batch,))
    for name in models:
        eager = build(name, quick).train()
        twin = copy.deepcopy(eager)
        compiled = torch.compile(twin, backend=backend)
        for label, model, params in (("eager", eager, eager), ("compile", compiled, twin)):
            opt = torch.optim.SGD(params.parameters(), lr=0.0)  # a real step that leaves the weights alone

            def step(model: nn.Module = model, opt: torch.optim.Optimizer = opt) -> float:
                opt.zero_grad(set_to_none=True)
                loss = nn.functional.cross_entropy(model(x), y)
                loss.backward()
                opt.step()
                return loss.item()

            steps[f"{name}|{label}"] = step
        t0 = time.perf_counter()
        diff = abs(steps[f"{name}|compile"]() - steps[f"{name}|eager"]())
        out[name] = {"loss_diff": diff, "compile_s": time.perf_counter() - t0, "grad_rel_diff": grad_diff(eager, twin)}
        print(
            f"# {name} train step: |loss compiled - eager| {diff:.2g}, max relative gradient difference "
            f"{out[name]['grad_rel_diff']:.2g} (compile + first step {out[name]['compile_s']:.0f} s)",
            flush=True,
        )
    medians = interleaved_medians(steps, warmup, repeats, pause=pause)
    for name in models:
        out[name] |= {"eager": medians[f"{name}|eager"], "compile": medians[f"{name}|compile"]}
    return out


def format_table(res: dict, models: Sequence[str], batches: Sequence[int], runtimes: Sequence[str] = RUNTIMES) -> str:
    """Markdown table: ms per image, ratio to eager of the same model, ratio to the last model (the reference)."""
    ref = models[-1]
    lines = [
        f"| model | batch | runtime | ms / image | vs eager | vs {ref} (same runtime) |",
        "|---|---|---|---|---|---|",
    ]
    for b in batches:
        for m in models:
            for r in runtimes:
                t = res[str(b)][m][r]
                rel = t / res[str(b)][m]["eager"]
                cross = t / res[str(b)][ref][r]
                lines.append(f"| {m} | {b} | {r} | {1e3 * t / b:.1f} | {rel:.2f} | {cross:.2f} |")
    return "\n".join(lines)


def paired_ratios(
    times: dict[str, list[float]], models: Sequence[str], runtimes: Sequence[str]
) -> dict[str, dict[str, dict[str, tuple[float, float, float]]]]:
    """Per model and runtime other than eager, two ratios computed round by round from ``times`` (keys
    ``"model|runtime"``, one entry per round) and summarised by :func:`median_interval` (low, median, high):
    ``vs_eager``, the runtime's time over the same model's eager time; ``vs_eager_ratio``, the model's time over the
    reference's (the last model) in the runtime, divided by the same ratio in eager."""
    ref = models[-1]
    out: dict = {}
    for m in models:
        out[m] = {}
        for r in runtimes:
            if r == "eager":
                continue
            rounds = zip(times[f"{m}|{r}"], times[f"{m}|eager"], times[f"{ref}|{r}"], times[f"{ref}|eager"])
            own, cross = zip(*[(t / e, (t / rt) / (e / re)) for t, e, rt, re in rounds])
            out[m][r] = {"vs_eager": median_interval(own), "vs_eager_ratio": median_interval(cross)}
    return out


def format_paired(paired: dict, models: Sequence[str], batches: Sequence[int], runtimes: Sequence[str]) -> str:
    """Markdown table of :func:`paired_ratios`: the median over the rounds [95 % interval of that median]."""
    ref = models[-1]
    lines = [
        f"| model | batch | runtime | vs eager, per round | (vs {ref} in the runtime) / (vs {ref} in eager), "
        "per round |",
        "|---|---|---|---|---|",
    ]

    for b in batches:
        for m in models[:-1]:
            for r in runtimes:
                p = paired[str(b)][m][r]
                lines.append(f"| {m} | {b} | {r} | {interval(p['vs_eager'])} | {interval(p['vs_eager_ratio'])} |")
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="hpx_former_s18,convformer_s18", help="comma list; the last is the reference")
    p.add_argument("--batches", help="comma list of batch sizes (default: 1,16; quick: 1,2)")
    p.add_argument("--img", type=int, default=224)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    p.add_argument(
        "--pause",
        type=float,
        default=0.2,
        help="seconds of untimed sleep before each timed call (default 0.2): onnxruntime's threads keep spinning "
        "after a call and slow down the next runtime (convformer eager right after onnxruntime: 75 instead of 41 ms)",
    )
    p.add_argument("--backend", default="inductor", help="torch.compile backend (default: inductor)")
    p.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: reduced HyenaPixel models, 64 px, batches 1,2, one warmup and repeat",
    )
    p.add_argument(
        "--train-batch",
        type=int,
        default=0,
        help="also time a training step (forward, cross-entropy, backward, SGD) eager vs compiled at this batch",
    )
    p.add_argument(
        "--runtimes",
        default=",".join(RUNTIMES),
        help=f"comma list out of {','.join(RUNTIMES)} (eager is always timed: the ratios need it)",
    )
    p.add_argument(
        "--train-only", action="store_true", help="only the training step (needs --train-batch); no inference timing"
    )
    p.add_argument(
        "--per-image-min-pixels",
        type=int,
        default=PER_IMAGE_MIN_PIXELS,
        help=f"the onnxruntime runtime's Scan threshold (to_onnx's per_image_min_pixels; default "
        f"{PER_IMAGE_MIN_PIXELS}; 196 adds the 14 x 14 maps of stage 3)",
    )
    p.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    args = p.parse_args(argv)
    if args.quick:
        args.img, args.warmup, args.repeats = 64, 1, 1
    args.batches = args.batches or ("1,2" if args.quick else "1,16")
    if args.train_only and not args.train_batch:
        p.error("--train-only needs --train-batch N")
    chosen = {r.strip() for r in args.runtimes.split(",") if r.strip()}
    if not chosen <= set(RUNTIMES):
        p.error(f"--runtimes: unknown {', '.join(sorted(chosen - set(RUNTIMES)))}; choose from {', '.join(RUNTIMES)}")
    args.runtimes = [r for r in RUNTIMES if r in chosen | {"eager"}]
    return args


def main(argv: Sequence[str] | None = None) -> dict:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    batches = [] if args.train_only else [int(b) for b in args.batches.split(",")]
    print(f"# {machine_info(args.threads)}; img {args.img}; compile backend {args.backend}", flush=True)
    results: dict = {"check": {}, "time": {}, "paired": {}, "rounds": {}}
    with tempfile.TemporaryDirectory() as workdir:
        fns = {}
        for name in models if batches else ():
            model = build(name, args.quick)
            fns[name] = prepare(
                name, model, args.img, args.backend, args.threads, workdir, args.runtimes, args.per_image_min_pixels
            )
            x = torch.randn(2, 3, args.img, args.img)
            results["check"][name] = c = check(fns[name], x)
            diffs = ", ".join(f"{r} {c[r]:.2g}" for r in args.runtimes[1:])
            firsts = ", ".join(f"{r} {c[r + '_s']:.0f} s" for r in args.runtimes if f"{r}_s" in c)
            firsts = f" (compile + first call: {firsts})" if firsts else ""
            print(f"# {name}: max |runtime - eager|: {diffs}{firsts}", flush=True)
        for b in batches:
            x = torch.randn(b, 3, args.img, args.img)
            calls = {f"{m}|{r}": partial(fns[m][r], x) for m in models for r in args.runtimes}
            times = interleaved_times(calls, args.warmup, args.repeats, pause=args.pause)
            medians = {k: statistics.median(v) for k, v in times.items()}
            results["time"][str(b)] = {m: {r: medians[f"{m}|{r}"] for r in args.runtimes} for m in models}
            results["paired"][str(b)] = paired_ratios(times, models, args.runtimes)
            results["rounds"][str(b)] = times  # seconds per call, round by round
            print(f"# batch {b} done, {machine_info(args.threads)}", flush=True)
    if args.train_batch:
        results["train"] = bench_train(
            models, args.quick, args.img, args.train_batch, args.backend, args.warmup, args.repeats, args.pause
        )
    print()
    if batches:
        print(format_table(results["time"], models, batches, args.runtimes))
        print()
        print(format_paired(results["paired"], models, batches, args.runtimes[1:]))
    for name, r in results.get("train", {}).items():
        print(
            f"training step, batch {args.train_batch}: {name} eager {1e3 * r['eager']:.0f} ms, compiled "
            f"{1e3 * r['compile']:.0f} ms, compiled / eager {r['compile'] / r['eager']:.2f}"
        )
    if args.json:
        write_json(args.json, results)
    return results


if __name__ == "__main__":
    main()
