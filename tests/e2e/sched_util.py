"""Helpers for the EPC-scheduling tests and benchmark: a Deployment whose server runs under
`tenet serve --schedule ...`, a Prometheus scrape parser, and concurrent clients that open one
connection (one request stream) per request, as tenet_client does.

The platform is sim: nothing here is hardware-protected (INSECURE).
"""
from __future__ import annotations

import re
import threading
import time
import urllib.request
from dataclasses import dataclass, field

import numpy as np

from deployment import Deployment

_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([^}]*)\})?\s+(\S+)$')


def parse_metrics(text: str) -> list[tuple[str, dict, float]]:
    """Prometheus text exposition -> [(name, labels, value)]."""
    out = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE.match(line.strip())
        if not m:
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(3) or ""))
        out.append((m.group(1), labels, float(m.group(4))))
    return out


def metric(samples, name: str, **labels) -> list[float]:
    return [v for n, l, v in samples if n == name and all(l.get(k) == w for k, w in labels.items())]


class SchedDeployment(Deployment):
    """A deployment served by `tenet serve --schedule POLICY --epc BUDGET ...` (no --enclaves)."""

    def start_scheduled(self, policy: str, epc: str, max_enclaves: int, bound: str | None = None,
                        extra: tuple[str, ...] = ()):
        packages = []
        for name in self.models:
            packages += ["--package", f"{name}={self.sealed[name][0]}"]
        args = ["serve", "--manifest", str(self.manifest), *packages,
                "--keybroker", self.keybroker_url, "--sim-dir", str(self.sim_dir),
                "--identity-store", str(self.dir / "identity.sealed"),
                "--http", "127.0.0.1:0", "--grpc", "127.0.0.1:0", "--metrics", "127.0.0.1:0",
                "--schedule", policy, "--epc", epc, "--max-enclaves", str(max_enclaves), *extra]
        if bound:
            args += ["--epc-bound", bound]
        if self.threads:
            args += ["--threads", str(self.threads)]
        self.server, self.serving = self.start(*args)
        self.http = f"127.0.0.1:{self.serving['http_port']}"
        self.grpc = f"127.0.0.1:{self.serving['grpc_port']}"
        self.metrics_port = self.serving["metrics_port"]
        return self

    def scrape(self):
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        return parse_metrics(urllib.request.urlopen(url, timeout=5).read().decode())

    def stop_server(self):
        """Stops only the server (the key broker keeps running for the next one)."""
        import signal
        if self.server is not None and self.server.poll() is None:
            self.server.send_signal(signal.SIGTERM)
            self.server.wait(timeout=30)
        self.procs = [p for p in self.procs if p is not self.server]
        self.server = None


@dataclass
class LoadResult:
    latencies_ms: list = field(default_factory=list)
    errors: list = field(default_factory=list)
    wall_s: float = 0.0
    completions: list = field(default_factory=list)  # (client, finish time)

    def percentile(self, q):
        return float(np.percentile(np.asarray(self.latencies_ms), q)) if self.latencies_ms else float("nan")

    @property
    def throughput(self):
        return len(self.latencies_ms) / self.wall_s if self.wall_s else 0.0


def drive(dep: Deployment, model: str, x: np.ndarray, clients: int, seconds: float | None = None,
          requests_per_client: int | None = None, timeout: float = 600, on_tick=None,
          tick_s: float = 0.5) -> LoadResult:
    """`clients` threads, each sending requests back to back (a new TLS connection per request)
    for `seconds` or `requests_per_client` requests. on_tick() is called about every tick_s."""
    from tenet_client import TenetClient
    res = LoadResult()
    lock = threading.Lock()
    stop_at = time.time() + seconds if seconds else None
    done = threading.Event()

    def worker(i):
        c = TenetClient(dep.http, cert=str(dep.dir / "server.pem"), timeout=timeout)
        n = 0
        while (stop_at is None or time.time() < stop_at) and (requests_per_client is None or n < requests_per_client):
            n += 1
            t0 = time.perf_counter()
            try:
                c.infer(model, {"input": x})
                with lock:
                    res.latencies_ms.append((time.perf_counter() - t0) * 1e3)
                    res.completions.append((i, time.time()))
            except Exception as e:  # noqa: BLE001 - every failure is counted and reported
                with lock:
                    res.errors.append(f"{type(e).__name__}: {e}")

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    t0 = time.time()
    for t in threads:
        t.start()
    ticker = None
    if on_tick is not None:
        def tick():
            while not done.wait(tick_s):
                on_tick()
        ticker = threading.Thread(target=tick, daemon=True)
        ticker.start()
    for t in threads:
        t.join()
    res.wall_s = time.time() - t0
    done.set()
    if ticker:
        ticker.join()
    return res
