#!/usr/bin/env python3
"""REST (binary tensor data, TLS) throughput of `tenet kserve` vs the engine run directly.

    TENET_BIN=build/tenet .venv/bin/python tests/serving/bench_kserve.py --model resnet18 --clients 8 --seconds 20

Starts `tenet kserve` on loopback with a fresh self-signed certificate, runs N client threads
(keep-alive HTTPS connections, batch-1 binary requests) for a fixed time, and prints throughput and
p50/p99 latency next to `tenet run --bench` on the same model and thread count. Client and server
share the machine's cores, so on small machines the ratio understates the server.
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import ssl
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
TENET = os.environ.get("TENET_BIN", str(REPO / "build" / "tenet"))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="resnet18")
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--threads", type=int, default=0, help="engine threads (0: all cores)")
    ap.add_argument("--max-batch", type=int, default=8)
    ap.add_argument("--batch-delay-us", type=int, default=0)
    args = ap.parse_args()
    model = REPO / ".cache" / "models" / f"{args.model}.onnx"
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        cert, key = d / "c.pem", d / "k.pem"
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                        "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=localhost",
                        "-addext", "subjectAltName=DNS:localhost"], check=True, capture_output=True)
        x = np.random.default_rng(0).standard_normal((1, 3, 224, 224), dtype=np.float32)
        np.save(d / "x.npy", x)
        direct = subprocess.run([TENET, "run", str(model), "--input", f"input={d / 'x.npy'}", "--output-dir", str(d),
                                 "--threads", str(args.threads), "--bench", "50", "--quiet"],
                                check=True, capture_output=True, text=True)
        direct_p50 = json.loads(direct.stdout.strip().splitlines()[-1])["latency_ms_p50"]

        proc = subprocess.Popen([TENET, "kserve", "--model", f"m={model}", "--http", "127.0.0.1:0", "--grpc", "",
                                 "--tls-cert", str(cert), "--tls-key", str(key), "--threads", str(args.threads),
                                 "--max-batch", str(args.max_batch), "--batch-delay-us", str(args.batch_delay_us),
                                 "--max-queue", "1024"], stdout=subprocess.PIPE, text=True)
        port = json.loads(proc.stdout.readline())["http_port"]
        header = json.dumps({"inputs": [{"name": "input", "shape": [1, 3, 224, 224], "datatype": "FP32",
                                          "parameters": {"binary_data_size": x.nbytes}}],
                             "parameters": {"binary_data_output": True}}).encode()
        body = header + x.tobytes()
        hdrs = {"Inference-Header-Content-Length": str(len(header)), "Content-Type": "application/octet-stream"}
        ctx = ssl.create_default_context(cafile=str(cert))
        latencies: list[float] = []
        errors = [0]
        lock = threading.Lock()
        stop_at = time.time() + args.seconds

        def client() -> None:
            conn = http.client.HTTPSConnection("localhost", port, context=ctx, timeout=60)
            mine = []
            while time.time() < stop_at:
                t0 = time.perf_counter()
                try:
                    conn.request("POST", "/v2/models/m/infer", body=body, headers=hdrs)
                    r = conn.getresponse()
                    r.read()
                    ok = r.status == 200
                except OSError:
                    ok = False
                    conn = http.client.HTTPSConnection("localhost", port, context=ctx, timeout=60)
                if ok:
                    mine.append((time.perf_counter() - t0) * 1e3)
                else:
                    with lock:
                        errors[0] += 1
            with lock:
                latencies.extend(mine)

        t_start = time.time()
        threads = [threading.Thread(target=client) for _ in range(args.clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.time() - t_start
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        lat = np.array(latencies)
        rest_tput = len(lat) / elapsed
        direct_tput = 1000.0 / direct_p50
        print(f"{'path':<28}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}")
        print(f"{'engine direct (tenet run)':<28}{direct_tput:>10.1f}{direct_p50:>10.2f}{'':>10}")
        print(f"{f'REST binary TLS, {args.clients} clients':<28}{rest_tput:>10.1f}{np.percentile(lat, 50):>10.2f}"
              f"{np.percentile(lat, 99):>10.2f}")
        print(f"ratio REST/direct: {rest_tput / direct_tput:.2f}   errors: {errors[0]}   requests: {len(lat)}")


if __name__ == "__main__":
    main()
