"""End to end: per-model modes at `tenet serve` (issue 5 item 6).

One sim enclave serves a tee model and a hybrid model (its linear layers on the accelerator
process that `tenet serve --accelerator auto` starts, over blinded data, Freivalds-checked). The
hybrid model's outputs must agree with the engine's (top-1 equal, relative L2 error <= 0.05); the
modes must show in the serve line, the model metadata and the attestation claims; and a killed
accelerator must make hybrid requests fail with an error (not hang) while the tee model keeps
serving. The platform is sim: nothing here is hardware-protected.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import numpy as np
import pytest

from deployment import tenet_bin
from hybrid_util import HybridDeployment

TEE = "mobilenet_v3_small"
HYBRID = "resnet18"


@pytest.fixture(scope="module")
def dep(tmp_path_factory):
    d = HybridDeployment(tmp_path_factory.mktemp("hybrid-serve"), TEE, HYBRID, enclaves=1, threads=2)
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


def test_mode_flag_only_checks_the_manifest(dep):
    res = subprocess.run([tenet_bin(), *dep.serve_args("--mode", f"{HYBRID}=tee")], capture_output=True, text=True, timeout=60)
    assert res.returncode != 0
    assert "measured into MRENCLAVE" in res.stderr
    res = subprocess.run([tenet_bin(), *dep.serve_args("--mode", "nosuchmodel=tee")], capture_output=True, text=True, timeout=60)
    assert res.returncode != 0 and "no model 'nosuchmodel'" in res.stderr


def test_killed_accelerator_fails_hybrid_requests_cleanly(dep, tmp_path):
    # Runs last in this module: the accelerator stays dead afterwards.
    os.kill(dep.serving_info["accelerator"]["pid"], signal.SIGKILL)
    time.sleep(0.5)
    t0 = time.time()
    res, _ = infer(dep, HYBRID, tmp_path, check=False, timeout=60)
    assert res.returncode != 0
    assert time.time() - t0 < 60
    assert HYBRID in res.stderr + res.stdout
    from tenet_client import InferenceError, TenetClient
    x = np.load(export_reference(HYBRID).input)
    with TenetClient(dep.http, cert=str(dep.dir / "server.pem"), timeout=60) as c:
        with pytest.raises(InferenceError) as err:
            c.infer(HYBRID, {"input": x})
        assert err.value.status == 503  # the request was valid: service unavailable
        assert c.ready()
        assert c.metadata(HYBRID)["parameters"]["mode"] == "hybrid"
    # The tee model is untouched.
    _, path = infer(dep, TEE, tmp_path)
    got, want = np.load(path), engine_output(TEE, tmp_path)
    assert float(np.abs(got - want).max() / max(np.abs(want).max(), 1e-6)) <= 1e-5
