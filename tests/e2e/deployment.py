"""A whole tenet deployment on loopback, driven through the `tenet` CLI as its users would.

    model owner:  tenet sim init (platform, sim only) · tenet seal · manifest · tenet measure ·
                  policies · tenet keybroker
    operator:     tenet serve (N enclaves on the sim platform, INSECURE)
    client:       tenet attest · tenet infer · curl / tritonclient with the pinned certificate

Used by the end-to-end tests (tests/e2e/test_serving.py) and by scripts/demo.sh, which runs
`python tests/e2e/deployment.py` to show the flow step by step. Every command is printed before it
runs (with --verbose) so the demo doubles as a walkthrough.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "models"))
sys.path.insert(0, str(REPO / "python"))
import export_models  # noqa: E402


def tenet_bin() -> str:
    env = os.environ.get("TENET_BIN")
    return str(Path(env).resolve()) if env else str(REPO / "build" / "tenet")


class Deployment:
    def __init__(self, workdir: Path, model: str = "mobilenet_v3_small", enclaves: int = 2, verbose: bool = False,
                 threads: int = 0, max_batch: int = 8, extra_models: tuple[str, ...] = (), debug: bool = False):
        self.dir = Path(workdir)
        self.model = model  # the first model; the attributes package/key/digest/reference are its
        self.models = [model, *extra_models]
        self.debug = debug  # a debug enclave: its quote says so, and policies refuse it unless allow_debug
        self.enclaves = enclaves
        self.verbose = verbose
        self.threads = threads
        self.max_batch = max_batch
        self.procs: list[subprocess.Popen] = []
        self.keybroker = None
        self.server = None

    # ---- helpers ----
    def log(self, msg: str):
        if self.verbose:
            print(f"deploy: {msg}", flush=True)

    def run(self, *args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
        cmd = [tenet_bin(), *args]
        self.log("$ " + " ".join(shlex.quote(str(a)) for a in ["tenet", *args]))
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
        return proc

    def start(self, *args: str, ready_timeout: float = 300) -> tuple[subprocess.Popen, dict]:
        """Starts a long-running tenet command and waits for its JSON ready line on stdout."""
        cmd = [tenet_bin(), *args]
        self.log("$ " + " ".join(shlex.quote(str(a)) for a in ["tenet", *args]) + " &")
        self.started = getattr(self, "started", 0) + 1
        log = open(self.dir / f"{args[0]}-{self.started}.log", "w")
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, text=True)
        self.procs.append(proc)
        deadline = time.time() + ready_timeout
        while time.time() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            line = line.strip()
            if line.startswith("{"):
                return proc, json.loads(line)
        proc.kill()
        raise RuntimeError(f"{args[0]} did not start; see {log.name}:\n{Path(log.name).read_text()[-3000:]}")

    # ---- the flow ----
    def prepare(self):
        """Model owner's side: platform, sealed packages, manifest, measurement, policies."""
        d = self.dir
        self.sim_dir = d / "sim-platform"
        self.run("sim", "init", "--dir", str(self.sim_dir))
        self.sealed = {}  # name -> (package, key, digest, reference)
        for name in self.models:
            onnx = export_models.ensure_model(name)
            ref = export_models.ensure_reference(name, 1)
            package, key = d / f"{name}.tenet", d / f"{name}.key"
            out = self.run("seal", str(onnx), "-o", str(package), "--key-out", str(key), "--name", name).stdout
            digest = json.loads([l for l in out.splitlines() if l.startswith("{")][-1])["package_digest"]
            self.sealed[name] = (package, key, digest, ref)
        self.package, self.key, self.digest, self.reference = self.sealed[self.model]
        self.manifest = d / "enclave.json"
        manifest = {"tenet_manifest": 1, "isv_prod_id": 1, "isv_svn": 1, "debug": self.debug, "mode": "tee",
                    "models": [{"name": name, "package_digest": self.sealed[name][2],
                                "key_resource": f"default/model/{name}",
                                "max_batch_size": self.max_batch, "max_queue_delay_us": 200} for name in self.models]}
        self.manifest.write_text(json.dumps(manifest, indent=2) + "\n")
        out = self.run("measure", "--binary", tenet_bin(), "--config", str(self.manifest)).stdout
        self.mrenclave = out.split()[0]
        assert len(self.mrenclave) == 64, out
        self.root = self.dir / "sim-root.pem"
        self.root.write_text(self.run("sim", "root-cert", "--dir", str(self.sim_dir)).stdout)
        self.policy = self.write_policy("policy.json")
        return self

    def write_policy(self, name: str, **overrides) -> Path:
        policy = {"mrenclave": [self.mrenclave], "allow_debug": False, "trusted_roots": [str(self.root)],
                  "model_digest": self.digest, "allow_insecure_sim": True}
        policy.update(overrides)
        path = self.dir / name
        path.write_text(json.dumps(policy, indent=2) + "\n")
        return path

    def start_keybroker(self, key: Path | None = None, policy: Path | None = None):
        keys = []
        for name in self.models:
            keys += ["--key", f"default/model/{name}={key or self.sealed[name][1]}"]
        self.keybroker, info = self.start("keybroker", "--listen", "127.0.0.1:0", "--policy", str(policy or self.policy),
                                          *keys)
        self.keybroker_url = f"http://127.0.0.1:{info['port']}"
        return self

    def start_server(self, package: Path | None = None, extra: tuple[str, ...] = ()):
        packages = []
        for name in self.models:
            packages += ["--package", f"{name}={package or self.sealed[name][0]}"]
        args = ["serve", "--manifest", str(self.manifest), *packages,
                "--keybroker", self.keybroker_url, "--sim-dir", str(self.sim_dir),
                "--identity-store", str(self.dir / "identity.sealed"), "--enclaves", str(self.enclaves),
                "--http", "127.0.0.1:0", "--grpc", "127.0.0.1:0", "--metrics", "127.0.0.1:0", *extra]
        if self.threads:
            args += ["--threads", str(self.threads)]
        self.server, info = self.start(*args)
        self.http = f"127.0.0.1:{info['http_port']}"
        self.grpc = f"127.0.0.1:{info['grpc_port']}"
        self.metrics_port = info["metrics_port"]
        return self

    def attest(self, policy: Path | None = None, save_cert: Path | None = None, check: bool = True):
        save_cert = save_cert or self.dir / "server.pem"
        return self.run("attest", self.http, "--policy", str(policy or self.policy), "--save-cert", str(save_cert),
                        "--json", check=check)

    def stop(self):
        for p in reversed(self.procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in reversed(self.procs):
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
        self.procs.clear()


def main() -> int:
    ap = argparse.ArgumentParser(description="Run a whole tenet deployment on loopback (sim platform, INSECURE) "
                                             "and query it from an attesting client.")
    ap.add_argument("--model", default="resnet18")
    ap.add_argument("--enclaves", type=int, default=2)
    ap.add_argument("--keep", action="store_true", help="keep serving until Ctrl-C")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="tenet-demo-") as tmp:
        dep = Deployment(Path(tmp), args.model, args.enclaves, verbose=True)
        try:
            dep.log(f"model owner: seal {args.model}, measure the enclave, write the policy")
            dep.prepare()
            dep.log(f"package digest {dep.digest}; MRENCLAVE {dep.mrenclave}")
            dep.start_keybroker()
            dep.log("operator: start the server (platform sim: INSECURE, no hardware protection)")
            dep.start_server()
            dep.log(f"serving on https://{dep.http} (REST) and {dep.grpc} (gRPC)")
            dep.log("client: attest the server against the policy, then infer")
            facts = json.loads(dep.attest().stdout.strip().splitlines()[-1])
            print(f"demo: attested: platform {facts['platform']}, MRENCLAVE {facts['mrenclave'][:16]}..., "
                  f"model digest {facts['model_digests'][0][:16]}..., debug {facts['debug']}", flush=True)
            out = dep.dir / "out"
            dep.run("infer", "--server", dep.http, "--policy", str(dep.policy), "--model", args.model,
                    "--input", f"input={dep.reference.input}", "--output-dir", str(out))
            port = dep.http.split(":")[1]
            dep.log(f"$ curl --cacert server.pem https://localhost:{port}/v2/models/{args.model}")
            meta = subprocess.run(["curl", "-sS", "--fail", "--cacert", str(dep.dir / "server.pem"),
                                   f"https://localhost:{port}/v2/models/{args.model}"], capture_output=True, text=True)
            print(f"demo: model metadata over the pinned certificate: {meta.stdout.strip()[:160]}")
            got = np.load(out / "output.npy")
            ref = np.load(dep.reference.output)
            err = float(np.abs(got - ref).max() / max(np.abs(ref).max(), 1e-6))
            print(f"demo: top-5 classes tenet {np.argsort(-got[0])[:5].tolist()}  pytorch {np.argsort(-ref[0])[:5].tolist()}")
            print(f"demo: max abs error relative to output scale: {err:.2e} (bound 1e-4)")
            if args.keep:
                print(f"demo: serving; try: curl --cacert {dep.dir}/server.pem https://localhost:{dep.http.split(':')[1]}/v2")
                signal.sigwait({signal.SIGINT, signal.SIGTERM})
            return 0 if err <= 1e-4 else 1
        finally:
            dep.stop()


if __name__ == "__main__":
    sys.exit(main())
