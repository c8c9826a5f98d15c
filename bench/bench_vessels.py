#!/usr/bin/env python3
"""Vessels' single-prediction table on this machine (issue 4): each model in one sim enclave
(INSECURE: no hardware) at an EPC budget, naive memory (all weights loaded, kernel copies, one
buffer per activation: the baselines) vs planned (one shared arena, weights streamed from sealed
untrusted memory into a bounded ring, large linear layers tiled), against the plain engine outside
any enclave. Same binary, inputs and threads, one run after another.

Columns: peak EPC = enclave memory committed at the peak of the runs after the first (what it needs
resident never to page; Vessels' "peak EPC"); faults / evictions = secure paging during those
runs; load peak = the same during loading (import, compile) and the first run.

    .venv/bin/python bench/bench_vessels.py --models resnet50 vgg16 --epc 93MiB --runs 5
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "models"))
import export_models  # noqa: E402

DEFAULT_MODELS = ["resnet50", "resnet101", "resnet152", "densenet201", "inception_v3", "vgg16", "alexnet"]


def run(tenet: str, ref, runs: int, threads: int, extra: list[str]) -> dict:
    with tempfile.TemporaryDirectory() as out:
        res = subprocess.run([tenet, "run", str(ref.model), "--input", f"input={ref.input}", "--output-dir", out,
                              "--quiet", "--threads", str(threads), "--bench", str(runs), "--warmup", "1", *extra],
                             capture_output=True, text=True, timeout=3600)
    if res.returncode != 0:
        return {"error": res.stderr.strip()[-200:]}
    return json.loads(res.stdout.strip().splitlines()[-1])


def mib(x) -> str:
    return f"{x / 2**20:.1f}" if isinstance(x, (int, float)) else "-"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=DEFAULT_MODELS)
    ap.add_argument("--epc", default="93MiB")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--fill-models", nargs="*", default=["resnet152", "vgg16"],
                    help="also run these in planned mode with --loading-overhead 0: as many weights resident as the budget "
                         "holds (the fastest plan and the largest footprint), the other end of the trade the default plan "
                         "makes (resident only as needed to keep loading within 20%% of the predicted compute time)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--tenet", default=str(REPO / "build" / "tenet"))
    args = ap.parse_args()
    print(f"sim enclave (INSECURE), EPC budget {args.epc}, {args.threads} threads, p50 of {args.runs} runs after 1 warm-up")
    print("| model | mode | peak EPC MiB | load peak MiB | faults | evictions | streamed MiB/run | p50 ms | vs plain |")
    print("|---|---|---|---|---|---|---|---|---|")
    summary = []
    store = None
    for name in args.models:
        ref = export_models.ensure_reference(name, 1)
        plain = run(args.tenet, ref, args.runs, args.threads, [])
        rows = {"plain engine": plain}
        for mode in ("naive", "planned"):
            rows[mode] = run(args.tenet, ref, args.runs, args.threads, ["--enclave", "sim", "--epc", args.epc, "--memory", mode])
        if name in args.fill_models:
            rows["planned, fill"] = run(args.tenet, ref, args.runs, args.threads,
                                        ["--enclave", "sim", "--epc", args.epc, "--memory", "planned", "--loading-overhead", "0"])
        for mode, r in rows.items():
            if "error" in r:
                print(f"| {name} | {mode} | error: {r['error']} |")
                continue
            ratio = r["latency_ms_p50"] / plain["latency_ms_p50"] if "latency_ms_p50" in plain else float("nan")
            streamed = r.get("streaming", {}).get("streamed_weight_bytes")
            print(f"| {name} | {mode} | {mib(r.get('peak_epc_bytes'))} | {mib(r.get('load', {}).get('peak_epc_bytes'))} | "
                  f"{r.get('page_faults', '-')} | {r.get('evictions', '-')} | {mib(streamed)} | {r['latency_ms_p50']:.1f} | "
                  f"{ratio:.2f}x |")
        store = store or rows["planned"].get("streaming", {}).get("store")
        if all("error" not in r for r in rows.values()):
            n, p = rows["naive"], rows["planned"]
            for key in [k for k in rows if k.startswith("planned")]:
                p = rows[key]
                summary.append((f"{name} ({key})", 100.0 * (1 - p["peak_epc_bytes"] / n["peak_epc_bytes"]), n["evictions"],
                                p["evictions"], p["latency_ms_p50"] / plain["latency_ms_p50"],
                                n["latency_ms_p50"] / plain["latency_ms_p50"]))
        sys.stdout.flush()
    print()
    if store:
        print(f"streamed weights come from: {store}")
    print("| model | peak EPC reduction (planned vs naive) | evictions naive -> planned | planned / plain | naive / plain |")
    print("|---|---|---|---|---|")
    for name, red, ne, pe, pr, nr in summary:
        print(f"| {name} | {red:.1f}% | {ne} -> {pe} | {pr:.2f}x | {nr:.1f}x |")


if __name__ == "__main__":
    main()
