#!/usr/bin/env python3
"""Serving benchmarks for issue 3 (sim platform: nothing here is hardware-protected).

  throughput  resnet50 batch 1 over REST (binary tensors) at C concurrent clients through
              `tenet serve`, against the engine run directly in one process (`tenet run --bench`)
              on the same machine in the same run; prints p50/p99 and the ratio (bar: >= 0.9).
  load        C clients (default 64) for D seconds on a small model: errors, p50/p99, throughput.
  attest      server-side attestation cost per new client session: with report reuse (the
              enclave's one quote, amortized) against the TEMPER baseline of one quote (key pair +
              quote + certificate, timed by build/src/attest/bench_attest) per session, next to the
              measured end-to-end cost of a new TLS session plus one request.

Usage: .venv/bin/python bench/bench_serving.py [throughput|load|attest|all] [--clients N] [--seconds S]
"""
from __future__ import annotations

import argparse
import json
import os
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "e2e"))
sys.path.insert(0, str(REPO / "python"))
from deployment import Deployment, tenet_bin  # noqa: E402
from tenet_client import TenetClient  # noqa: E402


def percentile(xs, q):
    return float(np.percentile(np.asarray(xs), q)) if xs else float("nan")


def drive(dep: Deployment, model: str, x: np.ndarray, clients: int, seconds: float, max_requests: int | None = None):
    lat, errors = [], []
    lock = threading.Lock()
    stop_at = time.time() + seconds
    count = [0]

    def worker():
        with TenetClient(dep.http, cert=str(dep.dir / "server.pem"), timeout=120) as c:
            while time.time() < stop_at:
                with lock:
                    if max_requests is not None and count[0] >= max_requests:
                        return
                    count[0] += 1
                t0 = time.perf_counter()
                try:
                    c.infer(model, {"input": x})
                    with lock:
                        lat.append((time.perf_counter() - t0) * 1e3)
                except Exception as e:  # noqa: BLE001 - every failure is counted and reported
                    with lock:
                        errors.append(f"{type(e).__name__}: {e}")

    return lat, errors, run_workers(worker, clients)


def run_workers(worker, clients: int) -> float:
    """Runs `worker` on `clients` threads at once; the wall time in seconds until all have returned."""
    threads = [threading.Thread(target=worker) for _ in range(clients)]
    t0 = time.time()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.time() - t0


def engine_direct(dep: Deployment, runs: int, threads: int) -> float:
    out = dep.dir / "direct"
    res = subprocess.run([tenet_bin(), "run", str(dep.reference.model), "--input", f"input={dep.reference.input}",
                          "--output-dir", str(out), "--bench", str(runs), "--quiet", "--threads", str(threads)],
                         capture_output=True, text=True, check=True)
    return json.loads(res.stdout.strip().splitlines()[-1])["latency_ms_p50"]


def bench_throughput(args):
    with tempfile.TemporaryDirectory(prefix="tenet-bench-") as tmp:
        dep = Deployment(Path(tmp), args.model, enclaves=1, threads=args.threads, max_batch=args.max_batch)
        try:
            dep.prepare().start_keybroker().start_server()
            dep.attest()
            x = np.load(dep.reference.input)
            drive(dep, args.model, x, 2, 3)  # warm-up: compiles the batch sizes the batcher forms
            lat, errors, wall = drive(dep, args.model, x, args.clients, args.seconds)
            served = len(lat) / wall
            direct_ms = engine_direct(dep, 20, args.threads)
            direct = 1e3 / direct_ms
            print(f"\nthroughput: {args.model} batch-1 requests, REST binary, {args.clients} clients, {args.seconds:.0f} s, "
                  f"1 enclave, sim platform (INSECURE)")
            print("| path | req/s | p50 ms | p99 ms | errors |")
            print("|---|---|---|---|---|")
            print(f"| tenet serve (RA-TLS, relay, batching) | {served:.2f} | {percentile(lat, 50):.1f} | "
                  f"{percentile(lat, 99):.1f} | {len(errors)} |")
            print(f"| engine direct (tenet run, one process) | {direct:.2f} | {direct_ms:.1f} | - | - |")
            print(f"ratio served/direct: {served / direct:.3f} (bar >= 0.9)")
            if errors:
                print("first errors:", errors[:3])
            return {"served_rps": served, "direct_rps": direct, "ratio": served / direct, "errors": len(errors)}
        finally:
            dep.stop()


def bench_load(args):
    with tempfile.TemporaryDirectory(prefix="tenet-load-") as tmp:
        dep = Deployment(Path(tmp), args.load_model, enclaves=2, threads=1)
        try:
            dep.prepare().start_keybroker().start_server()
            dep.attest()
            x = np.load(dep.reference.input)
            lat, errors, wall = drive(dep, args.load_model, x, args.load_clients, args.seconds,
                                      max_requests=args.max_requests)
            print(f"\nload: {args.load_model}, {args.load_clients} concurrent clients, {wall:.0f} s, 2 enclaves, sim (INSECURE)")
            print(f"requests {len(lat)}, errors {len(errors)}, throughput {len(lat) / wall:.1f} req/s, "
                  f"p50 {percentile(lat, 50):.1f} ms, p99 {percentile(lat, 99):.1f} ms")
            if errors:
                print("first errors:", errors[:3])
            return {"requests": len(lat), "errors": len(errors)}
        finally:
            dep.stop()


def bench_attest(args):
    """Per-session server-side attestation cost, reuse vs one quote per session."""
    with tempfile.TemporaryDirectory(prefix="tenet-attest-") as tmp:
        dep = Deployment(Path(tmp), args.load_model, enclaves=1, threads=1)
        try:
            dep.prepare().start_keybroker().start_server()
            cert = dep.dir / "server.pem"
            dep.attest(save_cert=cert)
            # Sessions with reuse: full TLS handshakes (no resumption) + a health call each.
            ctx = ssl.create_default_context(cafile=str(cert))
            import http.client
            n = args.sessions
            t0 = time.perf_counter()
            for _ in range(n):
                conn = http.client.HTTPSConnection("localhost", int(dep.http.split(":")[1]), context=ctx, timeout=10)
                conn.request("GET", "/v2/health/ready")
                conn.getresponse().read()
                conn.close()
            per_session_ms = (time.perf_counter() - t0) / n * 1e3
            bench_attest = Path(tenet_bin()).parent / "src" / "attest" / "bench_attest"
            out = subprocess.run([str(bench_attest)], capture_output=True, text=True, check=True).stdout
            line = [l for l in out.splitlines() if l.startswith("one RA-TLS identity")][0]
            quote_ms = float(line.split()[-1]) / 1e3
            print(f"\nattestation per new client session ({n} sessions, sim platform, INSECURE)")
            print("| server-side attestation work per session | ms |")
            print("|---|---|")
            print(f"| one quote per session (TEMPER baseline: key pair + quote + certificate) | {quote_ms:.3f} |")
            print(f"| report reuse: amortized one quote over {n} sessions | {quote_ms / n:.4f} |")
            print(f"ratio reuse/baseline: {1 / n:.4f} after {n} sessions (bar <= 0.01); "
                  f"end-to-end new session + request with reuse: {per_session_ms:.2f} ms, "
                  f"baseline would add {quote_ms:.2f} ms")
            return {"quote_ms": quote_ms, "session_ms": per_session_ms}
        finally:
            dep.stop()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", nargs="?", default="all", choices=["throughput", "load", "attest", "all"])
    ap.add_argument("--model", default="resnet50")
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--threads", type=int, default=0, help="engine threads (default: all cores)")
    ap.add_argument("--max-batch", type=int, default=8)
    ap.add_argument("--load-model", default="mobilenet_v3_small")
    ap.add_argument("--load-clients", type=int, default=64)
    ap.add_argument("--max-requests", type=int, default=None, help="bound the load test's request count")
    ap.add_argument("--sessions", type=int, default=200)
    args = ap.parse_args()
    if args.what in ("throughput", "all"):
        bench_throughput(args)
    if args.what in ("load", "all"):
        bench_load(args)
    if args.what in ("attest", "all"):
        bench_attest(args)


if __name__ == "__main__":
    main()
