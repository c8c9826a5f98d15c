"""TEESlice model-private deployment (issue 5 item 4; TEESlice §4.2.2 Eq. 6) end to end.

A public backbone (torchvision resnet18, random weights, the cached export of export_models.py)
plus two private 1x1-conv proxy slices parallel to blocks, as TEESlice builds them:

    h_layer2 <- layer2(h_layer1) + 0.8 * s1(h_layer1)       s1: Conv1x1(64->128, stride 2) + ReLU
    h_layer3 <- layer3(h_layer2) + 0.6 * s2(h_layer2)       s2: Conv1x1(128->256, stride 2)

(s2 reads layer2's output with s1 added, per Eq. 6). The slices are exported to ONNX on their own
and attached by a manifest naming the backbone's values. `tenet run --mode hybrid --slices` must
agree with PyTorch's forward pass of the backbone with the slices added (forward hooks), within
the bounds of test_hybrid.py (top-1 agreement >= 99%, relative L2 error of the logits <= 5%),
once with plain slice ONNX files and once with sealed ones (`tenet seal`); a wrong or missing
slice key is refused with a clear error.

Cache: .cache/models/teeslice/ (slice exports and the PyTorch reference, keyed by the torch
version and the settings below). Run:
    .venv/bin/python -m pytest tests/models/test_teeslice.py -q   (TENET_BIN=path/to/tenet)
"""
from __future__ import annotations

import hashlib
import json
import subprocess
import warnings
from pathlib import Path

import numpy as np
import pytest

import export_models
from test_models import require_tenet

RELATIVE_L2_BOUND = 0.05
TOP1_AGREEMENT = 0.99
THREADS = 2
IMAGES = 4
BACKBONE = "resnet18"
# name -> (input block, output block, in channels, out channels, alpha, relu)
SLICES = {
    "s1": ("layer1", "layer2", 64, 128, 0.8, True),
    "s2": ("layer2", "layer3", 128, 256, 0.6, False),
}
SLICE_SEED = 7
INPUT_SEED = 4242
REVISION = 1
CACHE = export_models.CACHE_DIR / "teeslice"


def _cache_key() -> str:
    torch = export_models._torch()
    blob = json.dumps({"torch": torch.__version__, "backbone": export_models.model_key(BACKBONE), "slices": SLICES,
                       "seed": SLICE_SEED, "input_seed": INPUT_SEED, "images": IMAGES, "revision": REVISION,
                       "opset": export_models.OPSET_VERSION}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _build_slices():
    torch = export_models._torch()
    torch.manual_seed(SLICE_SEED)
    out = {}
    for name, (_, _, cin, cout, _, relu) in SLICES.items():
        conv = torch.nn.Conv2d(cin, cout, kernel_size=1, stride=2, bias=True)
        out[name] = (torch.nn.Sequential(conv, torch.nn.ReLU()) if relu else torch.nn.Sequential(conv)).eval()
    return out


def block_output_values(backbone: Path) -> dict[str, str]:
    """The ONNX value names of the outputs of resnet18's layer1/2/3 (their last Relu)."""
    import onnx

    model = onnx.load(str(backbone), load_external_data=False)
    relus = [n for n in model.graph.node if n.op_type == "Relu"]
    names = {}
    for i, layer in enumerate(("layer1", "layer2", "layer3")):
        scoped = [n for n in model.graph.node if n.name.startswith(f"/{layer}/")]
        # Scoped node names (torch >= 1.13): the block's last node is its output Relu. Otherwise
        # count Relus: the stem's one, then two per BasicBlock, two blocks per layer.
        node = scoped[-1] if scoped else relus[4 * (i + 1)]
        assert node.op_type == "Relu", f"{layer}: last node {node.name} is {node.op_type}"
        names[layer] = node.output[0]
    return names


def ensure_exports() -> Path:
    """Exports the slices and computes the PyTorch reference into CACHE unless current."""
    key = _cache_key()
    backbone = export_models.ensure_model(BACKBONE)
    with export_models._locked("teeslice"):
        meta = export_models._read_json(CACHE / "meta.json")
        if meta is not None and meta.get("key") == key and all((CACHE / f).exists() for f in ("s1.onnx", "s2.onnx", "x.npy", "want.npy", "plain.npy")):
            return CACHE
        torch = export_models._torch()
        slices = _build_slices()
        for name, module in slices.items():
            cin = SLICES[name][2]
            side = 56 if cin == 64 else 28
            dummy = torch.randn(2, cin, side, side)

            def write(tmp: Path, module=module, dummy=dummy) -> None:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    torch.onnx.export(module, (dummy,), str(tmp), opset_version=export_models.OPSET_VERSION,
                                      input_names=["in"], output_names=["out"],
                                      dynamic_axes={"in": {0: "batch"}, "out": {0: "batch"}})

            export_models._atomic_write(CACHE / f"{name}.onnx", write)
        # The reference: the backbone with each slice added to its output block (Eq. 6).
        model = export_models.build_model(BACKBONE)
        handles = []
        for name, (_, dst, _, _, alpha, _) in SLICES.items():
            def hook(_module, inputs, output, s=slices[name], alpha=alpha):
                return output + alpha * s(inputs[0])
            handles.append(getattr(model, dst).register_forward_hook(hook))
        x = np.random.default_rng(INPUT_SEED).standard_normal((IMAGES, 3, 224, 224)).astype(np.float32)
        try:
            with torch.no_grad():
                want = model(torch.from_numpy(x)).numpy()
        finally:
            for h in handles:
                h.remove()
        with torch.no_grad():
            plain = model(torch.from_numpy(x)).numpy()
        export_models._atomic_write(CACHE / "x.npy", lambda p: export_models._save_npy(p, x))
        export_models._atomic_write(CACHE / "want.npy", lambda p: export_models._save_npy(p, want))
        export_models._atomic_write(CACHE / "plain.npy", lambda p: export_models._save_npy(p, plain))
        export_models._atomic_write(CACHE / "meta.json", lambda p: p.write_text(json.dumps({"key": key})))
    return CACHE


def write_manifest(path: Path, backbone: Path, models: dict[str, str]) -> None:
    values = block_output_values(backbone)
    slices = [{"name": n, "model": models[n], "input": values[src], "add_to": values[dst], "alpha": alpha}
              for n, (src, dst, _, _, alpha, _) in SLICES.items()]
    path.write_text(json.dumps({"version": 1, "slices": slices}, indent=1))


def tenet_run(tenet: Path, backbone: Path, x: Path, out: Path, manifest: Path, key: Path | None) -> subprocess.CompletedProcess:
    cmd = [str(tenet), "run", str(backbone), "--input", f"input={x}", "--output-dir", str(out), "--quiet",
           "--threads", str(THREADS), "--mode", "hybrid", "--accelerator", "cpu", "--masks", "1", "--warmup", "0",
           "--slices", str(manifest)]
    if key is not None:
        cmd += ["--slice-key", str(key)]
    return subprocess.run(cmd, capture_output=True, text=True)


def check_agreement(proc: subprocess.CompletedProcess, out: Path, cache: Path, label: str) -> None:
    assert proc.returncode == 0, proc.stderr.strip()
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["mode"] == "hybrid" and summary["verify_bits"] == 40 and summary["blinded"]
    assert summary["private_slices"] == list(SLICES)
    # Slice FLOPs stay in the enclave (two 1x1 convs: ~0.4% of resnet18), the rest is outsourced.
    assert 0.001 < summary["private_flops_fraction"] < 0.05
    assert summary["verified_layers"] == summary["outsourced_layers"] > 0
    assert summary["outsourced_flops_fraction"] + summary["private_flops_fraction"] <= 1.0
    want = np.load(cache / "want.npy").astype(np.float64)
    plain = np.load(cache / "plain.npy").astype(np.float64)
    got = np.load(out / "output.npy").astype(np.float64)
    assert got.shape == want.shape
    err = float(np.linalg.norm(got - want) / max(np.linalg.norm(want), 1e-30))
    slice_effect = float(np.linalg.norm(plain - want) / max(np.linalg.norm(want), 1e-30))
    agree = int(np.sum(got.argmax(axis=1) == want.argmax(axis=1)))
    print(f"{label}: top-1 agreement {agree}/{IMAGES}, relative L2 error {err:.4f} "
          f"(slices move the logits by {slice_effect:.3f}), private FLOPs {summary['private_flops_fraction']:.4f}, "
          f"latency {summary['latency_ms_p50']:.0f} ms")
    assert slice_effect > 2 * RELATIVE_L2_BOUND, "the slices barely change the output: the check would be vacuous"
    assert err <= RELATIVE_L2_BOUND, f"{label}: relative L2 error {err:.4f} > {RELATIVE_L2_BOUND}"
    assert agree >= TOP1_AGREEMENT * IMAGES, f"{label}: top-1 agreement {agree}/{IMAGES}"


def test_teeslice_plain_and_sealed_slices(tenet_bin: Path, tmp_path: Path) -> None:
    require_tenet(tenet_bin)
    cache = ensure_exports()
    backbone = export_models.onnx_path(BACKBONE)
    x = cache / "x.npy"

    # Plain slice ONNX files.
    manifest = tmp_path / "slices.json"
    write_manifest(manifest, backbone, {n: str(cache / f"{n}.onnx") for n in SLICES})
    check_agreement(tenet_run(tenet_bin, backbone, x, tmp_path / "plain", manifest, None), tmp_path / "plain", cache, "plain slices")

    # Sealed slices (relative paths: taken from the manifest's directory), one model key.
    key = tmp_path / "slices.key"
    for i, n in enumerate(SLICES):
        key_arg = ["--key-out", str(key)] if i == 0 else ["--key", str(key)]
        proc = subprocess.run([str(tenet_bin), "seal", str(cache / f"{n}.onnx"), "-o", str(tmp_path / f"{n}.tenet"), *key_arg],
                              capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
    sealed_manifest = tmp_path / "sealed.json"
    write_manifest(sealed_manifest, backbone, {n: f"{n}.tenet" for n in SLICES})
    check_agreement(tenet_run(tenet_bin, backbone, x, tmp_path / "sealed", sealed_manifest, key), tmp_path / "sealed", cache,
                    "sealed slices")

    # A wrong key, and no key: refused cleanly (an error naming the slice, no output, no crash).
    wrong = tmp_path / "wrong.key"
    proc = subprocess.run([str(tenet_bin), "seal", str(cache / "s1.onnx"), "-o", str(tmp_path / "other.tenet"), "--key-out", str(wrong)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    proc = tenet_run(tenet_bin, backbone, x, tmp_path / "wrong", sealed_manifest, wrong)
    assert proc.returncode == 1, (proc.returncode, proc.stderr)  # kDataLoss
    assert "slice 's1'" in proc.stderr and "model key does not match" in proc.stderr, proc.stderr
    assert not (tmp_path / "wrong" / "output.npy").exists()
    proc = tenet_run(tenet_bin, backbone, x, tmp_path / "nokey", sealed_manifest, None)
    assert proc.returncode == 2 and "--slice-key" in proc.stderr, (proc.returncode, proc.stderr)


def test_teeslice_manifest_errors_are_clear(tenet_bin: Path, tmp_path: Path) -> None:
    require_tenet(tenet_bin)
    cache = ensure_exports()
    backbone = export_models.onnx_path(BACKBONE)
    values = block_output_values(backbone)
    good = {"name": "s1", "model": str(cache / "s1.onnx"), "input": values["layer1"], "add_to": values["layer2"], "alpha": 0.5}
    cases = [
        (dict(good, input="no_such_value"), "input 'no_such_value' is not a value of the backbone"),
        (dict(good, add_to=values["layer3"]), "does not match add_to"),  # [B,128,28,28] vs [B,256,14,14]
        (dict(good, input=values["layer2"], add_to=values["layer1"]), "cycle"),
        (dict(good, alpha=2), "outside [0, 1]"),
        (dict(good, model=str(tmp_path / "missing.onnx")), "no such file"),
    ]
    for i, (entry, error) in enumerate(cases):
        manifest = tmp_path / f"m{i}.json"
        manifest.write_text(json.dumps({"slices": [entry]}))
        proc = tenet_run(tenet_bin, backbone, cache / "x.npy", tmp_path / f"o{i}", manifest, None)
        assert proc.returncode == 2, (entry, proc.returncode, proc.stderr)  # invalid argument / not found
        assert error in proc.stderr, (error, proc.stderr)
