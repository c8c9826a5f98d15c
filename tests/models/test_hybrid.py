"""Hybrid mode (issue 5) vs the float engine on whole models: resnet18 and resnet50 (torchvision,
random weights, 224x224), over a fixed input set.

`tenet run --mode hybrid --accelerator cpu` (8-bit quantized, blinded, Freivalds-verified with the
default 40 bits) must agree with the plain engine (`tenet run`, itself within 1e-4 of PyTorch,
see test_models.py):
  * top-1 agreement >= 99% over the input set (with these set sizes: every image);
  * relative L2 error of the logits ||hybrid - float|| / ||float|| <= RELATIVE_L2_BOUND per batch
    (8-bit per-tensor activations and per-channel weights: ~2% measured on both models);
  * the run verified every outsourced layer and outsourced > 99% of the FLOPs.

Run: .venv/bin/python -m pytest tests/models/test_hybrid.py -q   (TENET_BIN=path/to/tenet)
"""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

import export_models
from test_models import require_tenet

RELATIVE_L2_BOUND = 0.05
TOP1_AGREEMENT = 0.99
THREADS = 2
# (model, images, batch): the CPU accelerator takes ~1 s (resnet18) / ~3 s (resnet50) per image.
CASES = [("resnet18", 16, 8), ("resnet50", 8, 4)]


def run(tenet: Path, model: Path, x: Path, out: Path, extra: list[str]) -> dict:
    cmd = [str(tenet), "run", str(model), "--input", f"input={x}", "--output-dir", str(out), "--quiet",
           "--threads", str(THREADS)] + extra
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 0, f"{' '.join(cmd)}: {proc.stderr.strip()}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("name,images,batch", CASES, ids=[c[0] for c in CASES])
def test_hybrid_agrees_with_float_engine(name: str, images: int, batch: int, tenet_bin: Path, tmp_path: Path) -> None:
    require_tenet(tenet_bin)
    model = export_models.ensure_model(name)
    rng = np.random.default_rng(20260 + images)
    agree = 0
    worst = 0.0
    for i in range(images // batch):
        x = tmp_path / f"x{i}.npy"
        np.save(x, rng.standard_normal((batch, 3, 224, 224)).astype(np.float32))
        run(tenet_bin, model, x, tmp_path / f"float{i}", [])
        summary = run(tenet_bin, model, x, tmp_path / f"hybrid{i}",
                      ["--mode", "hybrid", "--accelerator", "cpu", "--masks", "1", "--warmup", "0"])
        assert summary["mode"] == "hybrid" and summary["verify_bits"] == 40
        assert summary["verified_layers"] == summary["outsourced_layers"] > 0
        assert summary["outsourced_flops_fraction"] > 0.99
        want = np.load(tmp_path / f"float{i}" / "output.npy").astype(np.float64)
        got = np.load(tmp_path / f"hybrid{i}" / "output.npy").astype(np.float64)
        assert got.shape == want.shape
        worst = max(worst, float(np.linalg.norm(got - want) / max(np.linalg.norm(want), 1e-30)))
        agree += int(np.sum(got.argmax(axis=1) == want.argmax(axis=1)))
    print(f"{name}: top-1 agreement {agree}/{images}, worst relative L2 error {worst:.4f}")
    assert worst <= RELATIVE_L2_BOUND, f"{name}: relative L2 error {worst:.4f} > {RELATIVE_L2_BOUND}"
    assert agree >= TOP1_AGREEMENT * images, f"{name}: top-1 agreement {agree}/{images}"
