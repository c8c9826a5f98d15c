#!/usr/bin/env python3
"""Served hybrid throughput with and without dynamic batching (issue 5 item 5).

ResNet-18 at CIFAR size (32x32, random weights, bench/bench_hybrid.py's export) served in hybrid
mode by `tenet serve` (one sim enclave, its accelerator process started by the server; sim
platform: nothing here is hardware-protected), driven by C concurrent REST clients sending one
image each, for a fixed number of requests: once at batch 1 (no max_batch_size: today's default)
and once with max_batch_size B. The unblinding pool holds a term per request both ways, so
that no run computes W·r inline however the batches form (at B each term covers B images).

Measured (2-core host shared with other work, clients on the same cores; 1600 requests; run to
run noise about +-10%):
  pipeline_depth 1, max_queue_delay_us 10000: batch 1 185 img/s (p50 41 ms), max_batch_size 8
      254 img/s (p50 22 ms), 312 runs of 5.2 rows on average
  pipeline_depth 2, max_queue_delay_us 2000:  268 vs 318 img/s (p50 24 vs 13 ms)
  pipeline_depth 2, max_queue_delay_us 0:     285 vs 288 img/s (p50 23 vs 15 ms), mostly 1-2 rows a run
The model itself is not the bound here: `tenet run --mode hybrid --accelerator cpu` (accelerator
in process, no serving path) does 803 img/s at batch 1 and 1354 at batch 8 (pipeline 1); the rest
of the 2 cores goes to the clients, TLS, the host relay and the accelerator process.

Clients keep their TLS connection alive by default (--new-connections: one handshake per
request, as tenet_client does, which on a 2-core host costs more than the model).

Usage: .venv/bin/python bench/bench_hybrid_batching.py [--clients 8] [--batch 8] [--requests 800]
           [--delay-us 10000] [--pipeline-depth 1] [--new-connections]
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "e2e"))
sys.path.insert(0, str(REPO / "tests" / "models"))
sys.path.insert(0, str(REPO / "python"))
sys.path.insert(0, str(REPO / "bench"))
import export_models  # noqa: E402
from bench_serving import drive, percentile, run_workers  # noqa: E402
from hybrid_util import HybridDeployment  # noqa: E402
from tenet_client import TenetClient  # noqa: E402

TEE, HYBRID = "mobilenet_v3_small", "resnet18"


def drive_keepalive(dep, model: str, x: np.ndarray, clients: int, requests: int):
    """C clients, each on one kept-alive TLS connection (TenetClient opens one per request, whose
    handshake would dominate on this 2-core host), sending KServe binary requests until `requests`
    have been sent in all. Returns (latencies ms, errors, wall s)."""
    import http.client
    import ssl
    import threading
    import time
    raw = np.ascontiguousarray(x).tobytes()
    head = json.dumps({"inputs": [{"name": "input", "shape": list(x.shape), "datatype": "FP32",
                                   "parameters": {"binary_data_size": len(raw)}}],
                       "parameters": {"binary_data_output": True}}).encode()
    body = head + raw
    hdrs = {"Content-Type": "application/octet-stream", "Inference-Header-Content-Length": str(len(head))}
    ctx = ssl.create_default_context(cafile=str(dep.dir / "server.pem"))
    host, _, port = dep.http.rpartition(":")
    lat, errors, lock, left = [], [], threading.Lock(), [requests]

    def worker():
        conn = http.client.HTTPSConnection(host or "127.0.0.1", int(port), context=ctx, timeout=120)
        try:
            while True:
                with lock:
                    if left[0] <= 0:
                        return
                    left[0] -= 1
                t0 = time.perf_counter()
                try:
                    conn.request("POST", f"/v2/models/{model}/infer", body=body, headers=hdrs)
                    resp = conn.getresponse()
                    data = resp.read()
                    if resp.status != 200:
                        raise RuntimeError(f"HTTP {resp.status}: {data[:200]!r}")
                    with lock:
                        lat.append((time.perf_counter() - t0) * 1e3)
                except Exception as e:  # noqa: BLE001 - counted and reported
                    conn.close()
                    with lock:
                        errors.append(f"{type(e).__name__}: {e}")
        finally:
            conn.close()

    return lat, errors, run_workers(worker, clients)


def run(args, batch: int | None, pool: int, x: np.ndarray) -> dict:
    with tempfile.TemporaryDirectory(prefix="tenet-hbatch-") as tmp:
        dep = HybridDeployment(Path(tmp), TEE, HYBRID, enclaves=1, threads=args.threads, unblind_pool=pool,
                               max_batch_size=batch, max_queue_delay_us=args.delay_us if batch else None,
                               pipeline_depth=args.pipeline_depth)
        try:
            dep.prepare().start_keybroker().start_server()
            dep.attest()
            drive_keepalive(dep, HYBRID, x, args.clients, 2 * args.clients)  # warm-up
            if args.keepalive:
                lat, errors, wall = drive_keepalive(dep, HYBRID, x, args.clients, args.requests)
            else:
                lat, errors, wall = drive(dep, HYBRID, x, args.clients, 600, max_requests=args.requests)
            with TenetClient(dep.http, cert=str(dep.dir / "server.pem"), timeout=60) as c:
                _, _, body = c._request("GET", f"/v2/models/{HYBRID}/stats")
            st = next(m for m in json.loads(body)["model_stats"] if m["name"] == HYBRID)
            return {"max_batch_size": batch or 1, "images_per_s": len(lat) / wall, "p50_ms": percentile(lat, 50),
                    "p99_ms": percentile(lat, 99), "errors": len(errors), "requests": len(lat),
                    "executions": st["execution_count"], "inferences": st["inference_count"],
                    "batch_sizes": {b["batch_size"]: b["compute_infer"]["count"] for b in st["batch_stats"]},
                    "run_ms": {b["batch_size"]: round(b["compute_infer"]["ns"] / max(1, b["compute_infer"]["count"]) / 1e6, 2)
                               for b in st["batch_stats"]}}
        finally:
            dep.stop()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--requests", type=int, default=800)
    ap.add_argument("--delay-us", type=int, default=10000, help="max_queue_delay_us when batching")
    ap.add_argument("--threads", type=int, default=2, help="enclave threads")
    ap.add_argument("--side", type=int, default=32)
    ap.add_argument("--pipeline-depth", type=int, default=1, help="the manifest's pipeline_depth, both ways")
    ap.add_argument("--new-connections", dest="keepalive", action="store_false",
                    help="a new TLS connection per request (tenet_client.TenetClient) instead of kept-alive ones")
    args = ap.parse_args()
    from bench_hybrid import model_path
    onnx = model_path(HYBRID, args.side)
    orig_model, orig_ref = export_models.ensure_model, export_models.ensure_reference
    export_models.ensure_model = lambda name, *a, **k: onnx if name == HYBRID else orig_model(name, *a, **k)
    export_models.ensure_reference = lambda name, *a, **k: None if name == HYBRID else orig_ref(name, *a, **k)
    x = np.random.default_rng(0).standard_normal((1, 3, args.side, args.side)).astype(np.float32)
    warm = 2 * args.clients
    # As many terms as requests both ways (a batch of one still takes one B-image term per layer).
    pool = min(4096, args.requests + warm + 16)
    rows = [run(args, None, pool, x), run(args, args.batch, pool, x)]
    print(f"\nresnet18 {args.side}x{args.side} hybrid (verify_bits 40), {args.clients} clients x 1 image "
          f"({'kept-alive' if args.keepalive else 'new'} TLS connections), {args.requests} requests, pipeline_depth {args.pipeline_depth}, 1 sim enclave ({args.threads} threads), CPU accelerator, sim (INSECURE)")
    print("| max_batch_size | img/s | p50 ms | p99 ms | errors | runs | runs by rows carried | ms per run by rows |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['max_batch_size']} | {r['images_per_s']:.1f} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {r['errors']} | "
              f"{r['executions']} | {r['batch_sizes']} | {r['run_ms']} |")
    print(json.dumps(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
