#!/usr/bin/env python3
"""Vessels' table on this machine (issue 4): each model in one sim enclave (INSECURE) at an EPC
budget, naive memory (one buffer per activation) vs planned (one shared arena), against the plain
engine outside any enclave. Prints enclave memory allocated, peak EPC, page faults, evictions and
p50 latency. Same binary, same inputs, same threads, one run after another.

    .venv/bin/python bench/bench_vessels.py --models resnet50 alexnet --epc 93MiB --runs 3
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
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--tenet", default=str(REPO / "build" / "tenet"))
    args = ap.parse_args()
    print(f"sim enclave (INSECURE), EPC budget {args.epc}, {args.threads} threads, p50 of {args.runs} runs")
    print("| model | mode | enclave MiB allocated | peak EPC MiB | page faults | evictions | p50 ms | vs plain |")
    print("|---|---|---|---|---|---|---|---|")
    for name in args.models:
        ref = export_models.ensure_reference(name, 1)
        plain = run(args.tenet, ref, args.runs, args.threads, [])
        rows = [("plain engine", plain)]
        for mode in ("naive", "planned"):
            rows.append((mode, run(args.tenet, ref, args.runs, args.threads,
                                   ["--enclave", "sim", "--epc", args.epc, "--memory", mode])))
        for mode, r in rows:
            if "error" in r:
                print(f"| {name} | {mode} | error: {r['error']} |")
                continue
            ratio = r["latency_ms_p50"] / plain["latency_ms_p50"] if "latency_ms_p50" in plain else float("nan")
            print(f"| {name} | {mode} | {mib(r.get('allocated_bytes'))} | {mib(r.get('peak_epc_bytes'))} | "
                  f"{r.get('page_faults', '-')} | {r.get('evictions', '-')} | {r['latency_ms_p50']:.1f} | {ratio:.1f}x |")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
