"""CPU benchmark of the HyenaPixel token mixer and the S18 models (fp32, all cores by default).

Compares :class:`hyenapixel.mixers.HyenaPixelMixer` with :class:`benchmarks.common.BaselineHyenaPixel` (the same
math written the straightforward way) at the four HyenaPixel-S18 stage shapes, and the ``hpx_former_s18`` /
``hb_former_s18`` models with timm's ``convformer_s18`` / ``caformer_s18``:

* mixer: training forward, forward+backward, and eval with and without the kernel-spectrum cache, against the
  baseline; the layers both share, timed alone, give the "shared-ops floor" of the cached-eval ratio;
* models: eval and training-step images/s, and the training peak memory above the post-setup baseline, each model
  in a fresh process (:func:`benchmarks.common.run_isolated`, glibc's mmap threshold fixed unless
  ``--mem-malloc default``);
* ``--profile``: per-op profiles of the mixer (forward, backward, cached eval); ``--breakdown``: eval time per
  model part.

Timing is interleaved (:func:`benchmarks.common.interleaved_medians`): warmup calls, then timed calls round-robin
between the variants compared, median reported. Run from the repository root::

    .venv/bin/python -m benchmarks.bench_mixer            # full run: mixer, models and memory
    .venv/bin/python -m benchmarks.bench_mixer --quick    # smoke run

On a machine shared with other jobs, ``--clock cpu --threads 1`` (process CPU time) gives stable ratios. Results and
what they mean: docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from benchmarks.common import (
    CLOCKS,
    STAGES,
    BaselineHyenaPixel,
    PeakRSS,
    Stage,
    check_equivalence,
    finish,
    interleaved_medians,
    machine_info,
    make_ours,
    markdown_table,
    ms,
    run_isolated,
    set_cache_enabled,
)

MODELS = ("hpx_former_s18", "hb_former_s18", "convformer_s18", "caformer_s18")
REFERENCE_MODEL = "convformer_s18"


# ---- mixer ----


def bench_stage(
    stage: Stage, batch: int, warmup: int, repeats: int, clock: Callable[[], float] = CLOCKS["wall"], seed: int = 0
) -> dict[str, float]:
    """Seconds per call: training forward / forward+backward of ours and the baseline, eval (no_grad) of ours with and
    without kernel cache and of the baseline."""
    torch.manual_seed(seed)
    ours = make_ours(stage)
    base = BaselineHyenaPixel(stage.dim, stage.kernel, stage.emb)
    x = torch.randn(batch, stage.size, stage.size, stage.dim)
    xg = x.clone().requires_grad_()
    grad = torch.randn_like(x)

    def fwd(m: nn.Module) -> None:
        m(xg)

    def fwd_bwd(m: nn.Module) -> None:
        m.zero_grad(set_to_none=True)
        xg.grad = None
        m(xg).backward(grad)

    def ev(m: nn.Module) -> None:
        with torch.no_grad():
            m(x)

    out: dict[str, float] = {}
    ours.train()
    base.train()
    r = interleaved_medians({"ours": partial(fwd, ours), "base": partial(fwd, base)}, warmup, repeats, clock)
    out["fwd_ours"], out["fwd_base"] = r["ours"], r["base"]
    r = interleaved_medians({"ours": partial(fwd_bwd, ours), "base": partial(fwd_bwd, base)}, warmup, repeats, clock)
    out["fwdbwd_ours"], out["fwdbwd_base"] = r["ours"], r["base"]

    ours.eval()
    base.eval()
    nocache = copy.deepcopy(ours)
    if set_cache_enabled(nocache, False) == 0:
        print("warning: no spectrum_cache found on the mixer; 'no cache' equals 'cached'", file=sys.stderr)
    r = interleaved_medians(
        {
            "cached": partial(ev, ours),
            "nocache": partial(ev, nocache),
            "base": partial(ev, base),
            "shared": partial(shared_ops, ours, x),
        },
        max(1, warmup),  # the first cached call fills the cache
        repeats,
        clock,
    )
    out["eval_cached"], out["eval_nocache"], out["eval_base"] = r["cached"], r["nocache"], r["base"]
    out["eval_shared"] = r["shared"]
    return out


@torch.no_grad()
def shared_ops(mixer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Only the parts of the mixer that the baseline computes the same way, run as our mixer runs them: ``in_proj``
    (C -> 3C), the depthwise 5x5 convolution (channels-last, the faster layout) and ``out_proj`` (C -> C).

    Its time over the baseline's eval time is a lower bound on the cached-eval ratio that any implementation with
    these layers can reach: whatever is done about the long convolution, gating and norms comes on top. The
    projections are dense GEMMs that already run at about the machine's large-GEMM rate (docs/benchmarks.md).

    Shape:
        (B, H, W, C) -> (B, H, W, C)
    """
    qkv = mixer.short_conv(mixer.in_proj(x).permute(0, 3, 1, 2))
    return mixer.out_proj(qkv[:, : mixer.dim].permute(0, 2, 3, 1))


def gemm_rate(n: int = 2048, repeats: int = 3) -> float:
    """GFLOP/s of an ``n x n x n`` fp32 matmul (median of ``repeats``): the practical GEMM rate the projections are
    compared with."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    seconds = interleaved_medians({"matmul": lambda: a @ b}, 1, repeats)["matmul"]
    return 2 * n**3 / seconds / 1e9


# ---- whole models ----


def create_model(name: str) -> nn.Module:
    import timm

    import hyenapixel  # noqa: F401  (registers the hpx/hb models in timm)

    return timm.create_model(name, pretrained=False)


def _train_step(model: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor) -> None:
    loss = F.cross_entropy(model(x), y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def bench_models(
    names: Sequence[str],
    eval_batch: int,
    train_batch: int,
    img: int,
    warmup: int,
    repeats: int,
    clock: Callable[[], float] = CLOCKS["wall"],
    seed: int = 0,
) -> dict[str, dict[str, float]]:
    """Images/s in eval (no_grad; with and without kernel caches where a model has them) and in training steps."""
    torch.manual_seed(seed)
    models = {n: create_model(n) for n in names}
    xe = torch.randn(eval_batch, 3, img, img)
    xt = torch.randn(train_batch, 3, img, img)
    yt = torch.randint(0, 1000, (train_batch,))

    def ev(m: nn.Module, cache: bool) -> None:
        set_cache_enabled(m, cache)
        with torch.no_grad():
            m(xe)
        set_cache_enabled(m, True)

    eval_fns: dict[str, Callable[[], object]] = {}
    for n, m in models.items():
        m.eval()
        eval_fns[n] = partial(ev, m, True)
        if set_cache_enabled(m, True):
            eval_fns[n + " (no cache)"] = partial(ev, m, False)
    t_eval = interleaved_medians(eval_fns, max(1, warmup), repeats, clock)

    train_fns: dict[str, Callable[[], object]] = {}
    for n, m in models.items():
        m.train()
        opt = torch.optim.AdamW(m.parameters(), lr=1e-4)
        train_fns[n] = partial(_train_step, m, opt, xt, yt)
    t_train = interleaved_medians(train_fns, warmup, repeats, clock)

    out: dict[str, dict[str, float]] = {}
    for key, t in t_eval.items():
        out.setdefault(key, {})["eval_ips"] = eval_batch / t
    for key, t in t_train.items():
        out[key]["train_ips"] = train_batch / t
    return out


def _memory_child(name: str, batch: int, img: int, steps: int, threads: int) -> dict[str, float | str]:
    """Runs in the fresh process of :func:`measure_train_memory`: set up, then ``steps`` training steps under
    :class:`PeakRSS` (so AdamW state is included and imports and setup are not)."""
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = create_model(name).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x = torch.randn(batch, 3, img, img)
    y = torch.randint(0, 1000, (batch,))
    with PeakRSS() as mem:
        for _ in range(steps):
            _train_step(model, opt, x, y)
    return mem.result()


def measure_train_memory(
    name: str, batch: int, img: int, steps: int, threads: int, malloc: str = "fixed"
) -> dict[str, float | str]:
    """Training peak RSS above the post-setup baseline of ``name``, measured in a fresh process."""
    argv = ["--memory-child", name, "--mem-batch", str(batch), "--img", str(img), "--mem-steps", str(steps)]
    return run_isolated(
        "benchmarks.bench_mixer",
        [*argv, "--threads", str(threads)],
        fixed_malloc=malloc == "fixed",
    )


_PARTS = ("token_mixer", "mlp", "norm1", "norm2", "downsample", "stem", "head")


def model_breakdown(
    name: str, batch: int, img: int, repeats: int = 3, clock: Callable[[], float] = CLOCKS["wall"]
) -> dict[str, float]:
    """Eval forward time (s, ``clock``, median over ``repeats``) per ``stage.part`` of a MetaFormer-style model
    (token mixers, MLPs, norms, downsampling, stem, head), plus ``total``; measured with forward hooks."""
    model = create_model(name).eval()
    acc: dict[str, float] = {}
    start: dict[str, float] = {}

    def key(mod_name: str) -> str | None:
        parts = mod_name.split(".")
        if parts[-1] not in _PARTS:
            return None
        stage = parts[1] if parts[0] == "stages" and len(parts) > 1 else ""
        return f"{stage}.{parts[-1]}" if stage else parts[-1]

    for mod_name, mod in model.named_modules():
        k = key(mod_name)
        if k is None:
            continue
        mod.register_forward_pre_hook(lambda _m, _i, k=k: start.__setitem__(k, clock()))
        mod.register_forward_hook(lambda _m, _i, _o, k=k: acc.__setitem__(k, acc.get(k, 0.0) + clock() - start[k]))
    x = torch.randn(batch, 3, img, img)
    runs: list[dict[str, float]] = []
    with torch.no_grad():
        model(x)
        for _ in range(max(1, repeats)):
            acc.clear()
            t0 = clock()
            model(x)
            acc["total"] = clock() - t0
            runs.append(dict(acc))
    return {k: statistics.median(r[k] for r in runs) for k in runs[0]}


def format_breakdown(results: dict[str, dict[str, float]]) -> str:
    """Markdown table of :func:`model_breakdown` results, one column per model, in ms."""
    names = list(results)
    keys = sorted({k for r in results.values() for k in r}, key=lambda k: (k == "total", k))
    rows = [[k, *(ms(results[n][k]) if k in results[n] else "-" for n in names)] for k in keys]
    return markdown_table(["part", *names], rows)


def profile_mixer(stage: Stage, batch: int, top: int = 12) -> dict[str, list[tuple[str, float, float]]]:
    """Top ops by self CPU time (name, ms per call, % of the phase) for forward, backward and cached eval."""
    from torch.profiler import ProfilerActivity, profile

    torch.manual_seed(0)
    m = make_ours(stage).train()
    x = torch.randn(batch, stage.size, stage.size, stage.dim, requires_grad=True)
    grad = torch.randn_like(x)
    for _ in range(2):  # warm up allocator and FFT plans
        m(x).backward(grad)

    def summarize(prof: profile, calls: int) -> list[tuple[str, float, float]]:
        rows = [(e.key, e.self_cpu_time_total / 1000 / calls) for e in prof.key_averages()]
        total = sum(t for _, t in rows) or 1.0
        rows.sort(key=lambda r: -r[1])
        return [(k, t, 100 * t / total) for k, t in rows[:top]]

    calls = 3

    def profiled(step: Callable[[int], object]) -> list[tuple[str, float, float]]:
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for i in range(calls):
                step(i)
        return summarize(prof, calls)

    out = {"forward": profiled(lambda _: m(x))}
    ys = [m(x) for _ in range(calls)]
    out["backward"] = profiled(lambda i: ys[i].backward(grad))
    m.eval()
    with torch.no_grad():
        m(x)  # fills the kernel-spectrum cache
        out["eval_cached"] = profiled(lambda _: m(x))
    return out


# ---- reporting ----


def format_stage_table(results: dict[str, dict[str, float]], batch: int) -> str:
    """Markdown table of :func:`bench_stage` results; ratios are ours / baseline time (< 1: ours faster)."""
    header = [
        f"stage (batch {batch})",
        "train fwd ours / base ms",
        "ratio",
        "train fwd+bwd ours / base ms",
        "ratio",
        "eval cached / no cache / base ms",
        "cached ratio",
        "no-cache ratio",
        "shared-ops floor",
    ]
    rows = []
    for key, r in results.items():
        s = STAGES.get(key)
        rows.append(
            [
                f"{key}: {s.dim}ch {s.size}x{s.size} k{s.kernel}" if s else key,
                f"{ms(r['fwd_ours'])} / {ms(r['fwd_base'])}",
                f"{r['fwd_ours'] / r['fwd_base']:.2f}",
                f"{ms(r['fwdbwd_ours'])} / {ms(r['fwdbwd_base'])}",
                f"{r['fwdbwd_ours'] / r['fwdbwd_base']:.2f}",
                f"{ms(r['eval_cached'])} / {ms(r['eval_nocache'])} / {ms(r['eval_base'])}",
                f"{r['eval_cached'] / r['eval_base']:.2f}",
                f"{r['eval_nocache'] / r['eval_base']:.2f}",
                f"{r['eval_shared'] / r['eval_base']:.2f}",
            ]
        )
    return markdown_table(header, rows)


def format_model_table(
    speed: dict[str, dict[str, float]], memory: dict[str, dict], eval_batch: int, train_batch: int
) -> str:
    """Markdown table of whole-model results; ratios are model / convformer_s18 (time, memory)."""
    ref = speed.get(REFERENCE_MODEL)
    ref_mem = memory.get(REFERENCE_MODEL, {}).get("peak_above_baseline_mib")
    header = [
        "model",
        f"eval img/s (b{eval_batch})",
        f"eval time vs {REFERENCE_MODEL}",
        f"train img/s (b{train_batch})",
        f"train time vs {REFERENCE_MODEL}",
        "train peak MiB above baseline",
        f"memory vs {REFERENCE_MODEL}",
    ]
    rows = []
    for name, r in speed.items():
        ev = f"{r['eval_ips']:.1f}"
        ev_ratio = f"{ref['eval_ips'] / r['eval_ips']:.2f}" if ref else "-"
        tr = f"{r['train_ips']:.1f}" if "train_ips" in r else "-"
        tr_ratio = f"{ref['train_ips'] / r['train_ips']:.2f}" if ref and "train_ips" in r else "-"
        mem = memory.get(name, {}).get("peak_above_baseline_mib")
        mem_s = f"{mem:.0f}" if mem is not None else "-"
        mem_ratio = f"{mem / ref_mem:.2f}" if mem is not None and ref_mem else "-"
        rows.append([name, ev, ev_ratio, tr, tr_ratio, mem_s, mem_ratio])
    return markdown_table(header, rows)


def format_profile(stage: Stage, prof: dict[str, list[tuple[str, float, float]]]) -> str:
    lines = []
    for phase, rows in prof.items():
        lines.append(f"stage {stage.name} ({stage.dim}ch {stage.size}x{stage.size} k{stage.kernel}) {phase}:")
        lines += [f"  {pct:5.1f}%  {ms:8.2f} ms  {name}" for name, ms, pct in rows]
    return "\n".join(lines)


# ---- command line ----


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="smoke run: batch 2, 64 px, 0 warmup, 1 repeat")
    p.add_argument("--stages", default="1,2,3,4", help="comma list of S18 stages (1-4), or 'none'")
    p.add_argument("--models", default=",".join(MODELS), help="comma list of timm model names, or 'none'")
    p.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)), help="torch threads (default: all)")
    p.add_argument("--batch", type=int, default=None, help="mixer batch (default 8)")
    p.add_argument("--eval-batch", type=int, default=None, help="model eval batch (default 16)")
    p.add_argument("--train-batch", type=int, default=None, help="model train-step batch (default 8)")
    p.add_argument("--img", type=int, default=None, help="model input size (default 224)")
    p.add_argument("--warmup", type=int, default=None, help="untimed calls per variant (default 2 mixer, 1 model)")
    p.add_argument("--repeats", type=int, default=None, help="timed calls per variant (default 5 mixer, 3 model)")
    p.add_argument("--no-memory", action="store_true", help="skip the training-memory subprocesses")
    p.add_argument("--mem-steps", type=int, default=2, help="training steps in the memory subprocess")
    p.add_argument("--mem-batch", type=int, default=None, help="memory-measurement batch (default: train batch)")
    p.add_argument(
        "--mem-malloc",
        choices=("fixed", "default"),
        default="fixed",
        help="glibc mmap threshold in the memory subprocess: fixed at 128 KiB (reproducible) or glibc's default",
    )
    p.add_argument("--profile", action="store_true", help="print per-op profiles of our mixer")
    p.add_argument(
        "--breakdown", action="store_true", help="print eval forward time per stage and block part of each model"
    )
    p.add_argument("--no-check", action="store_true", help="skip the ours-vs-baseline equivalence check")
    p.add_argument(
        "--clock",
        choices=("wall", "cpu"),
        default="wall",
        help="wall: elapsed time (default); cpu: process CPU time, robust to other load on the machine when "
        "used with --threads 1",
    )
    p.add_argument("--json", default=None, help="also write all results to this JSON file")
    p.add_argument("--memory-child", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    q = args.quick
    args.batch = args.batch or (2 if q else 8)
    args.eval_batch = args.eval_batch or (2 if q else 16)
    args.train_batch = args.train_batch or (2 if q else 8)
    args.img = args.img or (64 if q else 224)
    args.mixer_warmup = args.warmup if args.warmup is not None else (0 if q else 2)
    args.model_warmup = args.warmup if args.warmup is not None else (0 if q else 1)
    args.mixer_repeats = args.repeats or (1 if q else 5)
    args.model_repeats = args.repeats or (1 if q else 3)
    args.mem_batch = args.mem_batch or args.train_batch
    if q:
        args.mem_steps = 1
    return args


def _split(s: str) -> list[str]:
    return [] if s.strip().lower() == "none" else [t.strip() for t in s.split(",") if t.strip()]


def main(argv: Sequence[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.memory_child:
        print(json.dumps(_memory_child(args.memory_child, args.mem_batch, args.img, args.mem_steps, args.threads)))
        return {}
    clock = CLOCKS[args.clock]
    torch.set_num_threads(args.threads)
    stages = [STAGES[s] for s in _split(args.stages)]
    models = _split(args.models)
    results: dict = {"machine": machine_info(args.threads), "args": vars(args), "stages": {}, "models": {}}
    print(f"# {results['machine']}; clock: {args.clock}")

    if stages:
        if not args.no_check:
            for s in stages:
                err = check_equivalence(s)
                results.setdefault("equivalence_max_abs_diff", {})[s.name] = err
                print(f"stage {s.name}: max |ours - baseline| (float64, same weights) = {err:.2e}")
        for s in stages:
            t0 = time.perf_counter()
            results["stages"][s.name] = bench_stage(s, args.batch, args.mixer_warmup, args.mixer_repeats, clock)
            print(f"stage {s.name} done in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
        print(f"\nMixer, fp32, {args.clock} time per call in ms (median); ratio = ours / baseline (< 1: ours faster)\n")
        print(format_stage_table(results["stages"], args.batch))
        print(
            "\nshared-ops floor = time of in_proj + depthwise conv + out_proj alone / baseline eval time: the lowest"
            " cached-eval ratio\nthat any mixer computing these layers can reach (2x faster needs a floor well below"
            " 0.50)"
        )
        print(f"large-GEMM reference on this machine: {gemm_rate():.0f} GFLOP/s (2048^3 fp32 matmul)")

    if models:
        t0 = time.perf_counter()
        speed = bench_models(
            models, args.eval_batch, args.train_batch, args.img, args.model_warmup, args.model_repeats, clock
        )
        print(f"model speed done in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
        memory: dict[str, dict] = {}
        if not args.no_memory:
            for n in models:
                memory[n] = measure_train_memory(
                    n, args.mem_batch, args.img, args.mem_steps, args.threads, args.mem_malloc
                )
        results["models"] = {"speed": speed, "memory": memory}
        print(f"\nModels at {args.img} px, fp32; ratios = model / {REFERENCE_MODEL} (time and memory)\n")
        print(format_model_table(speed, memory, args.eval_batch, args.train_batch))
        if memory:
            method = next(iter(memory.values()))["method"]
            malloc = "glibc mmap threshold fixed at 128 KiB" if args.mem_malloc == "fixed" else "glibc default malloc"
            print(f"\n(memory: {method}, {malloc}, batch {args.mem_batch}, {args.mem_steps} training steps)")

    if args.breakdown and models:
        results["breakdown"] = {
            n: model_breakdown(n, args.eval_batch, args.img, args.model_repeats, clock) for n in models
        }
        print(f"\nEval forward time per part ({args.clock} ms, batch {args.eval_batch}; stage.part)\n")
        print(format_breakdown(results["breakdown"]))

    if args.profile:
        results["profile"] = {}
        for s in stages:
            prof = profile_mixer(s, args.batch)
            results["profile"][s.name] = prof
            print("\n" + format_profile(s, prof))

    return finish(results, args.json)


if __name__ == "__main__":
    main()
