"""End to end: key broker, `tenet serve` with two sim enclaves, and real clients on loopback.

Outputs must equal the engine's for the same model and inputs; every attack must fail cleanly and
leave the server serving. The platform is sim: nothing here is hardware-protected.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import ssl
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from deployment import Deployment, tenet_bin

MODEL = "mobilenet_v3_small"
SECOND = "squeezenet1_0"  # several models per server


@pytest.fixture(scope="module")
def dep(tmp_path_factory):
    d = Deployment(tmp_path_factory.mktemp("deploy"), MODEL, enclaves=2, threads=1, extra_models=(SECOND,))
    try:
        d.prepare().start_keybroker().start_server()
        d.attest()
        yield d
    finally:
        d.stop()


def engine_output(dep, tmp_path) -> np.ndarray:
    out = tmp_path / "engine"
    subprocess.run([tenet_bin(), "run", str(dep.reference.model), "--input", f"input={dep.reference.input}",
                    "--output-dir", str(out), "--quiet"], check=True, capture_output=True)
    return np.load(out / "output.npy")


def assert_close(got, want, what):
    err = float(np.abs(got - want).max() / max(np.abs(want).max(), 1e-6))
    assert err <= 1e-5, f"{what}: max relative error {err:.2e}"


def server_alive(dep):
    from tenet_client import TenetClient
    with TenetClient(dep.http, cert=str(dep.dir / "server.pem")) as c:
        assert c.ready()


def test_attest_reports_sim_as_insecure(dep):
    facts = json.loads([l for l in dep.attest().stdout.splitlines() if l.startswith("{")][-1])
    assert facts["mrenclave"] == dep.mrenclave
    assert "INSECURE" in facts["platform"]


def test_tenet_infer_matches_engine_and_torch(dep, tmp_path):
    out = tmp_path / "served"
    dep.run("infer", "--server", dep.http, "--policy", str(dep.policy), "--model", MODEL,
            "--input", f"input={dep.reference.input}", "--output-dir", str(out))
    got = np.load(out / "output.npy")
    assert_close(got, engine_output(dep, tmp_path), "tenet infer vs tenet run")
    ref = np.load(dep.reference.output)
    assert float(np.abs(got - ref).max() / np.abs(ref).max()) <= 1e-4


def test_second_model_served_by_the_same_enclaves(dep, tmp_path):
    package, key, digest, ref = dep.sealed[SECOND]
    facts = json.loads([l for l in dep.attest().stdout.splitlines() if l.startswith("{")][-1])
    assert sorted(facts["model_digests"]) == sorted(v[2] for v in dep.sealed.values())
    out = tmp_path / "second"
    dep.run("infer", "--server", dep.http, "--policy", str(dep.policy), "--model", SECOND,
            "--input", f"input={ref.input}", "--output-dir", str(out))
    got, want = np.load(out / "output.npy"), np.load(ref.output)
    assert float(np.abs(got - want).max() / np.abs(want).max()) <= 1e-4


def test_python_client(dep, tmp_path):
    from tenet_client import TenetClient
    x = np.load(dep.reference.input)
    with TenetClient(dep.http, policy=str(dep.policy)) as c:
        assert c.attestation["mrenclave"] == dep.mrenclave
        meta = c.metadata(MODEL)
        assert meta["name"] == MODEL
        got = c.infer(MODEL, {"input": x})["output"]
    assert_close(got, engine_output(dep, tmp_path), "python client")


def test_curl_with_pinned_certificate(dep, tmp_path):
    port = dep.http.split(":")[1]
    cert = str(dep.dir / "server.pem")
    meta = subprocess.run(["curl", "-sS", "--fail", "--cacert", cert, f"https://localhost:{port}/v2/models/{MODEL}"],
                          capture_output=True, text=True, check=True)
    assert json.loads(meta.stdout)["name"] == MODEL
    x = np.load(dep.reference.input)
    body = {"inputs": [{"name": "input", "shape": list(x.shape), "datatype": "FP32", "data": x.ravel().tolist()}]}
    req = tmp_path / "req.json"
    req.write_text(json.dumps(body))
    res = subprocess.run(["curl", "-sS", "--fail", "--cacert", cert, "-H", "Content-Type: application/json",
                          "--data-binary", f"@{req}", f"https://localhost:{port}/v2/models/{MODEL}/infer"],
                         capture_output=True, text=True, check=True)
    out = json.loads(res.stdout)["outputs"][0]
    got = np.asarray(out["data"], dtype=np.float32).reshape(out["shape"])
    assert_close(got, engine_output(dep, tmp_path), "curl JSON")
    # Without the pinned certificate curl refuses the enclave's self-signed RA-TLS certificate.
    bad = subprocess.run(["curl", "-sS", f"https://localhost:{port}/v2"], capture_output=True, text=True)
    assert bad.returncode != 0


def test_tritonclient_http_and_grpc(dep, tmp_path):
    import tritonclient.grpc as grpcclient
    import tritonclient.http as httpclient
    import gevent.ssl
    x = np.load(dep.reference.input)
    want = engine_output(dep, tmp_path)
    cert = str(dep.dir / "server.pem")

    client = httpclient.InferenceServerClient(
        url=f"localhost:{dep.http.split(':')[1]}", ssl=True,
        ssl_context_factory=lambda: gevent.ssl.create_default_context(cafile=cert))
    assert client.is_server_ready()
    assert client.get_model_metadata(MODEL)["name"] == MODEL
    inp = httpclient.InferInput("input", list(x.shape), "FP32")
    inp.set_data_from_numpy(x, binary_data=True)
    res = client.infer(MODEL, [inp], outputs=[httpclient.InferRequestedOutput("output", binary_data=True)])
    assert_close(res.as_numpy("output"), want, "tritonclient http")

    with open(cert, "rb") as f:
        root = f.read()
    gclient = grpcclient.InferenceServerClient(url=f"localhost:{dep.grpc.split(':')[1]}", ssl=True,
                                               root_certificates=cert)
    assert gclient.is_server_live()
    assert gclient.get_model_metadata(MODEL).name == MODEL
    ginp = grpcclient.InferInput("input", list(x.shape), "FP32")
    ginp.set_data_from_numpy(x)
    gres = gclient.infer(MODEL, [ginp])
    assert_close(gres.as_numpy("output"), want, "tritonclient grpc")
    assert root


@pytest.mark.parametrize("change,stage", [
    ({"mrenclave": ["00" * 32]}, "measurement"),
    ({"model_digest": "11" * 32}, "model-digest"),
    ({"allow_insecure_sim": False}, "insecure-platform"),
])
def test_attestation_refused_by_policy(dep, change, stage):
    policy = dep.write_policy(f"bad-{stage}.json", **change)
    res = dep.attest(policy=policy, save_cert=dep.dir / f"bad-{stage}.pem", check=False)
    assert res.returncode != 0
    assert stage in res.stderr + res.stdout
    assert not (dep.dir / f"bad-{stage}.pem").exists()
    server_alive(dep)


def test_attestation_refused_for_untrusted_root(dep):
    other = dep.dir / "other-platform"
    dep.run("sim", "init", "--dir", str(other))
    root = dep.dir / "other-root.pem"
    root.write_text(dep.run("sim", "root-cert", "--dir", str(other)).stdout)
    policy = dep.write_policy("bad-root.json", trusted_roots=[str(root)])
    res = dep.attest(policy=policy, save_cert=dep.dir / "bad-root.pem", check=False)
    assert res.returncode != 0 and "platform-chain" in res.stderr + res.stdout
    server_alive(dep)


def _post(dep, path, body: bytes, headers=None, timeout=10):
    import http.client
    ctx = ssl.create_default_context(cafile=str(dep.dir / "server.pem"))
    conn = http.client.HTTPSConnection("localhost", int(dep.http.split(":")[1]), context=ctx, timeout=timeout)
    conn.request("POST", path, body=body, headers=headers or {})
    r = conn.getresponse()
    data = r.read()
    conn.close()
    return r.status, data


@pytest.mark.parametrize("body,status", [
    (b"{not json", 400),
    (json.dumps({"inputs": [{"name": "input", "shape": [1, 3, 224, 224], "datatype": "FP16", "data": [0]}]}).encode(), 400),
    (json.dumps({"inputs": [{"name": "input", "shape": [4611686018427387904, 4], "datatype": "FP32", "data": [0]}]}).encode(), 400),
    (json.dumps({"inputs": [{"name": "nope", "shape": [1], "datatype": "FP32", "data": [0]}]}).encode(), 400),
])
def test_hostile_requests_get_clean_errors(dep, body, status):
    got, data = _post(dep, f"/v2/models/{MODEL}/infer", body, {"Content-Type": "application/json"})
    assert got == status, data[:200]
    assert "error" in json.loads(data)
    server_alive(dep)


def test_binary_size_mismatch_and_unknown_model(dep):
    head = json.dumps({"inputs": [{"name": "input", "shape": [1, 3, 224, 224], "datatype": "FP32",
                                   "parameters": {"binary_data_size": 16}}]}).encode()
    got, _ = _post(dep, f"/v2/models/{MODEL}/infer", head + b"\0" * 16,
                   {"Inference-Header-Content-Length": str(len(head))})
    assert got == 400
    got, _ = _post(dep, "/v2/models/no_such_model/infer", b"{}", {"Content-Type": "application/json"})
    assert got == 404
    server_alive(dep)


def test_slow_loris_does_not_stall_others(dep):
    ctx = ssl.create_default_context(cafile=str(dep.dir / "server.pem"))
    slow = []
    for _ in range(4):
        s = ctx.wrap_socket(socket.create_connection(("localhost", int(dep.http.split(":")[1]))), server_hostname="localhost")
        s.send(b"POST /v2/models/x/infer HTTP/1.1\r\nHost: x\r\n")  # and then nothing more
        slow.append(s)
    t0 = time.time()
    server_alive(dep)
    assert time.time() - t0 < 5
    for s in slow:
        s.close()


def test_metrics_are_counts_only(dep):
    import urllib.request
    text = urllib.request.urlopen(f"http://127.0.0.1:{dep.metrics_port}/metrics", timeout=5).read().decode()
    assert "tenet_relay_connections_total" in text
    assert "tenet_enclave_up" in text


def test_killed_enclave_is_restarted_and_clients_get_errors_not_hangs(dep, tmp_path):
    from tenet_client import TenetClient
    x = np.load(dep.reference.input)
    children = subprocess.run(["pgrep", "-P", str(dep.server.pid)], capture_output=True, text=True).stdout.split()
    assert len(children) == 2, children
    errors, ok = [], []
    stop = threading.Event()

    def client_loop():
        with TenetClient(dep.http, cert=str(dep.dir / "server.pem"), timeout=20) as c:
            while not stop.is_set():
                try:
                    c.infer(MODEL, {"input": x})
                    ok.append(1)
                except Exception as e:  # connection reset, 503: retriable
                    errors.append(type(e).__name__)

    with ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(client_loop) for _ in range(4)]
        time.sleep(1.0)
        os.kill(int(children[0]), signal.SIGKILL)
        time.sleep(3.0)
        stop.set()
        for f in futures:
            f.result(timeout=30)  # no hang
    assert ok
    deadline = time.time() + 60
    while time.time() < deadline:
        now = subprocess.run(["pgrep", "-P", str(dep.server.pid)], capture_output=True, text=True).stdout.split()
        if len(now) == 2 and children[0] not in now:
            break
        time.sleep(0.5)
    assert len(now) == 2 and children[0] not in now, "enclave was not restarted"
    # The restarted enclave reuses the sealed identity: the pinned certificate still works.
    time.sleep(1)
    for _ in range(4):
        server_alive(dep)


def test_wrong_model_key_and_tampered_package_refused(dep, tmp_path):
    """An enclave given a wrong key or a tampered package refuses to serve; the running server is unaffected."""
    wrong_key = tmp_path / "wrong.key"
    wrong_key.write_text("ab" * 32 + "\n")
    other = Deployment(tmp_path / "wrong", MODEL, enclaves=1)
    other.dir.mkdir()
    for attr in ("sim_dir", "package", "key", "digest", "manifest", "mrenclave", "root", "reference", "models", "sealed"):
        setattr(other, attr, getattr(dep, attr))
    other.policy = dep.policy
    try:
        other.start_keybroker(key=wrong_key)
        with pytest.raises(RuntimeError, match="the model key does not match"):
            other.start_server(extra=("--ready-timeout", "60"))
        tampered = tmp_path / "tampered.tenet"
        data = bytearray(Path(dep.package).read_bytes())
        data[-100] ^= 1
        tampered.write_bytes(bytes(data))
        other.stop()
        other.start_keybroker()
        with pytest.raises(RuntimeError, match="chunk .* does not match the manifest's hash"):
            other.start_server(package=tampered, extra=("--ready-timeout", "60"))
    finally:
        other.stop()
    server_alive(dep)


def test_enclaves_share_one_emulated_epc_budget(tmp_path):
    """tenet serve --epc: both enclaves' memory is paged against one sim EPC budget; serving is
    unchanged (outputs equal the engine's), and the host exports the EPC counters."""
    import urllib.request
    d = Deployment(tmp_path, MODEL, enclaves=2, threads=1)
    try:
        d.prepare().start_keybroker().start_server(extra=("--epc", "24MiB"))
        d.attest()
        out = tmp_path / "out"
        d.run("infer", "--server", d.http, "--policy", str(d.policy), "--model", MODEL,
              "--input", f"input={d.reference.input}", "--output-dir", str(out))
        assert_close(np.load(out / "output.npy"), engine_output(d, tmp_path), "served with EPC emulation")
        # Each enclave reports its EPC counters on its next stats tick (about a second): wait for both.
        deadline = time.time() + 10
        peaks = []
        while time.time() < deadline and len(peaks) < 2:
            time.sleep(0.5)
            text = urllib.request.urlopen(f"http://127.0.0.1:{d.metrics_port}/metrics", timeout=5).read().decode()
            peaks = [float(l.split()[-1]) for l in text.splitlines()
                     if l.startswith("tenet_enclave_epc{") and 'counter="peak_resident_bytes"' in l]
        assert len(peaks) == 2, text
        assert sum(peaks) <= 24 * 2**20  # one budget for both
    finally:
        d.stop()


def test_debug_enclave_refused_unless_policy_allows_debug(tmp_path):
    """A debug enclave (its quote carries the DEBUG attribute) is refused by a client policy with
    allow_debug false, at the debug stage; a policy that allows debug accepts it."""
    d = Deployment(tmp_path, MODEL, enclaves=1, threads=1, debug=True)
    try:
        d.prepare()
        owner = d.write_policy("owner-allows-debug.json", allow_debug=True)
        d.start_keybroker(policy=owner).start_server()
        res = d.attest(check=False)
        assert res.returncode != 0 and "attestation failed at debug" in res.stderr + res.stdout
        facts = json.loads(d.attest(policy=owner).stdout.strip().splitlines()[-1])
        assert facts["debug"] is True
    finally:
        d.stop()


def test_planned_enclave_loads_its_model_within_the_epc(tmp_path):
    """tenet serve --epc --enclave-memory planned: the enclave imports the sealed package chunk by
    chunk with its weights deferred into sealed untrusted memory (bounded loading), so neither
    loading nor serving evicts a page; outputs equal the engine's."""
    import urllib.request
    d = Deployment(tmp_path, MODEL, enclaves=1, threads=1)
    try:
        d.prepare().start_keybroker().start_server(extra=("--epc", "8MiB", "--enclave-memory", "planned"))
        d.attest()
        out = tmp_path / "out"
        d.run("infer", "--server", d.http, "--policy", str(d.policy), "--model", MODEL,
              "--input", f"input={d.reference.input}", "--output-dir", str(out))
        assert_close(np.load(out / "output.npy"), engine_output(d, tmp_path), "served from a planned enclave")
        deadline = time.time() + 10
        counters = {}
        while time.time() < deadline and "evictions" not in counters:
            time.sleep(0.5)
            text = urllib.request.urlopen(f"http://127.0.0.1:{d.metrics_port}/metrics", timeout=5).read().decode()
            counters = {l.split('counter="')[1].split('"')[0]: float(l.split()[-1]) for l in text.splitlines()
                        if l.startswith("tenet_enclave_epc{")}
        assert "evictions" in counters, text
        assert counters["evictions"] == 0, counters
        assert counters["peak_resident_bytes"] <= 8 * 2**20
    finally:
        d.stop()
