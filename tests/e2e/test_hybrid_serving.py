"""End to end: per-model modes at `tenet serve` (issue 5 item 6).

One sim enclave serves a tee model and a hybrid model (its linear layers on the accelerator
process that `tenet serve --accelerator auto` starts, over blinded data, Freivalds-checked). The
hybrid model's outputs must agree with the engine's (top-1 equal, relative L2 error <= 0.05); the
modes must show in the serve line, the model metadata (REST, and the gRPC model config through
tritonclient) and the attestation claims; and a killed accelerator must make hybrid requests fail
cleanly (503, no hang, no wrong output) while the tee model keeps serving, until the server has
restarted it and the enclave has reconnected: then hybrid outputs agree with those from before.
The platform is sim: nothing here is hardware-protected.
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time

import numpy as np
import pytest

from deployment import tenet_bin
from hybrid_util import HybridDeployment, run_concurrently

TEE = "mobilenet_v3_small"
HYBRID = "resnet18"


@pytest.fixture(scope="module")
def dep(tmp_path_factory):
    # Two hybrid requests in flight (the manifest's pipeline_depth): one's enclave work overlaps the
    # other's accelerator products.
    d = HybridDeployment(tmp_path_factory.mktemp("hybrid-serve"), TEE, HYBRID, enclaves=1, threads=2, pipeline_depth=2)
    try:
        d.prepare().start_keybroker().start_server(extra=("--mode", f"{HYBRID}=hybrid", "--mode", f"{TEE}=tee"))
        d.attest()
        yield d
    finally:
        d.stop()


def engine_output(name: str, tmp_path) -> np.ndarray:
    ref = export_reference(name)
    out = tmp_path / f"engine-{name}"
    subprocess.run([tenet_bin(), "run", str(ref.model), "--input", f"input={ref.input}", "--output-dir", str(out), "--quiet"],
                   check=True, capture_output=True)
    return np.load(out / "output.npy")


def export_reference(name: str):
    import export_models
    return export_models.ensure_reference(name, 1)


def infer(dep, name: str, tmp_path, check: bool = True, timeout: float = 120):
    out = tmp_path / f"served-{name}"
    res = dep.run("infer", "--server", dep.http, "--policy", str(dep.policy), "--model", name,
                  "--input", f"input={export_reference(name).input}", "--output-dir", str(out), check=check, timeout=timeout)
    return res, out / "output.npy"


def relative_l2(got: np.ndarray, want: np.ndarray) -> float:
    return float(np.linalg.norm(got - want) / max(np.linalg.norm(want), 1e-30))


def test_serve_line_shows_modes_and_its_accelerator(dep):
    info = dep.serving_info
    assert info["modes"] == {TEE: "tee", HYBRID: "hybrid:40"}
    assert info["accelerator"]["owned"] is True
    assert info["accelerator"]["address"].startswith("unix:")


def test_attestation_claims_the_modes(dep):
    facts = json.loads([l for l in dep.attest().stdout.splitlines() if l.startswith("{")][-1])
    assert facts["mrenclave"] == dep.mrenclave  # the manifest, modes included, is measured
    assert facts["mode"] == "hybrid"
    text = dep.run("attest", dep.http, "--policy", str(dep.policy)).stdout
    assert f"{dep.sealed[HYBRID][2]} (mode hybrid:40)" in text
    assert f"{dep.sealed[TEE][2]} (mode tee)" in text


def test_metadata_shows_the_modes(dep):
    from tenet_client import TenetClient
    with TenetClient(dep.http, cert=str(dep.dir / "server.pem")) as c:
        hybrid = c.metadata(HYBRID)
        tee = c.metadata(TEE)
    assert hybrid["parameters"] == {"mode": "hybrid", "verify_bits": 40}
    assert hybrid["inputs"][0]["shape"] == [1, 3, 224, 224]  # batch 1, fixed shapes
    assert tee["parameters"] == {"mode": "tee"}


def test_hybrid_output_agrees_with_the_engine(dep, tmp_path):
    want = engine_output(HYBRID, tmp_path)
    for _ in range(3):  # more requests than the unblinding pool holds (2): the pool runs dry
        _, path = infer(dep, HYBRID, tmp_path)
        got = np.load(path)
        assert got.shape == want.shape
        assert int(np.argmax(got)) == int(np.argmax(want))
        assert relative_l2(got, want) <= 0.05
    _, path = infer(dep, TEE, tmp_path)
    got, want = np.load(path), engine_output(TEE, tmp_path)
    assert float(np.abs(got - want).max() / max(np.abs(want).max(), 1e-6)) <= 1e-5


def test_concurrent_hybrid_requests_agree_with_the_engine(dep, tmp_path):
    """Four attesting clients at once on a pipelined hybrid model: each gets the engine's answer."""
    want = engine_output(HYBRID, tmp_path)

    def client(i: int):
        _, path = infer(dep, HYBRID, tmp_path / f"c{i}")
        return np.load(path)

    results = run_concurrently(client, 4)
    for i in range(4):
        got = results[i]
        assert isinstance(got, np.ndarray), f"client {i}: {got}"
        assert int(np.argmax(got)) == int(np.argmax(want))
        assert relative_l2(got, want) <= 0.05


def test_mode_flag_only_checks_the_manifest(dep):
    res = subprocess.run([tenet_bin(), *dep.serve_args("--mode", f"{HYBRID}=tee")], capture_output=True, text=True, timeout=60)
    assert res.returncode != 0
    assert "measured into MRENCLAVE" in res.stderr
    res = subprocess.run([tenet_bin(), *dep.serve_args("--mode", "nosuchmodel=tee")], capture_output=True, text=True, timeout=60)
    assert res.returncode != 0 and "no model 'nosuchmodel'" in res.stderr


def test_grpc_model_config_shows_the_modes(dep):
    # Triton's own client and generated model_config proto: ModelConfig.parameters is field 14,
    # map<string, ModelParameter{string_value}>; a wrong field number or type would not decode.
    import tritonclient.grpc as grpcclient
    from tenet_client import TenetClient
    with TenetClient(dep.http, cert=str(dep.dir / "server.pem")) as c:
        rest = {name: c.metadata(name) for name in (TEE, HYBRID)}
    client = grpcclient.InferenceServerClient(url=f"localhost:{dep.grpc.split(':')[1]}", ssl=True,
                                              root_certificates=str(dep.dir / "server.pem"))
    try:
        hybrid = client.get_model_config(HYBRID).config
        tee = client.get_model_config(TEE).config
        assert hybrid.name == HYBRID and tee.name == TEE
        assert hybrid.platform == rest[HYBRID]["platform"] and tee.platform == rest[TEE]["platform"]
        assert {k: v.string_value for k, v in hybrid.parameters.items()} == {"mode": "hybrid", "verify_bits": "40"}
        assert {k: v.string_value for k, v in tee.parameters.items()} == {"mode": "tee"}
        assert [i.name for i in hybrid.input] == [t["name"] for t in rest[HYBRID]["inputs"]]
        as_json = client.get_model_config(TEE, as_json=True)["config"]
        assert as_json["parameters"] == {"mode": {"string_value": "tee"}}
    finally:
        client.close()


def _metric(dep, name: str) -> float | None:
    import urllib.request
    text = urllib.request.urlopen(f"http://127.0.0.1:{dep.metrics_port}/metrics", timeout=10).read().decode()
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.split()[-1])
    return None


def _serve_log(dep) -> str:
    logs = sorted(dep.dir.glob("serve-*.log"), key=lambda p: p.stat().st_mtime)
    return logs[-1].read_text() if logs else ""


def test_killed_accelerator_is_restarted_and_hybrid_serving_recovers(dep, tmp_path):
    # Kills the accelerator `tenet serve` started (after the tests that read its pid). The server
    # restarts it; the enclave's client reconnects and registers its layers again; outputs agree
    # with those from before.
    from tenet_client import InferenceError, TenetClient
    x = np.load(export_reference(HYBRID).input)
    want = engine_output(HYBRID, tmp_path)
    cert = str(dep.dir / "server.pem")
    with TenetClient(dep.http, cert=cert, timeout=60) as c:
        before = c.infer(HYBRID, {"input": x})["output"]
    assert int(np.argmax(before)) == int(np.argmax(want)) and relative_l2(before, want) <= 0.05
    assert _metric(dep, "tenet_accelerator_up") == 1
    restarts0 = _metric(dep, "tenet_accelerator_restarts_total") or 0

    pid = dep.serving_info["accelerator"]["pid"]
    os.kill(pid, signal.SIGKILL)
    # Right after the kill: a request fails cleanly (503, valid request) or, if the restart was
    # already done, succeeds with the right answer. Never a hang, a crash or a wrong output.
    with TenetClient(dep.http, cert=cert, timeout=60) as c:
        t0 = time.time()
        try:
            got = c.infer(HYBRID, {"input": x})["output"]
            assert relative_l2(got, before) <= 0.05 and int(np.argmax(got)) == int(np.argmax(before))
        except InferenceError as err:
            assert err.status == 503, err
            assert HYBRID in str(err)
        assert time.time() - t0 < 60
        assert c.ready()
        # The tee model is untouched.
        tee_x = np.load(export_reference(TEE).input)
        tee_want = engine_output(TEE, tmp_path)
        tee_got = c.infer(TEE, {"input": tee_x})["output"]
        assert float(np.abs(tee_got - tee_want).max() / max(np.abs(tee_want).max(), 1e-6)) <= 1e-5

        # Within a few seconds the accelerator is back and hybrid requests succeed again.
        deadline, outputs, errors = time.time() + 20, [], []
        while time.time() < deadline and len(outputs) < 3:
            try:
                outputs.append(c.infer(HYBRID, {"input": x})["output"])
            except InferenceError as err:
                assert err.status == 503, err
                errors.append(err)
                time.sleep(0.2)
        assert len(outputs) == 3, f"hybrid requests did not recover: {errors[-3:]}\n{_serve_log(dep)[-3000:]}"
    for got in outputs:
        assert got.shape == before.shape
        assert int(np.argmax(got)) == int(np.argmax(before))
        assert relative_l2(got, before) <= 0.05
        assert relative_l2(got, want) <= 0.05
    log = _serve_log(dep)
    assert f"the accelerator (pid {pid}) exited (killed by signal 9)" in log
    m = re.search(r"restarted the accelerator \(\S+ backend, pid (\d+)\)", log)
    assert m and int(m.group(1)) != pid
    os.kill(int(m.group(1)), 0)  # the new one runs
    assert _metric(dep, "tenet_accelerator_restarts_total") == restarts0 + 1
    assert _metric(dep, "tenet_accelerator_up") == 1


def test_operator_accelerator_is_not_restarted_but_enclaves_reconnect(tmp_path_factory, tmp_path):
    # --accelerator unix:PATH: the operator runs the accelerator. `tenet serve` restarts nothing;
    # when the operator starts one again at the same address, the enclave reconnects by itself.
    from tenet_client import InferenceError, TenetClient
    d = HybridDeployment(tmp_path_factory.mktemp("hybrid-operator"), TEE, HYBRID, enclaves=1, threads=2)
    try:
        d.prepare().start_keybroker()
        address = f"unix:{d.dir}/operator-accel.sock"
        acc, _ = d.start("accelerator", "--listen", address, "--backend", "cpu", "--threads", "1")
        d.start_server(extra=("--accelerator", address))
        assert d.serving_info["accelerator"] == {"address": address, "owned": False}
        d.attest()
        x = np.load(export_reference(HYBRID).input)
        cert = str(d.dir / "server.pem")
        with TenetClient(d.http, cert=cert, timeout=60) as c:
            before = c.infer(HYBRID, {"input": x})["output"]
            acc.kill()
            acc.wait()
            time.sleep(1.0)  # long enough that an owned accelerator would have been restarted
            for _ in range(2):
                with pytest.raises(InferenceError) as err:
                    c.infer(HYBRID, {"input": x})
                assert err.value.status == 503
            assert "restarted the accelerator" not in _serve_log(d)
            d.start("accelerator", "--listen", address, "--backend", "cpu", "--threads", "1")
            for _ in range(2):
                got = c.infer(HYBRID, {"input": x})["output"]
                assert int(np.argmax(got)) == int(np.argmax(before))
                assert relative_l2(got, before) <= 0.05
    finally:
        d.stop()


def test_accelerator_restarts_zero_leaves_a_dead_accelerator_down(tmp_path_factory):
    # --accelerator-restarts 0: the operator asked for no restarts. A killed accelerator stays
    # down: hybrid requests keep failing cleanly (503), the metrics say so, tee keeps serving.
    from tenet_client import InferenceError, TenetClient
    d = HybridDeployment(tmp_path_factory.mktemp("hybrid-norestart"), TEE, HYBRID, enclaves=1, threads=2)
    try:
        d.prepare().start_keybroker().start_server(extra=("--accelerator-restarts", "0"))
        d.attest()
        x = np.load(export_reference(HYBRID).input)
        with TenetClient(d.http, cert=str(d.dir / "server.pem"), timeout=60) as c:
            c.infer(HYBRID, {"input": x})
            pid = d.serving_info["accelerator"]["pid"]
            os.kill(pid, signal.SIGKILL)
            time.sleep(1.5)  # well past the first restart's 200 ms backoff
            for _ in range(3):
                with pytest.raises(InferenceError) as err:
                    c.infer(HYBRID, {"input": x})
                assert err.value.status == 503
            assert c.infer(TEE, {"input": np.load(export_reference(TEE).input)})["output"].shape[-1] == 1000
        assert "restarted the accelerator" not in _serve_log(d)
        assert _metric(d, "tenet_accelerator_up") == 0
        assert (_metric(d, "tenet_accelerator_restarts_total") or 0) == 0
    finally:
        d.stop()


def test_dynamic_batching_serves_concurrent_clients_correctly(tmp_path_factory, tmp_path):
    """max_batch_size 4: concurrent clients' requests run as one batch (one blinded transfer and one
    product per layer for the batch), every client gets the engine's answer, and the metadata shows
    the batch dimension as -1."""
    from tenet_client import TenetClient
    d = HybridDeployment(tmp_path_factory.mktemp("hybrid-batch"), TEE, HYBRID, enclaves=1, threads=2,
                         max_batch_size=4, max_queue_delay_us=3_000_000)
    try:
        d.prepare().start_keybroker().start_server()
        d.attest()
        want = engine_output(HYBRID, tmp_path)
        x = np.load(export_reference(HYBRID).input)
        cert = str(d.dir / "server.pem")
        with TenetClient(d.http, cert=cert, timeout=120) as c:
            md = c.metadata(HYBRID)
            assert md["inputs"][0]["shape"][0] == -1 and md["outputs"][0]["shape"][0] == -1

        def client(i: int):
            with TenetClient(d.http, cert=cert, timeout=120) as c:
                # Client 0 sends two rows at once; the others one each.
                return c.infer(HYBRID, {"input": np.concatenate([x, x]) if i == 0 else x})["output"]

        results = run_concurrently(client, 3)
        rows = []
        for i in range(3):
            got = results[i]
            assert isinstance(got, np.ndarray), f"client {i}: {got}"
            assert got.shape[0] == (2 if i == 0 else 1)
            rows += list(got)
        for row in rows:
            assert int(np.argmax(row)) == int(np.argmax(want))
            assert relative_l2(row[None], want) <= 0.05
            assert np.array_equal(row, rows[0])  # each row is quantized alone: same image, same bits
        with TenetClient(d.http, cert=cert, timeout=60) as c:
            status, _, body = c._request("GET", f"/v2/models/{HYBRID}/stats")
        assert status == 200, body
        st = next(m for m in json.loads(body)["model_stats"] if m["name"] == HYBRID)
        assert st["inference_count"] == 4
        assert st["execution_count"] == 1  # the four rows filled one batch
    finally:
        d.stop()
