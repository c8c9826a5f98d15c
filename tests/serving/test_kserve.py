"""`tenet kserve` end to end: tritonclient (HTTP and gRPC, unmodified, pinned to a self-signed
certificate), curl with --cacert (JSON and binary), outputs compared with `tenet run` on the same
inputs, and hostile requests that must each get a clean error while the server keeps serving.

Run: TENET_BIN=build/tenet .venv/bin/python -m pytest -q tests/serving
"""
from __future__ import annotations

import functools
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
TENET = os.environ.get("TENET_BIN", str(REPO / "build" / "tenet"))
MODEL_NAME = "resnet18"


def _model_path() -> Path:
    path = REPO / ".cache" / "models" / f"{MODEL_NAME}.onnx"
    if not path.exists():
        subprocess.run([sys.executable, str(REPO / "tests" / "models" / "export_models.py"), MODEL_NAME], check=True)
    return path


@pytest.fixture(scope="module")
def workdir():
    with tempfile.TemporaryDirectory(prefix="tenet-kserve-") as d:
        yield Path(d)


@pytest.fixture(scope="module")
def cert(workdir):
    c, k = workdir / "cert.pem", workdir / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", str(k),
         "-out", str(c), "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
        check=True, capture_output=True)
    return c, k


@pytest.fixture(scope="module")
def server(cert):
    if not Path(TENET).exists():
        pytest.skip(f"tenet binary not found at {TENET} (set TENET_BIN)")
    c, k = cert
    proc = subprocess.Popen(
        [TENET, "kserve", "--model", f"{MODEL_NAME}={_model_path()}", "--http", "127.0.0.1:0", "--grpc", "127.0.0.1:0",
         "--tls-cert", str(c), "--tls-key", str(k), "--threads", "2", "--max-body-bytes", str(8 << 20),
         "--read-timeout-ms", "1000", "--request-deadline-ms", "2000", "--http-threads", "16"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    if not line:
        proc.kill()
        pytest.fail("tenet kserve did not start: " + proc.stderr.read())
    ports = json.loads(line)
    assert ports["tls"] is True and ports["enclave"] is False
    yield ports
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0


@pytest.fixture(scope="module")
def reference(workdir):
    """Inputs and `tenet run` outputs for batch 1 and 2."""
    out = {}
    rng = np.random.default_rng(7)
    for batch in (1, 2):
        x = rng.standard_normal((batch, 3, 224, 224), dtype=np.float32)
        d = workdir / f"ref_b{batch}"
        d.mkdir()
        np.save(d / "input.npy", x)
        subprocess.run([TENET, "run", str(_model_path()), "--input", f"input={d / 'input.npy'}", "--output-dir", str(d),
                        "--threads", "2", "--quiet"], check=True, capture_output=True)
        out[batch] = (x, np.load(d / "output.npy"))
    return out


def _ssl_context(cert_path):
    return ssl.create_default_context(cafile=str(cert_path))


def _https(port, cert, method, path, body=b"", headers=None, timeout=10):
    import http.client
    conn = http.client.HTTPSConnection("localhost", port, context=_ssl_context(cert[0]), timeout=timeout)
    conn.request(method, path, body=body, headers=headers or {})
    r = conn.getresponse()
    data = r.read()
    hdrs = dict(r.getheaders())
    conn.close()
    return r.status, hdrs, data


def _assert_close(got, want):
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_tritonclient_http(server, cert, reference):
    import gevent.ssl
    import tritonclient.http as httpclient
    factory = lambda *a, **k: gevent.ssl.create_default_context(cafile=str(cert[0]))  # noqa: E731
    client = httpclient.InferenceServerClient(url=f"localhost:{server['http_port']}", ssl=True, ssl_context_factory=factory)
    assert client.is_server_live() and client.is_server_ready() and client.is_model_ready(MODEL_NAME)
    md = client.get_model_metadata(MODEL_NAME)
    assert md["inputs"][0]["shape"] == [-1, 3, 224, 224] and md["outputs"][0]["shape"] == [-1, 1000]
    cfg = client.get_model_config(MODEL_NAME)
    assert cfg["max_batch_size"] > 0
    assert cfg["parameters"] == {"mode": {"string_value": "tee"}}
    for batch, (x, want) in reference.items():
        for binary in (True, False):
            inp = httpclient.InferInput("input", list(x.shape), "FP32")
            inp.set_data_from_numpy(x, binary_data=binary)
            out = httpclient.InferRequestedOutput("output", binary_data=binary)
            res = client.infer(MODEL_NAME, [inp], outputs=[out], request_id="req-1")
            _assert_close(res.as_numpy("output"), want)
    stats = client.get_inference_statistics(MODEL_NAME)
    assert stats["model_stats"][0]["inference_count"] >= 6
    client.close()


def test_tritonclient_grpc(server, cert, reference):
    import tritonclient.grpc as grpcclient
    client = grpcclient.InferenceServerClient(url=f"localhost:{server['grpc_port']}", ssl=True, root_certificates=str(cert[0]))
    assert client.is_server_live() and client.is_server_ready() and client.is_model_ready(MODEL_NAME)
    md = client.get_model_metadata(MODEL_NAME, as_json=True)
    assert md["platform"] == "onnx_onnxv1"
    cfg = client.get_model_config(MODEL_NAME, as_json=True)
    assert cfg["config"]["name"] == MODEL_NAME
    assert cfg["config"]["platform"] == md["platform"]
    # ModelConfig.parameters (Triton's field 14): the protection mode, as REST's config shows it.
    assert cfg["config"]["parameters"] == {"mode": {"string_value": "tee"}}
    typed = client.get_model_config(MODEL_NAME).config
    assert {k: v.string_value for k, v in typed.parameters.items()} == {"mode": "tee"}
    for batch, (x, want) in reference.items():
        inp = grpcclient.InferInput("input", list(x.shape), "FP32")
        inp.set_data_from_numpy(x)
        res = client.infer(MODEL_NAME, [inp], outputs=[grpcclient.InferRequestedOutput("output")])
        _assert_close(res.as_numpy("output"), want)
    stats = client.get_inference_statistics(MODEL_NAME, as_json=True)
    assert int(stats["model_stats"][0]["execution_count"]) >= 1
    # Errors as gRPC status codes.
    from tritonclient.utils import InferenceServerException
    with pytest.raises(InferenceServerException) as e:
        client.get_model_metadata("nope")
    assert "NOT_FOUND" in str(e.value.status())
    bad = grpcclient.InferInput("input", [1, 3, 224, 223], "FP32")
    bad.set_data_from_numpy(np.zeros((1, 3, 224, 223), np.float32))
    with pytest.raises(InferenceServerException) as e:
        client.infer(MODEL_NAME, [bad])
    assert "INVALID_ARGUMENT" in str(e.value.status())
    client.close()


def test_curl_json_and_binary(server, cert, reference, workdir):
    x, want = reference[1]
    port = server["http_port"]
    url = f"https://localhost:{port}/v2/models/{MODEL_NAME}/infer"
    body = json.dumps({"inputs": [{"name": "input", "shape": list(x.shape), "datatype": "FP32", "data": x.ravel().tolist()}]})
    (workdir / "req.json").write_text(body)
    r = subprocess.run(["curl", "-sS", "--cacert", str(cert[0]), "-H", "Content-Type: application/json",
                        "--data-binary", f"@{workdir / 'req.json'}", url], check=True, capture_output=True)
    res = json.loads(r.stdout)
    _assert_close(np.array(res["outputs"][0]["data"], np.float32).reshape(res["outputs"][0]["shape"]), want)

    header = json.dumps({"inputs": [{"name": "input", "shape": list(x.shape), "datatype": "FP32",
                                      "parameters": {"binary_data_size": x.nbytes}}],
                         "outputs": [{"name": "output", "parameters": {"binary_data": True}}]}).encode()
    (workdir / "req.bin").write_bytes(header + x.tobytes())
    r = subprocess.run(["curl", "-sS", "--cacert", str(cert[0]), "-D", str(workdir / "hdr.txt"),
                        "-H", f"Inference-Header-Content-Length: {len(header)}", "-H", "Content-Type: application/octet-stream",
                        "--data-binary", f"@{workdir / 'req.bin'}", url], check=True, capture_output=True)
    hdrs = (workdir / "hdr.txt").read_text().lower()
    hl = int(hdrs.split("inference-header-content-length:")[1].split()[0])
    meta = json.loads(r.stdout[:hl])
    assert meta["outputs"][0]["parameters"]["binary_data_size"] == 4000
    _assert_close(np.frombuffer(r.stdout[hl:], np.float32).reshape(1, 1000), want)
    # An untrusted certificate is refused by curl (the pin is what protects the client).
    r = subprocess.run(["curl", "-sS", f"https://localhost:{port}/v2/health/live"], capture_output=True)
    assert r.returncode != 0


def test_json_responses_have_fixed_size(server, cert):
    sizes = set()
    for fill in (0.0, 1.0, -123.456, 1e-30):
        x = np.full((1, 3, 224, 224), fill, np.float32)
        hdr = json.dumps({"inputs": [{"name": "input", "shape": [1, 3, 224, 224], "datatype": "FP32",
                                      "parameters": {"binary_data_size": x.nbytes}}]}).encode()
        st, _, data = _https(server["http_port"], cert, "POST", f"/v2/models/{MODEL_NAME}/infer", hdr + x.tobytes(),
                             {"Inference-Header-Content-Length": str(len(hdr))})
        assert st == 200
        sizes.add(len(data))
    assert len(sizes) == 1


HOSTILE = [
    ("malformed json", b"{\"inputs\": [", {}, 400),
    ("unknown model", None, {}, 404),
    ("wrong dtype", json.dumps({"inputs": [{"name": "input", "shape": [1, 3, 224, 224], "datatype": "INT32",
                                            "parameters": {"binary_data_size": 4 * 3 * 224 * 224}}]}).encode(), "bin", 400),
    ("binary size mismatch", json.dumps({"inputs": [{"name": "input", "shape": [1, 3, 224, 224], "datatype": "FP32",
                                                     "parameters": {"binary_data_size": 12}}]}).encode(), "bin12", 400),
    ("overflowing shape", json.dumps({"inputs": [{"name": "input", "shape": [2**62, 2**62, 3, 3], "datatype": "FP32",
                                                  "data": [1.0]}]}).encode(), {}, 400),
    ("wrong input name", json.dumps({"inputs": [{"name": "nope", "shape": [1], "datatype": "FP32", "data": [1.0]}]}).encode(), {}, 400),
    ("bytes datatype", json.dumps({"inputs": [{"name": "input", "shape": [1], "datatype": "BYTES", "data": ["a"]}]}).encode(), {}, 400),
]


@pytest.mark.parametrize("name,body,headers,status", HOSTILE, ids=[h[0] for h in HOSTILE])
def test_hostile_requests(server, cert, name, body, headers, status):
    port = server["http_port"]
    path = f"/v2/models/{MODEL_NAME}/infer"
    if name == "unknown model":
        path, body = "/v2/models/nope/infer", b"{}"
    if headers == "bin":
        body, headers = body + bytes(4 * 3 * 224 * 224), {"Inference-Header-Content-Length": str(len(body))}
    elif headers == "bin12":
        body, headers = body + bytes(12), {"Inference-Header-Content-Length": str(len(body))}
    st, _, data = _https(port, cert, "POST", path, body, headers)
    assert st == status, data
    assert "error" in json.loads(data)
    assert _https(port, cert, "GET", "/v2/health/live")[0] == 200


def test_oversized_body(server, cert):
    ctx = _ssl_context(cert[0])
    with socket.create_connection(("127.0.0.1", server["http_port"]), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as s:
            s.sendall(f"POST /v2/models/{MODEL_NAME}/infer HTTP/1.1\r\nHost: localhost\r\n"
                      f"Content-Length: {1 << 30}\r\n\r\n".encode())
            reply = s.recv(65536)
    assert reply.startswith(b"HTTP/1.1 413")
    assert _https(server["http_port"], cert, "GET", "/v2/health/ready")[0] == 200


def test_slow_loris(server, cert):
    """Clients that stall or trickle bytes must not stall others; the trickler is cut off."""
    ctx = _ssl_context(cert[0])
    port = server["http_port"]
    stalled = []
    for _ in range(4):
        s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=10), server_hostname="localhost")
        s.sendall(b"POST /v2/models/" + MODEL_NAME.encode() + b"/infer HTTP/1.1\r\nHost: localhost\r\n")
        stalled.append(s)
    result = {}

    def trickle():
        s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=10), server_hostname="localhost")
        s.sendall(f"POST /v2/models/{MODEL_NAME}/infer HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100\r\n\r\n".encode())
        t0 = time.time()
        try:
            for _ in range(100):
                s.sendall(b" ")
                time.sleep(0.5)
        except OSError:
            pass
        try:
            result["reply"] = s.recv(4096)
        except OSError as e:
            result["reply"] = repr(e).encode()
        result["seconds"] = time.time() - t0
        s.close()

    t = threading.Thread(target=trickle)
    t.start()
    t0 = time.time()
    for _ in range(3):
        assert _https(port, cert, "GET", "/v2/models/" + MODEL_NAME)[0] == 200
    assert time.time() - t0 < 3
    t.join(timeout=30)
    assert not t.is_alive()
    # Cut off at the 2 s whole-request deadline (its 100 bytes would take 50 s): either the 400
    # arrives or the connection is reset once the server closes it.
    assert result["seconds"] < 15, result
    assert result["reply"].startswith(b"HTTP/1.1 400") or b"Error" in result["reply"] or result["reply"] == b"", result
    for s in stalled:
        s.close()
    assert _https(port, cert, "GET", "/v2/health/live")[0] == 200


def test_grpc_wire_compat_with_triton_proto(server, cert, reference):
    """Triton's own generated stubs (tritonclient's service_pb2): typed contents, raw size checks,
    and UNIMPLEMENTED for RPCs tenet leaves out."""
    import grpc
    from tritonclient.grpc import service_pb2, service_pb2_grpc
    x, want = reference[1]
    creds = grpc.ssl_channel_credentials(root_certificates=Path(cert[0]).read_bytes())
    with grpc.secure_channel(f"localhost:{server['grpc_port']}", creds) as ch:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(ch)
        tensor = service_pb2.ModelInferRequest.InferInputTensor(
            name="input", datatype="FP32", shape=list(x.shape),
            contents=service_pb2.InferTensorContents(fp32_contents=x.ravel().tolist()))
        res = stub.ModelInfer(service_pb2.ModelInferRequest(model_name=MODEL_NAME, id="typed", inputs=[tensor]))
        assert res.id == "typed" and res.outputs[0].shape == [1, 1000]
        _assert_close(np.frombuffer(res.raw_output_contents[0], np.float32).reshape(1, 1000), want)

        raw = service_pb2.ModelInferRequest.InferInputTensor(name="input", datatype="FP32", shape=list(x.shape))
        with pytest.raises(grpc.RpcError) as e:
            stub.ModelInfer(service_pb2.ModelInferRequest(model_name=MODEL_NAME, inputs=[raw],
                                                          raw_input_contents=[x.tobytes()[:-4]]))
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        huge = service_pb2.ModelInferRequest.InferInputTensor(name="input", datatype="FP32", shape=[2**62, 2**62, 3, 3])
        with pytest.raises(grpc.RpcError) as e:
            stub.ModelInfer(service_pb2.ModelInferRequest(model_name=MODEL_NAME, inputs=[huge], raw_input_contents=[b"1234"]))
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        with pytest.raises(grpc.RpcError) as e:
            stub.RepositoryIndex(service_pb2.RepositoryIndexRequest())
        assert e.value.code() == grpc.StatusCode.UNIMPLEMENTED
        assert stub.ServerLive(service_pb2.ServerLiveRequest()).live
