"""A small Python client for tenet servers (KServe v2 over RA-TLS).

Attestation is done by the `tenet attest` command (the C++ verifier: RA-TLS certificate, quote,
platform chain, policy); it saves the enclave's certificate, which this module then pins for every
request, so no request goes to a server that did not pass the policy. Inference uses KServe v2 REST
with the binary tensor extension.

    from tenet_client import TenetClient
    client = TenetClient("127.0.0.1:8000", policy="client-policy.json")   # attests here
    outputs = client.infer("resnet18", {"input": x})                       # dict of numpy arrays

The same pinned certificate works with tritonclient (see README, "Clients").
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import ssl
import subprocess
import tempfile
from typing import Dict, Optional

import numpy as np

_DTYPES = {
    "FP32": np.float32, "FP64": np.float64, "FP16": np.float16,
    "INT8": np.int8, "INT16": np.int16, "INT32": np.int32, "INT64": np.int64,
    "UINT8": np.uint8, "BOOL": np.bool_,
}
_KSERVE = {np.dtype(v): k for k, v in _DTYPES.items()}


class AttestationError(RuntimeError):
    """The server's evidence did not satisfy the policy; `stage` names what failed."""

    def __init__(self, message: str, stage: Optional[str] = None):
        super().__init__(message)
        self.stage = stage


class InferenceError(RuntimeError):
    def __init__(self, status: int, message: str):
        super().__init__(f"HTTP {status}: {message}")
        self.status = status


def _tenet_bin() -> str:
    env = os.environ.get("TENET_BIN")
    if env:
        return env
    here = os.path.dirname(os.path.abspath(__file__))
    built = os.path.join(here, "..", "build", "tenet")
    return built if os.path.exists(built) else (shutil.which("tenet") or "tenet")


def attest(server: str, policy: str, save_cert: str, tenet_bin: Optional[str] = None) -> dict:
    """Verifies `server` against `policy` and saves its certificate PEM to `save_cert`.

    Returns the verified facts (platform, mrenclave, ...) as printed by `tenet attest --json`.
    """
    cmd = [tenet_bin or _tenet_bin(), "attest", server, "--policy", policy, "--save-cert", save_cert, "--json"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    if proc.returncode != 0:
        message = (proc.stderr or proc.stdout).strip()
        stage = None
        marker = "attestation failed at "
        if marker in message:
            stage = message.split(marker, 1)[1].split(":", 1)[0].strip()
        raise AttestationError(message, stage)
    lines = [l for l in proc.stdout.splitlines() if l.startswith("{")]
    return json.loads(lines[-1]) if lines else {}


class TenetClient:
    """KServe v2 REST client pinned to an attested enclave certificate."""

    def __init__(self, server: str, policy: Optional[str] = None, cert: Optional[str] = None,
                 timeout: float = 60.0, tenet_bin: Optional[str] = None):
        host, _, port = server.rpartition(":")
        self.host, self.port, self.timeout = host or "127.0.0.1", int(port), timeout
        self._tmp = None
        if cert is None:
            if policy is None:
                raise ValueError("give a policy (to attest now) or the certificate saved by `tenet attest`")
            self._tmp = tempfile.TemporaryDirectory(prefix="tenet-client-")
            cert = os.path.join(self._tmp.name, "server.pem")
            self.attestation = attest(server, policy, cert, tenet_bin)
        self.cert = cert
        self._ctx = ssl.create_default_context(cafile=cert)

    def _request(self, method: str, path: str, body: bytes = b"", headers: Optional[dict] = None):
        conn = http.client.HTTPSConnection(self.host, self.port, context=self._ctx, timeout=self.timeout)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            return resp.status, dict(resp.getheaders()), resp.read()
        finally:
            conn.close()

    def ready(self) -> bool:
        status, _, _ = self._request("GET", "/v2/health/ready")
        return status == 200

    def metadata(self, model: str) -> dict:
        status, _, body = self._request("GET", f"/v2/models/{model}")
        if status != 200:
            raise InferenceError(status, body.decode(errors="replace").strip())
        return json.loads(body)

    def infer(self, model: str, inputs: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        """Runs `model` on named numpy inputs; returns its outputs by name (binary tensor extension)."""
        header = {"inputs": [], "parameters": {"binary_data_output": True}}
        blobs = []
        for name, array in inputs.items():
            array = np.ascontiguousarray(array)
            if array.dtype not in _KSERVE:
                raise TypeError(f"input {name}: dtype {array.dtype} is not served")
            raw = array.tobytes()
            header["inputs"].append({"name": name, "shape": list(array.shape), "datatype": _KSERVE[array.dtype],
                                     "parameters": {"binary_data_size": len(raw)}})
            blobs.append(raw)
        head = json.dumps(header).encode()
        status, headers, body = self._request(
            "POST", f"/v2/models/{model}/infer", head + b"".join(blobs),
            {"Content-Type": "application/octet-stream", "Inference-Header-Content-Length": str(len(head))})
        if status != 200:
            try:
                message = json.loads(body).get("error", "")
            except ValueError:
                message = body[:200].decode(errors="replace")
            raise InferenceError(status, message)
        hlen = {k.lower(): v for k, v in headers.items()}.get("inference-header-content-length")
        json_len = int(hlen) if hlen is not None else len(body)
        meta = json.loads(body[:json_len])
        offset, outputs = json_len, {}
        for out in meta["outputs"]:
            dtype = np.dtype(_DTYPES[out["datatype"]])
            params = out.get("parameters", {})
            if "binary_data_size" in params:
                size = int(params["binary_data_size"])
                outputs[out["name"]] = np.frombuffer(body[offset:offset + size], dtype=dtype).reshape(out["shape"])
                offset += size
            else:
                outputs[out["name"]] = np.asarray(out["data"], dtype=dtype).reshape(out["shape"])
        return outputs

    def close(self):
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
