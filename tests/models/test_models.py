"""tenet vs PyTorch, and ONNX Runtime vs PyTorch, on whole models with random weights.

For each model in export_models.DEFAULT_MODELS at batch sizes 1 and 4, and each model in
export_models.EXTRA_MODELS at batch 1, the model is exported to ONNX (cached), PyTorch computes the
reference output for a fixed random input, and

  * `tenet run` must match it: max|tenet - torch| / max(max|torch|, 1e-6) <= 1e-4, same shape and
    dtype (test_tenet_matches_torch; needs the tenet binary, see conftest.tenet_bin);
  * ONNX Runtime must match it within the same tolerance (test_onnxruntime_matches_torch): a check
    of the references and the export themselves, independent of tenet.

Run: .venv/bin/python -m pytest tests/models -q     (TENET_BIN=path/to/tenet to pick a build)
"""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

import export_models

RELATIVE_TOLERANCE = 1e-4
THREADS = 2
BATCHES = (1, 4)
# Model-major order, so each PyTorch model is built once for both batch sizes. The extra models
# (issue 2: "other torchvision classification models of these op families") run at batch 1 only.
CASES = [(model, batch) for model in export_models.DEFAULT_MODELS for batch in BATCHES]
CASES += [(model, 1) for model in export_models.EXTRA_MODELS]
CASE_IDS = [f"{model}-b{batch}" for model, batch in CASES]


def assert_close(got: np.ndarray, want: np.ndarray, what: str) -> None:
    assert got.shape == want.shape, f"{what}: shape {got.shape}, expected {want.shape}"
    assert got.dtype == want.dtype, f"{what}: dtype {got.dtype}, expected {want.dtype}"
    assert np.all(np.isfinite(got)), f"{what}: {np.count_nonzero(~np.isfinite(got))} non-finite values"
    diff = np.abs(got.astype(np.float64) - want.astype(np.float64))
    scale = max(float(np.max(np.abs(want))) if want.size else 0.0, 1e-6)
    error = float(np.max(diff)) / scale if diff.size else 0.0
    if error > RELATIVE_TOLERANCE:
        worst = np.unravel_index(int(np.argmax(diff)), diff.shape)
        pytest.fail(
            f"{what}: max|got - torch| / max|torch| = {error:.3g} > {RELATIVE_TOLERANCE:g} "
            f"(worst at {tuple(int(i) for i in worst)}: got {got[worst]!r}, torch {want[worst]!r}; "
            f"max|torch| = {scale:.4g})",
            pytrace=False,
        )


def require_tenet(path: Path) -> None:
    if not (path.is_file() and os.access(path, os.X_OK)):
        pytest.fail(
            f"tenet binary not found or not executable at {path}: build it "
            f"(cmake -S . -B build -G Ninja && cmake --build build --target tenet) or set TENET_BIN",
            pytrace=False,
        )


@pytest.mark.parametrize(("model", "batch"), CASES, ids=CASE_IDS)
def test_tenet_matches_torch(tenet_bin, reference, tmp_path, model, batch):
    require_tenet(tenet_bin)
    ref = reference(model, batch)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    cmd = [str(tenet_bin), "run", str(ref.model), "--input", f"input={ref.input}",
           "--output-dir", str(out_dir), "--threads", str(THREADS)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, (
        f"tenet failed on {model} b{batch} (exit {proc.returncode}): {' '.join(cmd)}\n"
        f"stdout:\n{proc.stdout[-2000:]}\nstderr:\n{proc.stderr[-4000:]}"
    )
    out_path = out_dir / "output.npy"
    assert out_path.is_file(), f"tenet wrote no {out_path}; files: {sorted(p.name for p in out_dir.iterdir())}"
    assert_close(np.load(out_path), np.load(ref.output), f"tenet {model} b{batch}")


@pytest.fixture(scope="module")
def ort_session():
    import onnxruntime as ort

    sessions = {}

    def get(model: str, path):
        if model not in sessions:
            sessions.clear()  # one at a time: vgg16 alone holds 0.5 GB of weights
            options = ort.SessionOptions()
            options.intra_op_num_threads = THREADS
            options.inter_op_num_threads = 1
            sessions[model] = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        return sessions[model]

    return get


@pytest.mark.parametrize(("model", "batch"), CASES, ids=CASE_IDS)
def test_onnxruntime_matches_torch(ort_session, reference, model, batch):
    ref = reference(model, batch)
    session = ort_session(model, ref.model)
    (got,) = session.run(["output"], {"input": np.load(ref.input)})
    assert_close(got, np.load(ref.output), f"onnxruntime {model} b{batch}")


def test_bert_encoder_export_is_decomposed():
    """torch 1.13's fused TransformerEncoderLayer fast path must not leak into the export."""
    ops = set(export_models.op_types(export_models.ensure_model("bert_encoder")))
    assert {"LayerNormalization", "MatMul", "Softmax", "Erf"} <= ops, sorted(ops)
    assert all("." not in op for op in ops), f"non-standard domains in {sorted(ops)}"
