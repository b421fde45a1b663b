"""Where the second core goes: hpx_former_s18 against timm's convformer_s18 at one and two threads (issue 24).

Two modes, both on CPU, fp32, wall clock, interleaved in one process (every round calls every variant once, in
turn, so a change of machine load hits all alike):

* ``--attribution`` (default): per stage and per part of a block, the time of the part alone at 1 and at 2 torch
  threads, for eval (``--eval-batch``, default 16, no grad, kernel-spectrum cache filled) and for the training step
  (``--train-batch``, default 8: forward and backward of the part with random output gradients), so that the
  two-thread scaling of each part is visible. Each part runs the model's own modules on the tensors that reach them
  in a forward of the stage's first block at 224 px; a stage's time is the block's times the stage depth. Parts:

  - ``projections``: the 1x1 layers of the mixer (hpx: ``in_proj`` C -> 3C and ``out_proj``; ConvFormer's SepConv:
    ``pwconv1`` C -> 2C and ``pwconv2``);
  - ``short conv``: the depthwise convolution (hpx 5x5 on 3C channels, SepConv 7x7 on 2C);
  - ``long conv``: hpx's long convolution as the mixer dispatches it (``ops.dft.dft_preferred``: DFT products on
    the channels-last map for small maps, else the FFT with its layout change; eval: the cached kernel spectrum;
    training: a given kernel and both gradients);
  - ``filter``: hpx's implicit kernel (training only; eval uses the cached spectrum);
  - ``norms, gating``: the block's two LayerNorms and residual scales and adds, and the mixer's elementwise parts
    (hpx: ``q * k``, qk norm, ``v * .``, out norm; SepConv: its StarReLU);
  - ``MLP``: the channel MLP (``fc1``, StarReLU, ``fc2``).

  ``whole model`` is the model's own eval forward / training step (cross-entropy, backward, AdamW step) timed in the
  same rounds, and ``rest`` the whole model minus the parts (stem, downsampling, head, loss, optimizer; and the
  difference between parts alone and in the model).
* ``--dense-attribution``: the same table for the training step at ``--dense-size`` (default 800 x 1333), batch
  1, on ``bench_dense``'s ``features_only`` backbones (hpx with covering kernels ``2F - 1``); the whole model is
  ``bench_dense``'s training step (backward of the feature means, no optimizer) and at most 5 rounds are taken.
  It shows where the dense target's time goes.
* ``--dispatch``: the choice between Python threads and one plain loop on torch's threads
  (:mod:`hyenapixel.ops.parallel`) for the long convolution (forward and backward, and the cached eval forward) and
  the implicit filter (forward and backward) of each HyenaPixel-S18 stage, at 2 threads: at 224 px (batch
  ``--train-batch``) and at ``--dense-size`` with covering kernels (batch 1). Each op runs with its blocks on Python
  threads and as one loop, each timed call right after an untimed one in the same setting; the table says which
  the library chooses (``THREADS_FROM_PLANE``, ``THREADS_FROM_TAPS``).
* ``--targets``: every target of issue 24 at 2 threads as the median over rounds of the per-round ratio
  hpx_former_s18 / convformer_s18 with its distribution-free 95 % interval: eval batch 16 and training step batch 8
  at 224 px, the 800 x 1333 ``features_only`` training step with covering kernels (``[667, 333, 167, 83]``, batch 1,
  as ``bench_dense``; ``--no-dense`` skips it), and the training peak memory (each model in a fresh process, as
  ``bench_mixer``; ``--no-memory`` skips it). ``--threads 1,2`` adds the one-thread ratios of the 224-px rows.

Run from the repository root, holding the machine's CPU lock::

    flock /tmp/hpx-cpu.lock .venv/bin/python -m benchmarks.bench_two_cores --attribution
    flock /tmp/hpx-cpu.lock .venv/bin/python -m benchmarks.bench_two_cores --dense-attribution
    flock /tmp/hpx-cpu.lock .venv/bin/python -m benchmarks.bench_two_cores --targets
    flock /tmp/hpx-cpu.lock .venv/bin/python -m benchmarks.bench_two_cores --dispatch
    .venv/bin/python -m benchmarks.bench_two_cores --quick     # smoke run of both modes at 64 px

Results and the machine: docs/benchmarks.md, "Two threads".
"""

from __future__ import annotations

import argparse
import contextlib
import math
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from benchmarks.common import finish, machine_info, markdown_table, median_interval, set_cache_enabled

HPX = "hpx_former_s18"
CONV = "convformer_s18"
DENSE_ROWS = {HPX: "hpx_former_s18 (covering kernels)", CONV: CONV}  # bench_dense's rows for --dense-attribution
PARTS = ("projections", "short conv", "long conv", "filter", "norms, gating", "MLP")
Fn = Callable[[], object]


def create_model(name: str, **kwargs: object) -> nn.Module:
    """A registered timm model with random weights (seed 0)."""
    import timm

    import hyenapixel  # noqa: F401  (registers the hpx models in timm)

    torch.manual_seed(0)
    return timm.create_model(name, pretrained=False, **kwargs)


# ---- timing ----


def timed_rounds(
    fns: dict[str, tuple[int, Fn]], warmup: int, rounds: int, after_itself: bool = False
) -> dict[str, list[float]]:
    """Wall seconds of every timed call of each ``(threads, fn)``: ``warmup`` untimed rounds, then ``rounds`` timed
    ones, each round calling every function once in turn with ``torch.set_num_threads(threads)`` set before (outside
    the clock). With ``after_itself`` each timed call comes right after an untimed call of the same function: what the
    allocator and the thread pools hold when a call starts depends on the call before (one loop of blocks timed right
    after a threaded call ran up to 2x slower than after a loop). The thread count in force before is restored."""
    before = torch.get_num_threads()
    times: dict[str, list[float]] = {k: [] for k in fns}
    try:
        for r in range(warmup + rounds):
            for key, (threads, fn) in fns.items():
                torch.set_num_threads(threads)
                if after_itself:
                    fn()
                t0 = time.perf_counter()
                fn()
                if r >= warmup:
                    times[key].append(time.perf_counter() - t0)
    finally:
        torch.set_num_threads(before)
    return times


# ---- attribution: the parts of a block ----


def _backward(outputs: Sequence[torch.Tensor], params: nn.Module) -> None:
    """Backward of ``outputs`` with fixed pseudo-random output gradients; parameter gradients are dropped first."""
    params.zero_grad(set_to_none=True)
    torch.autograd.backward(list(outputs), [_grad_like(o) for o in outputs])


_GRADS: dict[tuple, torch.Tensor] = {}


def _grad_like(t: torch.Tensor) -> torch.Tensor:
    """A fixed random tensor shaped and strided like ``t`` (made once per shape and strides)."""
    key = (tuple(t.shape), t.stride())
    if key not in _GRADS:
        g = torch.empty_strided(t.shape, t.stride(), dtype=t.dtype)
        g.copy_(torch.randn(t.shape, generator=torch.Generator().manual_seed(1)))
        _GRADS[key] = g
    return _GRADS[key]


def _leaf(t: torch.Tensor, grad: bool) -> torch.Tensor:
    """A detached copy of ``t`` with its strides (a view's layout, such as the q/k/v chunks, is kept by copying the
    tensor it views: ``t`` must be the base), requiring grad for training parts."""
    out = torch.empty_strided(t.shape, t.stride(), dtype=t.dtype)
    out.copy_(t.detach())
    return out.requires_grad_(grad)


def _run(train: bool, module: nn.Module, body: Callable[[], Sequence[torch.Tensor]]) -> Fn:
    """A callable for one part: ``body()`` under no_grad (eval) or with the backward of its outputs (training)."""

    def ev() -> None:
        with torch.no_grad():
            body()

    def tr() -> None:
        _backward(body(), module)

    return tr if train else ev


def hpx_parts(block: nn.Module, x: torch.Tensor, train: bool) -> dict[str, Fn]:
    """The parts of a HyenaPixel MetaFormer block on its input ``x`` (B, H, W, C), as eval or training calls."""
    from hyenapixel.ops import plan_conv2d
    from hyenapixel.ops.dft import conv2d_channels_last

    m = block.token_mixer
    with torch.no_grad():  # the tensors that reach each part in a forward of the block
        xn = block.norm1(x)
        lin = m.in_proj(xn)  # (B, H, W, 3C)
        qkv = m.short_conv(lin.permute(0, 3, 1, 2))  # NCHW view of channels-last memory
        q, k, v = (t.permute(0, 2, 3, 1) for t in qkv.chunk(3, dim=1))
        u = m.qk_norm(q * k)
        lc = m.long_conv_channels_last(u)  # (B, H, W, C) view of channels-first memory
        yn = m.out_norm(v * lc)
        x1 = block.res_scale1(x) + m.out_proj(yn)
        x1n = block.norm2(x1)
        kh, kw = m.filter.kernel_size
        full = plan_conv2d(u.shape[1], u.shape[2], kh, kw)
    g = train
    xl, lin_l, qkv_l, u_l, lc_l, yn_l, x1l, x1n_l = (_leaf(t, g) for t in (x, lin, qkv, u, lc, yn, x1, x1n))
    xn_l = _leaf(xn, g)

    def projections() -> list[torch.Tensor]:
        return [m.in_proj(xn_l), m.out_proj(yn_l)]

    def short_conv() -> list[torch.Tensor]:
        return [m.short_conv(lin_l.permute(0, 3, 1, 2))]

    def norms_gating() -> list[torch.Tensor]:
        qq, kk, vv = (t.permute(0, 2, 3, 1) for t in qkv_l.chunk(3, dim=1))
        outs = [block.norm1(xl), m.qk_norm(qq * kk), m.out_norm(vv * lc_l)]
        outs += [block.res_scale1(xl) + yn_l, block.norm2(x1l), block.res_scale2(x1l) + x1n_l]
        return outs

    def mlp() -> list[torch.Tensor]:
        return [block.mlp(x1n_l)]

    parts = {"projections": projections, "short conv": short_conv, "norms, gating": norms_gating, "MLP": mlp}
    if not train:
        parts["long conv"] = lambda: [m.long_conv_channels_last(u_l)]
        return {name: _run(False, block, body) for name, body in parts.items()}

    with torch.no_grad():
        k0 = m.kernel(full.taps)
    k_l = _leaf(k0, True)

    def long_conv() -> list[torch.Tensor]:  # the model's path with the kernel given (the mixer's dispatch)
        return [conv2d_channels_last(u_l, k_l, full.cropped())]

    parts["long conv"] = long_conv
    parts["filter"] = lambda: [m.kernel(full.taps)]
    return {name: _run(True, block, body) for name, body in parts.items()}


def conv_parts(block: nn.Module, x: torch.Tensor, train: bool) -> dict[str, Fn]:
    """The parts of a timm ConvFormer block on its input ``x`` (B, C, H, W), as eval or training calls."""
    m = block.token_mixer
    with torch.no_grad():
        xn = block.norm1(x)
        h = m.pwconv1(xn)
        a = m.act1(h)
        d = m.dwconv(a)
        x1 = block.res_scale1(x) + block.layer_scale1(m.pwconv2(m.act2(d)))
        x1n = block.norm2(x1)
    g = train
    xl, xn_l, h_l, a_l, d_l, x1l, x1n_l = (_leaf(t, g) for t in (x, xn, h, a, d, x1, x1n))

    def projections() -> list[torch.Tensor]:
        return [m.pwconv1(xn_l), m.pwconv2(d_l)]

    def short_conv() -> list[torch.Tensor]:
        return [m.dwconv(a_l)]

    def norms_gating() -> list[torch.Tensor]:
        outs = [block.norm1(xl), m.act1(h_l), block.res_scale1(xl) + block.layer_scale1(xn_l)]
        return outs + [block.norm2(x1l), block.res_scale2(x1l) + block.layer_scale2(x1n_l)]

    def mlp() -> list[torch.Tensor]:
        return [block.mlp(x1n_l)]

    parts = {"projections": projections, "short conv": short_conv, "norms, gating": norms_gating, "MLP": mlp}
    return {name: _run(train, block, body) for name, body in parts.items()}


def model_stages(model: nn.Module) -> list[nn.Module]:
    """The stages of a MetaFormer, also of its ``features_only`` wrappers (timm's ``FeatureGetterNet`` keeps the
    model as ``.model``; ``FeatureListNet`` names the stages ``stages_0``, ``stages_1``, ...)."""
    inner = getattr(model, "model", model)
    if hasattr(inner, "stages"):
        return list(inner.stages)
    named = dict(model.named_children())
    stages = [named[f"stages_{i}"] for i in range(len(named)) if f"stages_{i}" in named]
    if not stages:
        raise ValueError(f"no stages found in {type(model).__name__}")
    return stages


def stage_inputs(model: nn.Module, x: torch.Tensor) -> list[tuple[nn.Module, torch.Tensor, int]]:
    """The first block of every stage, the tensor that reaches it in an eval forward of ``x`` (cloned, strides kept)
    and the stage's depth."""
    seen: dict[int, torch.Tensor] = {}
    stages = model_stages(model)
    hooks = [
        stage.blocks[0].register_forward_pre_hook(lambda _m, args, i=i: seen.__setitem__(i, _leaf(args[0], False)))
        for i, stage in enumerate(stages)
    ]
    with torch.no_grad():
        model.eval()(x)
    for hk in hooks:
        hk.remove()
    return [(stage.blocks[0], seen[i], len(stage.blocks)) for i, stage in enumerate(stages)]


def _train_step(model: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor) -> None:
    loss = F.cross_entropy(model(x), y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


@dataclass
class Attribution:
    """Median wall seconds per stage (``"1"``..``"4"``, or ``"all"``) and part at each thread count, per model."""

    mode: str
    batch: int
    times: dict[str, dict[tuple[str, str, int], float]]  # model -> (stage, part, threads) -> seconds

    def as_json(self) -> dict[str, dict[str, float]]:
        """The times with ``"stage|part|threads"`` keys (JSON objects need string keys)."""
        return {n: {"|".join(map(str, k)): v for k, v in d.items()} for n, d in self.times.items()}


def attribution(
    mode: str,
    batch: int,
    img: int,
    threads: Sequence[int],
    warmup: int,
    rounds: int,
    dense: tuple[int, int] | None = None,
) -> Attribution:
    """Time every part of every stage's first block (times the stage depth) and the whole model, for
    ``mode`` ``"eval"`` or ``"train"``, at each thread count, interleaved. ``dense = (height, width)``: the
    ``features_only`` backbones of ``bench_dense`` at that size instead (hpx with covering kernels; the whole model
    is ``bench_dense``'s eval forward or training step) and ``img`` is ignored."""
    train = mode == "train"
    x = torch.randn(batch, 3, *(dense or (img, img)))
    labels = torch.randint(0, 1000, (batch,))
    fns: dict[str, tuple[int, Fn]] = {}
    depth: dict[str, int] = {}
    for name, parts_of in ((HPX, hpx_parts), (CONV, conv_parts)):
        model = create_model(name) if dense is None else dense_backbone(name, dense)
        for s, (block, xin, d) in enumerate(stage_inputs(model, x), start=1):
            block.train(train)
            for part, fn in parts_of(block, xin, train).items():
                for t in threads:
                    fns[f"{name}|{s}|{part}|{t}"] = (t, fn)
                depth[f"{name}|{s}|{part}"] = d
        if dense is not None:
            from benchmarks.bench_dense import KINDS

            whole = KINDS[mode](model, x)
        elif train:
            model.train()
            opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
            whole: Fn = partial(_train_step, model, opt, x, labels)
        else:
            model.eval()

            def whole(model: nn.Module = model) -> None:
                with torch.no_grad():
                    model(x)

        for t in threads:
            fns[f"{name}|all|whole model|{t}"] = (t, whole)
        depth[f"{name}|all|whole model"] = 1
    raw = timed_rounds(fns, warmup, rounds)
    out: dict[str, dict[tuple[str, str, int], float]] = {HPX: {}, CONV: {}}
    for key, ts in raw.items():
        name, stage, part, t = key.split("|")
        out[name][stage, part, int(t)] = statistics.median(ts) * depth[f"{name}|{stage}|{part}"]
    for name in out:
        for t in threads:
            parts_sum = sum(v for (s, _, tt), v in out[name].items() if s != "all" and tt == t)
            out[name]["all", "rest", t] = out[name]["all", "whole model", t] - parts_sum
    return Attribution(mode, batch, out)


def dense_backbone(name: str, size: tuple[int, int]) -> nn.Module:
    """``bench_dense``'s ``features_only`` backbone of ``name`` at ``size``: hpx with covering kernels."""
    from benchmarks.bench_dense import ROWS

    return ROWS[DENSE_ROWS[name]].build(*size)


def format_attribution(att: Attribution, threads: Sequence[int]) -> str:
    """Markdown table: per stage and part, ms of each model at each thread count, the two-thread speedup, and the
    hpx - ConvFormer difference at the last thread count."""
    lo, hi = threads[0], threads[-1]
    header = ["stage", "part"]
    for name in (HPX, CONV):
        header += [f"{name} {t}t ms" for t in threads] + [f"{name} speedup {lo}->{hi}t"]
    header.append(f"hpx - conv at {hi}t ms")
    rows = []
    stages = [str(s) for s in range(1, 5)] + ["all"]
    for stage in stages:
        parts = PARTS if stage != "all" else ("rest", "whole model")
        for part in parts:
            cells: list[str] = [stage, part]
            have = False
            for name in (HPX, CONV):
                vals = [att.times[name].get((stage, part, t)) for t in threads]
                have |= any(v is not None for v in vals)
                cells += [f"{1000 * v:.1f}" if v is not None else "-" for v in vals]
                a, b = vals[0], vals[-1]
                cells.append(f"{a / b:.2f}x" if a is not None and b and b > 0 else "-")
            h, c = att.times[HPX].get((stage, part, hi)), att.times[CONV].get((stage, part, hi))
            cells.append(f"{1000 * ((h or 0.0) - (c or 0.0)):+.1f}")
            if have:
                rows.append(cells)
    return markdown_table(header, rows)


# ---- targets ----


@dataclass(frozen=True)
class Target:
    """One target of issue 24: the ratio hpx / ConvFormer must be at most ``limit``."""

    name: str
    limit: float
    threads: int
    hpx_s: float
    conv_s: float
    ratio: tuple[float, float, float]  # low, median, high of the per-round ratios


def _ratio_target(name: str, limit: float, threads: int, hpx: Fn, conv: Fn, warmup: int, rounds: int) -> Target:
    raw = timed_rounds({"hpx": (threads, hpx), "conv": (threads, conv)}, warmup, rounds)
    ratios = [h / c for h, c in zip(raw["hpx"], raw["conv"])]
    hpx_s, conv_s = statistics.median(raw["hpx"]), statistics.median(raw["conv"])
    return Target(name, limit, threads, hpx_s, conv_s, median_interval(ratios))


def targets_224(
    eval_batch: int, train_batch: int, img: int, threads: Sequence[int], warmup: int, rounds: int
) -> list[Target]:
    """Eval (batch ``eval_batch``, kernel caches on) and training step (``train_batch``) at ``img`` px."""
    hpx, conv = create_model(HPX), create_model(CONV)
    set_cache_enabled(hpx, True)
    xe = torch.randn(eval_batch, 3, img, img)
    xt = torch.randn(train_batch, 3, img, img)
    yt = torch.randint(0, 1000, (train_batch,))

    def ev(m: nn.Module) -> None:
        m.eval()
        with torch.no_grad():
            m(xe)

    out = []
    for t in threads:
        limit = 1.15 if t == 2 else float("nan")
        out.append(
            _ratio_target(
                f"eval b{eval_batch} {img} px", limit, t, partial(ev, hpx), partial(ev, conv), max(1, warmup), rounds
            )
        )
    for t in threads:
        steps = []
        for m in (hpx, conv):
            m.train()
            steps.append(partial(_train_step, m, torch.optim.AdamW(m.parameters(), lr=1e-4), xt, yt))
        limit = 1.35 if t == 2 else float("nan")
        out.append(_ratio_target(f"train step b{train_batch} {img} px", limit, t, *steps, warmup, rounds))
    return out


def target_dense(size: tuple[int, int], threads: int, warmup: int, rounds: int) -> Target:
    """The ``features_only`` training step at ``size`` with covering kernels against ConvFormer (batch 1)."""
    from benchmarks.bench_dense import train_step

    x = torch.randn(1, 3, *size)
    hpx, conv = dense_backbone(HPX, size), dense_backbone(CONV, size)
    name = f"train step {size[0]}x{size[1]} covering kernels b1"
    return _ratio_target(name, 1.4, threads, train_step(hpx, x), train_step(conv, x), warmup, rounds)


def target_memory(batch: int, img: int, threads: int) -> Target:
    """Training peak RSS above the post-setup baseline, each model in a fresh process (``bench_mixer``'s method)."""
    from benchmarks.bench_mixer import measure_train_memory

    mib = {n: measure_train_memory(n, batch, img, 2, threads)["peak_above_baseline_mib"] for n in (HPX, CONV)}
    r = mib[HPX] / mib[CONV]
    return Target(f"training peak memory b{batch} {img} px (MiB)", 1.2, threads, mib[HPX], mib[CONV], (r, r, r))


def format_targets(targets: Sequence[Target], rounds: int) -> str:
    rows = []
    for t in targets:
        memory = "memory" in t.name
        lo, med, hi = t.ratio
        a = f"{t.hpx_s:.0f}" if memory else f"{1000 * t.hpx_s:.1f}"
        b = f"{t.conv_s:.0f}" if memory else f"{1000 * t.conv_s:.1f}"
        limit = "-" if t.limit != t.limit else f"<= {t.limit:.2f}x"
        met = "-" if t.limit != t.limit else ("yes" if hi <= t.limit else ("no" if lo > t.limit else "not certain"))
        interval = "-" if memory else f"[{lo:.2f}, {hi:.2f}]"
        rows.append([t.name, t.threads, a, b, f"**{med:.2f}x**", interval, limit, met])
    header = ["target", "threads", f"{HPX} ms", f"{CONV} ms", "ratio (median)", "95 % interval", "limit", "met"]
    return markdown_table(header, rows) + (
        f"\n\n(times: medians over {rounds} interleaved rounds; ratio: median of the per-round ratios, interval: "
        "distribution-free 95 % interval of that median (the whole range below 6 rounds); met: the whole interval "
        "within the limit; memory: MiB above the post-setup RSS, one fresh process per model)"
    )


# ---- dispatch: Python threads or one loop ----


@contextlib.contextmanager
def _spread_from(plane: float, taps: float) -> Iterator[None]:
    """The sizes from which the FFT convolution (padded plane) and the implicit filter (kernel taps) spread their
    blocks over Python threads, set for the ``with`` block (0: always, inf: never) and restored after it."""
    from hyenapixel.ops import fftconv, implicit

    saved = fftconv.THREADS_FROM_PLANE, implicit.THREADS_FROM_TAPS
    fftconv.THREADS_FROM_PLANE, implicit.THREADS_FROM_TAPS = plane, taps
    try:
        yield
    finally:
        fftconv.THREADS_FROM_PLANE, implicit.THREADS_FROM_TAPS = saved


def _in_setting(fn: Fn, plane: float, taps: float) -> Fn:
    def run() -> None:
        with _spread_from(plane, taps):
            fn()

    return run


def dispatch_ops(model: nn.Module, batch: int, size: tuple[int, int]) -> dict[str, tuple[Fn, bool]]:
    """Per stage, the long convolution (a fresh kernel, forward and both gradients; and the eval forward from the
    kernel's spectrum) and the implicit filter (forward and backward) of the first mixer of ``model`` on a ``batch``
    of its feature maps for ``size`` input, each with whether the library spreads it over threads."""
    from hyenapixel.mixers import HyenaPixelMixer
    from hyenapixel.ops import apply_spectrum, conv_fresh_kernel, fftconv, implicit, kernel_spectrum, plan_conv2d

    ops: dict[str, tuple[Fn, bool]] = {}
    firsts: dict[int, HyenaPixelMixer] = {}  # the first mixer of each stage (the stages' widths differ)
    for m in model.modules():
        if isinstance(m, HyenaPixelMixer):
            firsts.setdefault(m.filter.channels, m)
    for i, m in enumerate(firsts.values()):
        stride = 4 * 2**i
        h, w = -(-size[0] // stride), -(-size[1] // stride)
        kh, kw = m.filter.kernel_size
        full = plan_conv2d(h, w, kh, kw)
        u = torch.randn(batch, m.filter.channels, h, w, requires_grad=True)
        with torch.no_grad():
            k = m.kernel(full.taps).requires_grad_()
        plane = math.prod(full.fft_shape)
        region = m.filter.pos_emb[(slice(None), *full.taps)]  # the filter's input for these taps: (E, h, w)
        taps = region.shape[1] * region.shape[2]

        def conv(u: torch.Tensor = u, k: torch.Tensor = k, full=full) -> None:  # noqa: ANN001 - a ConvPlan
            torch.autograd.backward(conv_fresh_kernel(u, k, full.cropped()), _grad_like(u))

        with torch.no_grad():
            k_f = kernel_spectrum(k, full.cropped())
            u_eval = u.detach()

        def conv_eval(u: torch.Tensor = u_eval, k_f: torch.Tensor = k_f, full=full) -> None:  # noqa: ANN001
            with torch.no_grad():
                apply_spectrum(u, k_f, full.cropped())

        def kernel(m: HyenaPixelMixer = m, full=full) -> None:  # noqa: ANN001 - a ConvPlan
            m.zero_grad(set_to_none=True)
            out = m.kernel(full.taps)
            torch.autograd.backward(out, _grad_like(out))

        where = f"stage {i + 1} {batch} x {m.filter.channels} x {h} x {w}"
        # the library's own decisions, not a copy of their rule
        spread_conv, spread_filter = fftconv._spread(full), implicit._spread(region)
        ops[f"{where}, kernel {kh}: long conv (plane {plane})"] = (conv, spread_conv)
        ops[f"{where}, kernel {kh}: long conv, eval (plane {plane})"] = (conv_eval, spread_conv)
        ops[f"{where}, kernel {kh}: filter ({taps} taps)"] = (kernel, spread_filter)
    return ops


def dispatch(batch: int, img: int, dense: tuple[int, int], threads: int, warmup: int, rounds: int) -> list[list]:
    """Rows: op, ms on Python threads, ms as one loop, their ratio with its interval, the library's choice."""
    ops = dispatch_ops(create_model(HPX), batch, (img, img))
    ops |= dispatch_ops(dense_backbone(HPX, dense), 1, dense)
    rows = []
    for name, (fn, spread) in ops.items():
        settings = {"threads": _in_setting(fn, 0, 0), "loop": _in_setting(fn, math.inf, math.inf)}
        raw = timed_rounds({k: (threads, f) for k, f in settings.items()}, warmup, rounds, after_itself=True)
        lo, med, hi = median_interval([a / b for a, b in zip(raw["threads"], raw["loop"])])
        choice = "threads" if spread else "loop"
        t, p = (1000 * statistics.median(raw[k]) for k in ("threads", "loop"))
        rows.append([name, f"{t:.1f}", f"{p:.1f}", f"{med:.2f}x [{lo:.2f}, {hi:.2f}]", choice])
    return rows


# ---- command line ----


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--attribution", action="store_true", help="per stage and part at 1 and 2 threads (default)")
    p.add_argument(
        "--dense-attribution",
        action="store_true",
        help="the attribution of the training step at --dense-size (batch 1, features_only, covering kernels)",
    )
    p.add_argument("--targets", action="store_true", help="every target of issue 24 with its interval")
    p.add_argument("--dispatch", action="store_true", help="Python threads or one loop, per op and stage size")
    p.add_argument("--modes", default="eval,train", help="attribution: eval, train or both")
    p.add_argument("--threads", default=None, help="comma list (attribution default 1,2; targets default 2)")
    p.add_argument("--eval-batch", type=int, default=16)
    p.add_argument("--train-batch", type=int, default=8)
    p.add_argument("--img", type=int, default=224)
    p.add_argument("--dense-size", default="800x1333", help="HEIGHTxWIDTH of the dense training-step target")
    p.add_argument("--no-224", action="store_true", help="skip the 224-px eval and training-step targets")
    p.add_argument("--no-dense", action="store_true", help="skip the dense training-step target")
    p.add_argument("--no-memory", action="store_true", help="skip the training-memory target")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--rounds", type=int, default=7, help="timed rounds (default 7; dense target: 5)")
    p.add_argument("--quick", action="store_true", help="smoke run: 64 px, batch 2, 1 round, 64x96 dense")
    p.add_argument("--json", default=None, help="also write the results to this JSON file")
    args = p.parse_args(argv)
    if not (args.attribution or args.dense_attribution or args.targets or args.dispatch):
        args.attribution = True
    if args.quick:
        args.img, args.eval_batch, args.train_batch, args.rounds, args.warmup = 64, 2, 2, 1, 0
        args.dense_size, args.no_memory = "64x96", True
    return args


def main(argv: Sequence[str] | None = None) -> dict:
    args = parse_args(argv)
    results: dict = {"args": vars(args)}
    if args.attribution:
        threads = [int(t) for t in (args.threads or "1,2").split(",")]
        print(f"# {machine_info(max(threads))}")
        for mode in [m.strip() for m in args.modes.split(",") if m.strip()]:
            batch = args.eval_batch if mode == "eval" else args.train_batch
            t0 = time.perf_counter()
            att = attribution(mode, batch, args.img, threads, args.warmup, args.rounds)
            print(f"{mode} attribution done in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
            what = "eval forward" if mode == "eval" else "training step (parts: forward + backward)"
            print(
                f"\n{what}, batch {batch}, {args.img} px: wall ms per stage (block x depth), median of "
                f"{args.rounds} interleaved rounds\n"
            )
            print(format_attribution(att, threads))
            results[f"attribution_{mode}"] = att.as_json()
    if args.dense_attribution:
        threads = [int(t) for t in (args.threads or "1,2").split(",")]
        h, w = (int(v) for v in args.dense_size.split("x"))
        print(f"# {machine_info(max(threads))}")
        t0 = time.perf_counter()
        att = attribution("train", 1, args.img, threads, args.warmup, min(args.rounds, 5), dense=(h, w))
        print(f"dense attribution done in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
        print(
            f"\ntraining step (parts: forward + backward), batch 1, {h} x {w} px, features_only, hpx with covering "
            f"kernels: wall ms per stage (block x depth), median of {min(args.rounds, 5)} interleaved rounds\n"
        )
        print(format_attribution(att, threads))
        results["attribution_dense"] = att.as_json()
    if args.targets:
        threads = [int(t) for t in (args.threads or "2").split(",")]
        print(f"# {machine_info(max(threads))}")
        t0 = time.perf_counter()
        found = []
        if not args.no_224:
            found += targets_224(args.eval_batch, args.train_batch, args.img, threads, args.warmup, args.rounds)
        if not args.no_dense:
            h, w = (int(v) for v in args.dense_size.split("x"))
            found.append(target_dense((h, w), max(threads), args.warmup, min(args.rounds, 5)))
        if not args.no_memory:
            found.append(target_memory(args.train_batch, args.img, max(threads)))
        print(f"targets done in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
        print(f"\nIssue 24 targets: {HPX} / {CONV}, wall clock\n")
        print(format_targets(found, args.rounds))
        results["targets"] = [t.__dict__ for t in found]
    if args.dispatch:
        threads = max(int(t) for t in (args.threads or "2").split(","))
        print(f"# {machine_info(threads)}")
        h, w = (int(v) for v in args.dense_size.split("x"))
        t0 = time.perf_counter()
        rows = dispatch(args.train_batch, args.img, (h, w), threads, max(1, args.warmup), args.rounds)
        print(f"dispatch done in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
        print(f"\nForward + backward (eval: forward) at {threads} threads, ms (median of {args.rounds} rounds)\n")
        header = ["op (batch x channels x map)", "Python threads", "one loop", "threads / loop", "library"]
        print(markdown_table(header, rows))
        results["dispatch"] = rows
    return finish(results, args.json)


if __name__ == "__main__":
    main()
