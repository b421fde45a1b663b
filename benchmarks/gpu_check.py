"""GPU checks and timings in one short run (for a lent accelerator; never part of the CPU test suite).

1. FFT ops on CUDA against a float64 direct convolution (fp32, fp16, bf16 inputs; odd, non-power-of-two sizes).
2. Official parity fixtures on CUDA (TF32 off) for the variants whose files are given.
3. A training step under autocast (bf16, and fp16 with a GradScaler) for hpx_former_s18 and hb_former_s18.
4. Eval kernel cache on/off for the four S18 HyenaPixel stage shapes.
5. Whole-model throughput against timm's convformer_s18 / caformer_s18 measured in the same run (ratios).

Usage, from the repository root: ``python -m benchmarks.gpu_check [--fixtures DIR] [--batch 64] [--out FILE]``
(the fixtures default to the vendored tests/fixtures/official).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path

import timm
import torch
import torch.nn.functional as F

import hyenapixel  # noqa: F401  (registers the models in timm)
from benchmarks.common import CLOCKS, STAGES, Stage, interleaved_medians, make_ours
from hyenapixel.ops import fftconv1d, fftconv1d_ref, fftconv2d, fftconv2d_ref

FIXTURES = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "official"


def check_ops(dev: str) -> dict:
    res = {}
    g = torch.Generator().manual_seed(0)
    for dtype in (torch.float32, torch.float16, torch.bfloat16):
        x = torch.randn(2, 6, 29, 37, generator=g)
        k = torch.randn(6, 57, 73, generator=g) / 50
        y = fftconv2d(x.to(dev, dtype), k.to(dev, dtype))
        assert y.dtype == dtype and y.device.type == "cuda"
        ref = fftconv2d_ref(x.to(dtype), k.to(dtype))  # exact for the rounded inputs
        res[f"fftconv2d_{dtype}"] = (y.double().cpu() - ref).abs().max().item() / ref.abs().max().item()
        x1 = torch.randn(2, 5, 301, generator=g)
        k1 = torch.randn(5, 601, generator=g) / 50
        for causal in (False, True):
            ref1 = fftconv1d_ref(x1.to(dtype), k1.to(dtype), causal=causal)
            y1 = fftconv1d(x1.to(dev, dtype), k1.to(dev, dtype), causal=causal)
            res[f"fftconv1d_{dtype}_causal{causal}"] = (
                y1.double().cpu() - ref1
            ).abs().max().item() / ref1.abs().max().item()
    return res


def check_parity(dev: str, fixtures: Path) -> dict:
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    ref = json.loads((fixtures / "reduced_models.json").read_text())
    inputs = torch.load(fixtures / "inputs.pt", weights_only=True)
    out = {}
    for name, r in ref.items():
        f = fixtures / r["state_dict"]
        if not f.exists():
            continue
        m = (
            timm.create_model(
                name, pretrained=True, depths=r["depths"], dims=r["dims"], pretrained_cfg_overlay=dict(file=str(f))
            )
            .to(dev)
            .eval()
        )
        with torch.no_grad():
            d = (m(inputs["x224"].to(dev)).cpu() - torch.tensor(r["logits_224"])).abs().max().item()
        out[name] = d
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    return out


def check_amp_train(dev: str) -> dict:
    out = {}
    for name in ("hpx_former_s18", "hb_former_s18"):
        for dtype in (torch.bfloat16, torch.float16):
            m = timm.create_model(name, num_classes=10).to(dev)
            opt = torch.optim.AdamW(m.parameters(), lr=1e-4)
            scaler = torch.amp.GradScaler("cuda", enabled=dtype == torch.float16)
            x = torch.randn(8, 3, 224, 224, device=dev)
            y = torch.randint(0, 10, (8,), device=dev)
            losses = []
            for _ in range(3):
                with torch.autocast("cuda", dtype=dtype):
                    loss = F.cross_entropy(m(x), y)
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()
                opt.zero_grad(set_to_none=True)
                losses.append(loss.item())
            out[f"{name}_{dtype}"] = losses
            assert all(torch.isfinite(torch.tensor(losses)))
    return out


def timeit(fn: Callable[[], object], warmup: int = 3, iters: int = 10) -> float:
    """Median seconds per call, the device synchronised around each call."""
    return interleaved_medians({"fn": fn}, warmup, iters, CLOCKS["cuda"])["fn"]


def _cache_one(dev: str, stage: Stage) -> dict:
    m = make_ours(stage).to(dev).eval()
    x = torch.randn(8, stage.size, stage.size, stage.dim, device=dev)
    with torch.no_grad():
        t_cached = timeit(lambda: m(x))
        m.spectrum_cache.enabled = False
        t_plain = timeit(lambda: m(x))
    return dict(cached_ms=t_cached * 1e3, uncached_ms=t_plain * 1e3, speedup=t_plain / t_cached)


def bench_cache(dev: str) -> dict:
    return {f"{s.dim}@{s.size}k{s.kernel}": _cache_one(dev, s) for s in STAGES.values()}


def _bench_model(name: str, dev: str, batch: int) -> dict:
    m = timm.create_model(name).to(dev)
    x = torch.randn(batch, 3, 224, 224, device=dev)
    y = torch.randint(0, 1000, (batch,), device=dev)
    opt = torch.optim.AdamW(m.parameters(), lr=1e-4)
    m.eval()
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
        t_eval = timeit(lambda: m(x))
    m.train()

    def step() -> None:
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = F.cross_entropy(m(x), y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    torch.cuda.reset_peak_memory_stats()
    t_train = timeit(step, warmup=2, iters=6)
    mem = torch.cuda.max_memory_allocated() / 2**30
    return dict(eval_img_s=batch / t_eval, train_img_s=batch / t_train, train_peak_gib=mem)


def bench_models(dev: str, batch: int) -> dict:
    out = {}
    for name in ("convformer_s18", "caformer_s18", "hpx_former_s18", "hb_former_s18"):
        out[name] = _bench_model(name, dev, batch)
        torch.cuda.empty_cache()
    base = out["convformer_s18"]
    for r in out.values():
        r["eval_time_vs_convformer"] = base["eval_img_s"] / r["eval_img_s"]
        r["train_time_vs_convformer"] = base["train_img_s"] / r["train_img_s"]
        r["peak_mem_vs_convformer"] = r["train_peak_gib"] / base["train_peak_gib"]
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--fixtures", type=Path, default=FIXTURES, help="folder with the official parity fixtures")
    p.add_argument("--batch", type=int, default=64, help="batch size for the whole-model timings")
    p.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    a = p.parse_args()
    dev = "cuda"
    res = dict(device=torch.cuda.get_device_name(), torch=torch.__version__, timm=timm.__version__)
    res["ops_rel_err"] = check_ops(dev)
    print(json.dumps(res, indent=1), flush=True)
    if a.fixtures:
        res["parity_max_abs"] = check_parity(dev, a.fixtures)
        print("parity", res["parity_max_abs"], flush=True)
    res["amp_losses"] = check_amp_train(dev)
    print("amp", res["amp_losses"], flush=True)
    res["cache"] = bench_cache(dev)
    print("cache", json.dumps(res["cache"], indent=1), flush=True)
    res["models"] = bench_models(dev, a.batch)
    print("models", json.dumps(res["models"], indent=1), flush=True)
    if a.out:
        a.out.write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
