"""A deployment that serves some models in hybrid mode (issue 5 item 6), for tests/e2e/test_hybrid_serving.py.

HybridDeployment is tests/e2e/deployment.py's Deployment with per-model modes in the manifest: after
the usual preparation (seal, manifest, measure, policy) it rewrites the manifest's entries of the
hybrid models ("mode": "hybrid", verify_bits, a small unblinding pool, optionally pipeline_depth;
hybrid models run batch 1 unless max_batch_size is given, then they batch dynamically)
and measures the enclave again, so that MRENCLAVE and the client policy cover the modes. `tenet
serve` then starts the accelerator itself (--accelerator auto); the serving line it prints is kept
in `serving_info` (its "accelerator" entry has the accelerator's pid, its "modes" the modes).
"""
from __future__ import annotations

import json
import threading
from pathlib import Path

from deployment import Deployment, tenet_bin


class HybridDeployment(Deployment):
    def __init__(self, workdir: Path, tee_model: str, hybrid_model: str, verify_bits: int = 40, unblind_pool: int = 2,
                 pipeline_depth: int | None = None, max_batch_size: int | None = None,
                 max_queue_delay_us: int | None = None, **kwargs):
        super().__init__(workdir, tee_model, extra_models=(hybrid_model,), **kwargs)
        self.tee_model, self.hybrid_model = tee_model, hybrid_model
        self.verify_bits, self.unblind_pool, self.pipeline_depth = verify_bits, unblind_pool, pipeline_depth
        self.max_batch_size, self.max_queue_delay_us = max_batch_size, max_queue_delay_us
        self.serving_info: dict = {}

    def prepare(self):
        super().prepare()
        manifest = json.loads(self.manifest.read_text())
        for entry in manifest["models"]:
            if entry["name"] == self.hybrid_model:
                entry.pop("max_batch_size", None)
                entry.update({"mode": "hybrid", "verify_bits": self.verify_bits, "unblind_pool": self.unblind_pool})
                if self.pipeline_depth is not None:
                    entry["pipeline_depth"] = self.pipeline_depth
                if self.max_batch_size is not None:
                    entry["max_batch_size"] = self.max_batch_size
                if self.max_queue_delay_us is not None:
                    entry["max_queue_delay_us"] = self.max_queue_delay_us
        self.manifest.write_text(json.dumps(manifest, indent=2) + "\n")
        out = self.run("measure", "--binary", tenet_bin(), "--config", str(self.manifest)).stdout
        self.mrenclave = out.split()[0]
        assert len(self.mrenclave) == 64, out
        self.policy = self.write_policy("policy.json")
        return self

    def start(self, *args: str, ready_timeout: float = 300):
        proc, info = super().start(*args, ready_timeout=ready_timeout)
        if args and args[0] == "serve":
            self.serving_info = info
        return proc, info

    def serve_args(self, *extra: str) -> list[str]:
        """The arguments of a `tenet serve` for this deployment (for runs expected to fail)."""
        packages = []
        for name in self.models:
            packages += ["--package", f"{name}={self.sealed[name][0]}"]
        return ["serve", "--manifest", str(self.manifest), *packages, "--keybroker", getattr(self, "keybroker_url", "http://127.0.0.1:1"),
                "--sim-dir", str(self.sim_dir), "--identity-store", str(self.dir / "identity-other.sealed"),
                "--http", "127.0.0.1:0", "--grpc", "127.0.0.1:0", "--metrics", "127.0.0.1:0", *extra]


def run_concurrently(client, n: int) -> dict:
    """Runs client(i) for i in 0..n-1 on n threads at once; result i is what it returned or the
    exception it raised (the caller asserts on each)."""
    results: dict[int, object] = {}

    def run(i: int):
        try:
            results[i] = client(i)
        except Exception as e:  # noqa: BLE001 - handed to the caller
            results[i] = e

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results
