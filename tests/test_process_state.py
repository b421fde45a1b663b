"""The library leaves the process as it found it: importing it registers no optimizer hook, starts no thread and
changes no thread count, matplotlib backend or environment variable; the calls that need a setting for a while
(``hyenapixel bench --threads``, the built-in dense run, the blocked CPU paths) restore it. The kernel-spectrum cache
hooks optimizer steps only once it has stored a spectrum, and still sees a fused optimizer's step then.

Import effects are checked in a fresh interpreter, since this test session has long imported everything.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

# torch keeps the global optimizer hooks in private registries; no public API lists them.
STATE = """
import json, os, threading
import matplotlib
matplotlib.use("svg")  # not the library's Agg: a backend it must leave alone
import torch
import timm  # a dependency (it sets TORCHINDUCTOR_CACHE_DIR on import): the baseline, not the library's doing
from torch.optim import optimizer as _optimizer

torch.set_num_threads(3)

def state():
    return {
        "optimizer hooks": len(_optimizer._global_optimizer_pre_hooks) + len(_optimizer._global_optimizer_post_hooks),
        "torch threads": torch.get_num_threads(),
        "matplotlib backend": matplotlib.get_backend(),
        "environment": dict(os.environ),
        "threads": sorted(t.name for t in threading.enumerate()),
    }
"""


def _run(code: str) -> dict:
    res = subprocess.run(
        [sys.executable, "-c", STATE + textwrap.dedent(code)], capture_output=True, text=True, timeout=300
    )
    assert res.returncode == 0, res.stderr[-3000:]
    return json.loads(res.stdout.strip().splitlines()[-1])


def test_importing_the_library_changes_no_process_state() -> None:
    out = _run(
        """
        before = state()
        import hyenapixel
        import hyenapixel.models
        import hyenapixel.analysis
        print(json.dumps({"before": before, "after": state()}))
        """
    )
    assert out["after"] == out["before"]
    assert out["before"]["torch threads"] == 3 and out["before"]["matplotlib backend"] == "svg"  # the probe works


def test_the_cache_hooks_optimizers_on_first_use_and_sees_a_fused_step() -> None:
    out = _run(
        """
        import copy
        from hyenapixel.mixers import HyenaPixelMixer

        torch.manual_seed(0)
        m = HyenaPixelMixer(8, 9, 8).eval()
        x = torch.randn(2, 4, 4, 8)
        hooks = [state()["optimizer hooks"]]
        opt = torch.optim.AdamW(m.parameters(), lr=1e-2, fused=True)
        m(x).square().sum().backward()  # grad enabled: the cache is not used
        opt.step()
        hooks.append(state()["optimizer hooks"])
        with torch.no_grad():
            first = m(x)  # the first cached spectrum
        hooks.append(state()["optimizer hooks"])
        opt.zero_grad()
        m(x).square().sum().backward()
        version = m.filter.pos_emb._version
        opt.step()  # fused, in eval: no version counter moves
        with torch.no_grad():
            got, want = m(x), copy.deepcopy(m)(x)  # a copy starts with an empty cache
            HyenaPixelMixer(8, 9, 8).eval()(x)  # a second mixer: no second hook
        hooks.append(state()["optimizer hooks"])
        print(json.dumps({
            "hooks": hooks,
            "version unchanged": m.filter.pos_emb._version == version,
            "fresh": torch.equal(got, want),
            "changed": not torch.equal(got, first),
        }))
        """
    )
    h = out["hooks"]
    assert h[1] == h[0] and h[2] == h[3] == h[0] + 1, h
    assert out["version unchanged"]  # the case the hook is for
    assert out["fresh"] and out["changed"]


def test_blocked_cpu_paths_restore_the_thread_count_and_start_threads_only_when_used() -> None:
    out = _run(
        """
        from hyenapixel.ops.parallel import parallel_map

        before = state()
        with torch.no_grad():  # blocks run threaded only where autograd does not record
            inside = parallel_map(lambda i: torch.get_num_threads(), range(6))
        print(json.dumps({"before": before, "after": state(), "inside": inside}))
        """
    )
    assert out["inside"] == [1] * 6  # each block on one intra-op thread while they run side by side ...
    assert out["after"]["torch threads"] == out["before"]["torch threads"] == 3  # ... and the count restored
    started = set(out["after"]["threads"]) - set(out["before"]["threads"])
    assert not any(name.startswith("hyenapixel") for name in out["before"]["threads"])  # none on import
    assert started and all(name.startswith("hyenapixel-blocks") for name in started)  # the pool, on first use


@pytest.mark.slow
def test_the_builtin_dense_run_restores_threads_and_leaves_pyplot_alone(tmp_path: Path) -> None:
    pytest.importorskip("segmentation_models_pytorch")
    import matplotlib
    import matplotlib.pyplot as plt

    from hyenapixel.dense.builtin import DenseRunConfig, run_builtin

    threads, backend, figures = torch.get_num_threads(), matplotlib.get_backend(), plt.get_fignums()
    cfg = DenseRunConfig(
        dims=(8, 8, 16, 16),
        image_size=32,
        train_samples=4,
        val_samples=2,
        epochs=1,
        batch_size=2,
        decoder_channels=8,
        threads=1 if threads > 1 else 2,
        output=str(tmp_path / "run"),
    )
    summary = run_builtin(cfg)
    assert summary["torch_threads"] == cfg.threads
    assert (tmp_path / "run" / "predictions.png").stat().st_size > 0
    assert (torch.get_num_threads(), matplotlib.get_backend(), plt.get_fignums()) == (threads, backend, figures)
