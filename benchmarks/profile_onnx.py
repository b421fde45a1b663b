"""Where onnxruntime spends its time in the exported models (docs/deploy.md, "Speed"): the per-node profile of
onnxruntime's CPU provider, summed per operator type, per model part and per stage, for ``hpx_former_s18`` (paper
Section 3) and timm's ``convformer_s18`` at 224 px.

Each model is exported with :func:`hyenapixel.export.to_onnx` (random weights moved off their initial
scales of 1 and shifts of 0, :func:`benchmarks.common.trained_like`, as trained weights are) and
run ``--runs`` times after one warm-up run in a session with ``SessionOptions.enable_profiling``, the models'
runs interleaved. Every profiled node
is attributed to the PyTorch module it came from through the exporter's ``pkg.torch.onnx.name_scopes`` metadata
(nodes that onnxruntime renamed while fusing keep their original name as a prefix; its layout changes
``ReorderInput``/``ReorderOutput`` have no module and are counted as "layout"). The parts:

* ``long conv``: the frozen long convolutions (``token_mixer.frozen_conv``);
* ``mixer proj``: the mixers' pointwise projections (``in_proj``/``out_proj``, convformer's ``pwconv1``/``pwconv2``);
* ``mixer dwconv``: the short depthwise convolutions (``short_conv``, convformer's ``dwconv``);
* ``mixer norms``, ``mixer rest`` (gating products, split, activations inside the mixer), ``mlp``, ``block norms``
  (``norm1``/``norm2``), ``residual`` (res-scale and the residual adds), ``stem/downsample/head``, ``layout``.

The nodes inside an ONNX ``Scan`` (the long convolutions that :class:`hyenapixel.export.PerImage` runs image by
image) count for the Scan's part and stage with their own operator; the Scan itself counts only for the time they
leave (its per-image slicing and stacking).

Times are the sums of the nodes' kernel times (``dur``) in ms per image; with intra-op threads they are close to
the wall time of a run (onnxruntime runs the nodes one after another). Run ``python -m benchmarks.profile_onnx``
from the repository root; ``--json PATH`` writes every table.
"""

from __future__ import annotations

import argparse
import ast
import collections
import json
import os
import re
import tempfile
from collections.abc import Sequence
from functools import partial

import numpy as np
import torch

import hyenapixel  # noqa: F401 - registers the models in timm
from benchmarks.common import interleaved_medians, machine_info, markdown_table, trained_like, write_json
from hyenapixel.export import onnx_session, to_onnx

#: (part, regular expression on the module path inside a block or stage), first match wins
PARTS = (
    ("long conv", r"token_mixer\.frozen_conv"),
    ("mixer proj", r"token_mixer\.(in_proj|out_proj|pwconv1|pwconv2)"),
    ("mixer dwconv", r"token_mixer\.(short_conv|dwconv)"),
    ("mixer norms", r"token_mixer\.(qk_norm|out_norm)"),
    ("mixer rest", r"token_mixer"),
    ("mlp", r"mlp"),
    ("block norms", r"norm[12]"),
    ("residual", r"res_scale|^blocks\.\d+$"),
    ("stem/downsample/head", r"stem|downsample|head|^norm$"),
)
LAYOUT_OPS = ("ReorderInput", "ReorderOutput")
PAUSE = 0.2  # seconds of sleep before each run (see benchmarks/bench_export.py --pause)


def module_scopes(path: str) -> dict[str, list[str]]:
    """ONNX node name (and the FX node name it came from) -> the module path of ``pkg.torch.onnx.name_scopes``."""
    import onnx

    scopes: dict[str, list[str]] = {}
    for node in onnx.load(path, load_external_data=False).graph.node:
        meta = {p.key: p.value for p in node.metadata_props}
        scope = ast.literal_eval(meta["pkg.torch.onnx.name_scopes"]) if "pkg.torch.onnx.name_scopes" in meta else []
        scopes[node.name] = scope
        fx = re.match(r"%(\w+) ", meta.get("pkg.torch.onnx.fx_node", ""))
        if fx:
            scopes.setdefault(fx.group(1), scope)
            scopes.setdefault(f"node_{fx.group(1)}", scope)
    return scopes


def classify(name: str, op: str, scopes: dict[str, list[str]]) -> tuple[str, str]:
    """(stage, part) of the profiled node ``name`` with operator ``op``."""
    if op in LAYOUT_OPS:
        return "-", "layout"
    base = re.sub(r"(_nchwc|/.*|_token_\d+)$", "", name)
    scope = scopes.get(base) or scopes.get(f"node_{base}")
    if not scope:
        return "-", "other"
    stage = next((s for s in scope if re.fullmatch(r"stages\.\d+", s)), None)
    stage = stage or (scope[1].split(".")[0] if len(scope) > 1 else "-")
    inner = re.sub(r"^stages\.\d+\.(blocks\.(?=\d+\.))?", "", scope[-2] if len(scope) > 1 else scope[-1])
    inner = re.sub(r"^\d+\.", "", inner)
    if op == "Conv" and re.search(r"token_mixer\.act", inner):
        return stage, "mixer proj"  # a 1x1 convolution fused with the activation after it keeps the latter's name
    part = next((p for p, pattern in PARTS if re.search(pattern, inner)), "other")
    return stage, part


def profile(
    paths: dict[str, str], batch: int, img: int, runs: int, threads: int
) -> dict[str, dict[str, dict[str, float]]]:
    """Per model: ms per image summed per op type, part, stage and (part, op) over ``runs`` profiled runs after a
    warm-up, the models' runs interleaved round-robin (so a change of machine load affects all alike)."""
    sessions = {
        name: onnx_session(path, threads, profile_prefix=os.path.join(os.path.dirname(path), f"ort_profile_{name}"))
        for name, path in paths.items()
    }
    x = np.random.default_rng(0).standard_normal((batch, 3, img, img), np.float32)
    calls = {name: partial(s.run, None, {s.get_inputs()[0].name: x}) for name, s in sessions.items()}
    walls = interleaved_medians(calls, 1, runs, pause=PAUSE)  # one warm-up run, which _summarise skips
    out = {}
    for name, session in sessions.items():
        with open(session.end_profiling()) as f:
            out[name] = _summarise(json.load(f), module_scopes(paths[name]), runs, batch)
        out[name]["total"]["wall"] = walls[name] * 1e3 / batch
    return out


def _summarise(events: list[dict], scopes: dict[str, list[str]], runs: int, batch: int) -> dict[str, dict[str, float]]:
    first_timed = sorted(e["ts"] for e in events if e.get("name") == "model_run")[1]  # the first run: warm-up
    sums: dict[str, dict[str, float]] = {k: collections.defaultdict(float) for k in ("op", "part", "stage", "part_op")}
    scale = 1e-3 / (runs * batch)  # us summed over runs -> ms per image
    nodes = [
        e for e in events if e.get("cat") == "Node" and e["name"].endswith("_kernel_time") and e["ts"] >= first_timed
    ]
    # a Scan's body nodes (hyenapixel.export.PerImage) are profiled inside the Scan's own event: they count for the
    # Scan's stage and part with their own operator, and the Scan only for the time its body nodes do not cover
    scans = [e for e in nodes if e["args"]["op_name"] == "Scan"]
    inner = {id(scan): [e for e in nodes if e is not scan and _within(e, scan)] for scan in scans}
    parent = {id(e): scan for scan in scans for e in inner[id(scan)]}
    for e in nodes:
        op = e["args"]["op_name"]
        owner = parent.get(id(e), e)
        stage, part = classify(owner["name"][: -len("_kernel_time")], owner["args"]["op_name"], scopes)
        dur = e["dur"] - sum(i["dur"] for i in inner.get(id(e), []))
        for key, label in (("op", op), ("part", part), ("stage", stage), ("part_op", f"{part} | {op}")):
            sums[key][label] += dur * scale
    out = {k: dict(sorted(v.items(), key=lambda kv: -kv[1])) for k, v in sums.items()}
    out["total"] = {"nodes": sum(sums["op"].values())}
    return out


def _within(event: dict, outer: dict) -> bool:
    return outer["ts"] <= event["ts"] and event["ts"] + event["dur"] <= outer["ts"] + outer["dur"]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="hpx_former_s18,convformer_s18", help="comma list; the last is the reference")
    p.add_argument("--img", type=int, default=224)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--runs", type=int, default=5, help="profiled runs of each model after one warm-up run")
    p.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    p.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict:
    import timm

    args = parse_args(argv)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    print(f"# {machine_info(args.threads)}; img {args.img}; batch {args.batch}", flush=True)
    with tempfile.TemporaryDirectory() as workdir:
        paths = {}
        for name in models:
            torch.manual_seed(0)
            model = trained_like(timm.create_model(name).eval())
            paths[name] = str(to_onnx(model, os.path.join(workdir, f"{name}.onnx"), args.img))
        results = profile(paths, args.batch, args.img, args.runs, args.threads)
        print(f"# profiled: {machine_info(args.threads)}", flush=True)
    ref = models[-1]
    for key in ("part", "op", "stage"):
        labels = list(dict.fromkeys(label for m in models for label in results[m][key]))
        rows = [[label, *(f"{results[m][key].get(label, 0.0):.2f}" for m in models)] for label in labels]
        rows.append(["total (nodes)", *(f"{results[m]['total']['nodes']:.2f}" for m in models)])
        rows.append(["wall time of a run", *(f"{results[m]['total']['wall']:.2f}" for m in models)])
        print(f"\nms per image by {key}, batch {args.batch}, reference {ref}")
        print(markdown_table([key, *models], rows))
    if args.json:
        write_json(args.json, results)
    return results


if __name__ == "__main__":
    main()
