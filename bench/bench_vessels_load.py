#!/usr/bin/env python3
"""Concurrent load under one EPC budget: naive vs EPC-aware scheduling (issue 4, Vessels' table).

C clients (default 8) send batch-1 requests back to back (one RA-TLS connection each, as the
baselines' one-request-per-enclave model has it) to `tenet serve --schedule POLICY --epc 93MiB
--max-enclaves 4`, for D seconds per policy, on the sim platform (INSECURE: the EPC is emulated;
paging costs real AES-GCM and page faults on this machine, not SGX's EWB/ELDU):

  naive      one enclave per concurrent connection up to 4, no bound, every weight loaded (memory
             resident): each enclave pages within an equal quarter of the budget (the baselines'
             behaviour; they thrash)
  epc-aware  enclaves admitted only while their EPC commits fit the budget; each runs one
             connection at a time; the rest wait in a FIFO queue in the relay. Enclaves in planned
             memory mode (default; --epc-aware-memory resident to isolate the scheduler) stream
             their weights so that each fits budget / 4: Vessels = scheduler + planned memory

Before measuring, every client sends one request (warm-up: naive starts its enclaves, both
policies compile). Reported per policy: throughput (req/s), p50/p99 latency, errors, EPC evictions
(EWB, whole host, during the measured window) and the pool the policy ran; then the ratio
epc-aware / naive. Prints "sim" beside every figure: not an SGX measurement.

Usage: .venv/bin/python bench/bench_vessels_load.py [--models resnet50,resnet18] [--seconds 30]
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "e2e"))
sys.path.insert(0, str(REPO / "python"))
from sched_util import SchedDeployment, drive, metric  # noqa: E402


def host_epc(dep, counter):
    v = metric(dep.scrape(), "tenet_host_epc", counter=counter)
    return v[0] if v else 0.0


def run_policy(dep, model, policy, args, x):
    t0 = time.time()
    extra = ("--ready-timeout", "900")
    memory = "resident"
    if policy == "epc-aware":
        extra += ("--streams-per-enclave", str(args.streams_per_enclave))
        memory = args.epc_aware_memory
    extra += ("--enclave-memory", memory)
    # Planned enclaves plan within bound / max-enclaves; where a model's plan cannot fit that share
    # (its largest layer's ring), allow fewer enclaves, each with a larger share.
    max_enclaves = args.max_enclaves
    while True:
        try:
            dep.start_scheduled(policy, args.epc, max_enclaves, extra=extra)
            break
        except RuntimeError as e:
            if memory != "planned" or max_enclaves == 1 or "does not fit" not in str(e):
                raise
            print(f"sim: {model} {policy}: planned mode does not fit {args.epc} / {max_enclaves}; "
                  f"trying {max_enclaves - 1} enclaves", flush=True)
            dep.stop_server()
            max_enclaves -= 1
    start_s = time.time() - t0
    try:
        dep.attest()
        warm = drive(dep, model, x, args.clients, requests_per_client=1)
        time.sleep(1.2)  # the enclaves' stats tick carries their EPC counters
        ev0, faults0 = host_epc(dep, "evictions"), host_epc(dep, "page_faults")
        res = drive(dep, model, x, args.clients, seconds=args.seconds)
        time.sleep(1.2)
        m = dep.scrape()
        ev = host_epc(dep, "evictions") - ev0
        faults = host_epc(dep, "page_faults") - faults0
        up = int(sum(metric(m, "tenet_enclave_up")))
        waits = metric(m, "tenet_sched_queue_wait_seconds_sum", policy=policy)
        count = metric(m, "tenet_sched_queue_wait_seconds_count", policy=policy)
        return {"policy": policy, "model": model, "rps": res.throughput, "p50_ms": res.percentile(50),
                "p99_ms": res.percentile(99), "requests": len(res.latencies_ms),
                "errors": len(res.errors) + len(warm.errors), "first_errors": (warm.errors + res.errors)[:3],
                "evictions": ev, "page_faults": faults, "enclaves": up, "schedule": dep.serving["schedule"],
                "mean_wait_ms": 1e3 * waits[0] / count[0] if waits and count and count[0] else 0.0,
                "start_s": start_s, "wall_s": res.wall_s, "memory": memory}
    finally:
        dep.stop_server()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="resnet50", help="comma-separated (cached ONNX exports)")
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--max-enclaves", type=int, default=4)
    ap.add_argument("--epc", default="93MiB")
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument("--threads", type=int, default=1, help="compute threads per enclave")
    ap.add_argument("--streams-per-enclave", type=int, default=1,
                    help="epc-aware: connections per admitted enclave at once (default 1, Vessels)")
    ap.add_argument("--epc-aware-memory", default="planned", choices=["planned", "resident"],
                    help="enclave memory mode under epc-aware (default planned: Vessels = scheduler + planned memory); "
                         "naive always runs the baselines' resident mode (every weight loaded)")
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args()
    results = []
    for model in args.models.split(","):
        with tempfile.TemporaryDirectory(prefix="tenet-vessels-load-") as tmp:
            dep = SchedDeployment(Path(tmp), model, threads=args.threads, max_batch=1)
            try:
                dep.prepare().start_keybroker()
                x = np.load(dep.reference.input)
                for policy in ("naive", "epc-aware"):
                    r = run_policy(dep, model, policy, args, x)
                    results.append(r)
                    print(f"sim: {model} {policy}: {json.dumps(r)}", flush=True)
            finally:
                dep.stop()
    print(f"\nconcurrent load, sim platform (INSECURE; emulated EPC {args.epc}), {args.clients} clients, "
          f"at most {args.max_enclaves} enclaves, {args.seconds:.0f} s per policy, {args.threads} thread(s) per enclave, "
          f"batch 1, epc-aware streams per enclave: {args.streams_per_enclave}")
    print("| model | policy | memory | enclaves | commit/enclave MiB | req/s (sim) | p50 ms | p99 ms | errors | evictions | "
          "page faults | mean queue wait ms |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['model']} | {r['policy']} | {r['memory']} | {r['enclaves']} | {r['schedule']['commit_bytes'] / 2**20:.1f} | "
              f"{r['rps']:.2f} | {r['p50_ms']:.0f} | {r['p99_ms']:.0f} | {r['errors']} | {r['evictions']:.0f} | "
              f"{r['page_faults']:.0f} | {r['mean_wait_ms']:.0f} |")
    for model in args.models.split(","):
        by = {r["policy"]: r for r in results if r["model"] == model}
        if by.get("naive", {}).get("rps"):
            print(f"sim: {model}: throughput epc-aware/naive = {by['epc-aware']['rps'] / by['naive']['rps']:.2f}x "
                  f"(bar >= 2x; Vessels: +195%)")
        for r in by.values():
            if r["first_errors"]:
                print(f"sim: {model} {r['policy']}: first errors: {r['first_errors']}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
