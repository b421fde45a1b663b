"""The main job on a busy machine: training throughput of ``hyenapixel train``'s default model beside CPU-bound
processes, for several thread settings (the README's "busy machine" figures).

    .venv/bin/python -m benchmarks.bench_busy                      # 0, 1 and 2 busy processes, 3 rounds
    .venv/bin/python -m benchmarks.bench_busy --busy 0 2 --rounds 5 --seconds 8
    .venv/bin/python -m benchmarks.bench_busy --command               # the whole `hyenapixel train` command

Each measurement is a fresh process (thread settings such as ``OMP_WAIT_POLICY`` act when torch starts) that
trains the default model (``hpx_former_s4``, dims 16/32/64/128, kernels 15/7/3/1, 32 px, batch 64, AdamW) on
random images for a fixed time after a warm-up and prints images per second. The busy processes are pure-Python
loops, one core each, started before and stopped after every measurement. Rounds interleave the settings, so a
change of the machine's own load hits all of them alike; the table gives the median over rounds and each setting's
ratio to the idle default of the same round.

``--command`` times the whole default job instead: ``hyenapixel train`` on its built-in task (2 epochs of
``--train-samples`` images, data loading included) as a user runs it, once as it is ("auto": it switches to passive
waiting when it finds the machine busy at start) and once with spinning forced (``OMP_WAIT_POLICY=ACTIVE``). The
figure is the second epoch's images per second from the run's ``metrics.csv``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence

from benchmarks.common import machine_info, markdown_table

#: The settings compared: name -> environment variables and ``torch.set_num_threads`` value (None: torch's default).
SETTINGS: dict[str, tuple[dict[str, str], int | None]] = {
    "default": ({}, None),
    "passive": ({"OMP_WAIT_POLICY": "PASSIVE"}, None),
    "1 thread": ({}, 1),
}

_WORKER = """
import json, sys, time, torch, timm, hyenapixel
threads, seconds = json.loads(sys.argv[1]), float(sys.argv[2])
if threads:
    torch.set_num_threads(threads)
torch.manual_seed(0)
model = timm.create_model("hpx_former_s4", num_classes=2, dims=(16, 32, 64, 128), kernel_sizes=(15, 7, 3, 1))
opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
x, y = torch.randn(64, 3, 32, 32), torch.randint(0, 2, (64,))
def step():
    loss = torch.nn.functional.cross_entropy(model(x), y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
for _ in range(3):
    step()
n, t0 = 0, time.perf_counter()
while time.perf_counter() - t0 < seconds:
    step()
    n += 1
print(json.dumps({"images_per_s": 64 * n / (time.perf_counter() - t0), "threads": torch.get_num_threads()}))
"""


#: The settings of ``--command``: name -> environment variables of the ``hyenapixel train`` process.
COMMAND_SETTINGS: dict[str, dict[str, str]] = {"auto": {}, "spinning": {"OMP_WAIT_POLICY": "ACTIVE"}}


def measure_command(setting: str, busy: int, train_samples: int) -> float:
    """Second-epoch images per second of one ``hyenapixel train`` run with ``busy`` CPU-bound processes beside it."""
    import csv
    import tempfile

    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(busy)]
    try:
        time.sleep(0.5 if busy else 0.0)
        with tempfile.TemporaryDirectory() as tmp:
            argv = ["--epochs", "2", "--train-samples", str(train_samples), "--val-samples", "256"]
            subprocess.run(
                [sys.executable, "-m", "hyenapixel", "train", *argv, "--progress", "none", "--output", f"{tmp}/run"],
                capture_output=True,
                text=True,
                env={**env, **COMMAND_SETTINGS[setting]},
                check=True,
            )
            with open(f"{tmp}/run/metrics.csv", newline="") as f:
                rows = list(csv.DictReader(f))
    finally:
        for s in spinners:
            s.kill()
            s.wait()
    return float(rows[-1]["images_per_s"])


def measure(setting: str, busy: int, seconds: float) -> float:
    """Images per second of one fresh training process with ``busy`` CPU-bound processes beside it."""
    env_vars, threads = SETTINGS[setting]
    spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(busy)]
    try:
        time.sleep(0.5 if busy else 0.0)
        proc = subprocess.run(
            [sys.executable, "-c", _WORKER, json.dumps(threads), str(seconds)],
            capture_output=True,
            text=True,
            env={**os.environ, **env_vars},
            check=True,
        )
    finally:
        for s in spinners:
            s.kill()
            s.wait()
    return float(json.loads(proc.stdout.strip().splitlines()[-1])["images_per_s"])


def main(argv: Sequence[str] | None = None) -> dict[str, dict[int, list[float]]]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--busy", type=int, nargs="+", default=[0, 1, 2], help="busy processes beside the job")
    p.add_argument(
        "--settings",
        nargs="+",
        default=None,
        help=f"step settings {list(SETTINGS)} (--command: {list(COMMAND_SETTINGS)}); default: all",
    )
    p.add_argument("--command", action="store_true", help="time the whole `hyenapixel train` command instead")
    p.add_argument("--train-samples", type=int, default=4000, help="--command: training images per epoch")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds (median reported)")
    p.add_argument("--seconds", type=float, default=6.0, help="timed training per measurement")
    p.add_argument("--json", metavar="PATH", help="also write every measurement here")
    args = p.parse_args(argv)
    known = COMMAND_SETTINGS if args.command else SETTINGS
    args.settings = args.settings or list(known)
    unknown = [s for s in args.settings if s not in known]
    if unknown:
        p.error(f"--settings: unknown {unknown}; choose from {list(known)}")
    results: dict[str, dict[int, list[float]]] = {s: {b: [] for b in args.busy} for s in args.settings}
    for r in range(args.rounds):
        for busy in args.busy:
            for setting in args.settings:
                if args.command:
                    ips = measure_command(setting, busy, args.train_samples)
                else:
                    ips = measure(setting, busy, args.seconds)
                results[setting][busy].append(ips)
                print(f"round {r + 1}/{args.rounds}: {setting:<9} busy {busy}: {ips:7.1f} img/s", file=sys.stderr)
    reference = "auto" if args.command else "default"
    base = results[reference][min(args.busy)] if reference in results else None
    print(f"# {machine_info(os.cpu_count() or 1)} (threads: per setting)")
    head = ["setting", *[f"busy {b}: img/s (of idle {reference})" for b in args.busy], "per round"]
    rows = []
    for setting, by_busy in results.items():
        cells = []
        for busy in args.busy:
            med = statistics.median(by_busy[busy])
            ratio = f" ({med / statistics.median(base):.2f})" if base else ""
            cells.append(f"{med:.0f}{ratio}")
        per_round = "; ".join(f"busy {b}: " + "/".join(f"{v:.0f}" for v in by_busy[b]) for b in args.busy)
        rows.append([setting, *cells, per_round])
    print(markdown_table(head, rows))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return results


if __name__ == "__main__":
    main()
