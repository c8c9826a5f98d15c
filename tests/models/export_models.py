#!/usr/bin/env python3
"""Exports the reference models to ONNX and computes PyTorch reference data for them.

Used by tests/models (tenet vs PyTorch, ONNX Runtime vs PyTorch) and by bench/bench_engine.py.
Run it with the project's virtual environment, which sees Debian's torch:

    .venv/bin/python tests/models/export_models.py                       # export the 9 default models
    .venv/bin/python tests/models/export_models.py --list-ops resnet50 bert_encoder
    .venv/bin/python tests/models/export_models.py --batch 1 4 resnet18  # also write reference data

Cache layout, under the repository root (gitignored):

    .cache/models/<name>.onnx               the exported model (random weights, torch.manual_seed(0))
    .cache/models/<name>.json               sidecar: cache key, versions, op types, export time
    .cache/models/<name>/b<B>/input.npy     float32 standard-normal input, fixed seed per (name, B)
    .cache/models/<name>/b<B>/output_torch.npy   PyTorch's fp32 output for that input
    .cache/models/<name>/b<B>/meta.json     the model key the reference was computed for

The cache key hashes the model name, the torch/torchvision versions and every export setting, so
changing any of them re-exports the model and recomputes its references on next use. Writers take
a per-model lock and write through temporary files, so concurrent runs do not see partial files.
"""
from __future__ import annotations

import argparse
import contextlib
import fcntl
import functools
import hashlib
import json
import os
import sys
import tempfile
import time
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[2]
CACHE_DIR = REPO_ROOT / ".cache" / "models"

# The models the test harness and the benchmark cover by default.
DEFAULT_MODELS = (
    "resnet18",
    "resnet50",
    "mobilenet_v2",
    "mobilenet_v3_small",
    "vgg16",
    "densenet121",
    "inception_v3",
    "squeezenet1_0",
    "bert_encoder",
)

# More torchvision classification models of the same op families (channel shuffles, SE blocks
# with SiLU/Sigmoid, grouped convs, LRN-free AlexNet, deeper ResNets/DenseNets). The model tests
# run them at batch 1 only, to keep the default test run within minutes on 2 cores.
EXTRA_MODELS = (
    "shufflenet_v2_x1_0",
    "googlenet",
    "efficientnet_b0",
    "regnet_y_400mf",
    "mnasnet1_0",
    "resnext50_32x4d",
    "alexnet",
    "resnet101",
    "resnet152",
    "densenet201",
)

# Bump when the model builders below change in a way the versions do not capture.
EXPORT_REVISION = 1
WEIGHT_SEED = 0
# Traced with batch 2 (not 1) so that no batch-of-one specialisation gets baked into the graph; the
# batch axis is dynamic in the exported model either way.
EXPORT_BATCH = 2
OPSET_VERSION = 17
REFERENCE_THREADS = 2

BERT_SEQ_LEN = 128
BERT_D_MODEL = 256


@dataclass(frozen=True)
class ModelSpec:
    name: str
    sample_shape: tuple[int, ...]  # input shape without the batch axis
    build: Callable[[], "torch.nn.Module"]  # noqa: F821 (torch is imported lazily)


def _torch():
    import torch

    return torch


def _build_bert_encoder():
    torch = _torch()

    class BertEncoder(torch.nn.Module):
        """A BERT-style post-norm encoder stack: [batch, seq, d_model] -> [batch, seq, d_model]."""

        def __init__(self) -> None:
            super().__init__()
            layer = torch.nn.TransformerEncoderLayer(
                d_model=BERT_D_MODEL,
                nhead=4,
                dim_feedforward=1024,
                dropout=0.0,
                activation="gelu",
                batch_first=True,
                norm_first=False,
            )
            # enable_nested_tensor=False: no nested-tensor conversion in the stack. The per-layer
            # fast path (torch._transformer_encoder_layer_fwd) is avoided during export by tracing
            # with grad enabled, see _export().
            self.encoder = torch.nn.TransformerEncoder(layer, num_layers=4, enable_nested_tensor=False)

        def forward(self, x):
            return self.encoder(x)

    return BertEncoder()


def _torchvision_builder(name: str) -> Callable[[], "torch.nn.Module"]:  # noqa: F821
    def build():
        import torchvision

        kwargs = {}
        if name in ("inception_v3", "googlenet"):
            # One output in eval mode, PyTorch's default initialisation (the truncated-normal
            # init_weights path is slow and irrelevant for random-weight comparisons).
            kwargs = {"aux_logits": False, "init_weights": False}
        return torchvision.models.get_model(name, weights=None, **kwargs)

    return build


def model_spec(name: str) -> ModelSpec:
    if name == "bert_encoder":
        return ModelSpec(name, (BERT_SEQ_LEN, BERT_D_MODEL), _build_bert_encoder)
    import torchvision

    if name not in torchvision.models.list_models(module=torchvision.models):
        raise ValueError(
            f"unknown model '{name}': expected bert_encoder or a torchvision classification model "
            f"(resnet50, densenet201, efficientnet_b0, ...)"
        )
    side = 299 if name == "inception_v3" else 224
    return ModelSpec(name, (3, side, side), _torchvision_builder(name))


def _export_settings(name: str) -> dict:
    return {
        "opset_version": OPSET_VERSION,
        "do_constant_folding": True,
        "input_names": ["input"],
        "output_names": ["output"],
        "dynamic_axes": {"input": {0: "batch"}, "output": {0: "batch"}},
        "export_batch": EXPORT_BATCH,
        "weight_seed": WEIGHT_SEED,
        "sample_shape": list(model_spec(name).sample_shape),
        "revision": EXPORT_REVISION,
    }


def model_key(name: str) -> str:
    """A short hash of everything that determines the exported model."""
    torch = _torch()
    import torchvision

    blob = json.dumps(
        {
            "name": name,
            "torch": torch.__version__,
            "torchvision": torchvision.__version__,
            "settings": _export_settings(name),
        },
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def onnx_path(name: str) -> Path:
    return CACHE_DIR / f"{name}.onnx"


def sidecar_path(name: str) -> Path:
    return CACHE_DIR / f"{name}.json"


def reference_dir(name: str, batch: int) -> Path:
    return CACHE_DIR / name / f"b{batch}"


@contextlib.contextmanager
def _locked(name: str) -> Iterator[None]:
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    with open(CACHE_DIR / f".{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


@functools.lru_cache(maxsize=2)
def build_model(name: str):
    """The PyTorch model in eval mode with the deterministic random weights of the export."""
    torch = _torch()
    torch.manual_seed(WEIGHT_SEED)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = model_spec(name).build()
    return model.eval()


def op_types(path: Path) -> list[str]:
    """Sorted ONNX op types used in the model at `path`, including those in subgraphs."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    ops: set[str] = set()

    def visit(graph) -> None:
        for node in graph.node:
            ops.add(node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}.{node.op_type}")
            for attr in node.attribute:
                if attr.type == onnx.AttributeProto.GRAPH:
                    visit(attr.g)
                for g in attr.graphs:
                    visit(g)

    visit(model.graph)
    return sorted(ops)


def _export(name: str, dst: Path) -> None:
    torch = _torch()
    settings = _export_settings(name)
    model = build_model(name)
    torch.manual_seed(WEIGHT_SEED)
    dummy = torch.randn(EXPORT_BATCH, *model_spec(name).sample_shape)
    # Grad enabled (the parameters require grad): torch 1.13's TransformerEncoderLayer then takes
    # the decomposed path (MatMul/Softmax/LayerNormalization) rather than its fused fast path.
    with torch.enable_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (dummy,),
            str(dst),
            opset_version=settings["opset_version"],
            do_constant_folding=settings["do_constant_folding"],
            input_names=settings["input_names"],
            output_names=settings["output_names"],
            dynamic_axes=settings["dynamic_axes"],
        )


def ensure_model(name: str, force: bool = False, verbose: bool = False) -> Path:
    """Exports `name` to .cache/models/<name>.onnx unless a current export is there; returns it."""
    key = model_key(name)
    dst = onnx_path(name)
    with _locked(name):
        meta = _read_json(sidecar_path(name))
        if not force and dst.exists() and meta is not None and meta.get("key") == key:
            return dst
        if verbose:
            print(f"exporting {name} ...", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        _atomic_write(dst, lambda tmp: _export(name, tmp))
        seconds = time.perf_counter() - t0
        torch = _torch()
        import onnx
        import torchvision

        sidecar = {
            "key": key,
            "name": name,
            "torch": torch.__version__,
            "torchvision": torchvision.__version__,
            "onnx": onnx.__version__,
            "settings": _export_settings(name),
            "op_types": op_types(dst),
            "export_seconds": round(seconds, 2),
        }
        _atomic_write(sidecar_path(name), lambda tmp: tmp.write_text(json.dumps(sidecar, indent=2) + "\n"))
        if verbose:
            print(f"exported {name} in {seconds:.1f} s -> {dst}", file=sys.stderr, flush=True)
        return dst


@dataclass(frozen=True)
class Reference:
    model: Path
    input: Path
    output: Path


def input_seed(name: str, batch: int) -> int:
    return zlib.crc32(f"{name}/b{batch}".encode())


def make_input(name: str, batch: int) -> np.ndarray:
    rng = np.random.default_rng(input_seed(name, batch))
    return rng.standard_normal((batch, *model_spec(name).sample_shape), dtype=np.float32)


def ensure_reference(name: str, batch: int, force: bool = False, verbose: bool = False) -> Reference:
    """Ensures the export and the PyTorch reference input/output for batch size `batch`."""
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    model_file = ensure_model(name, verbose=verbose)
    key = model_key(name)
    ref_dir = reference_dir(name, batch)
    ref = Reference(model_file, ref_dir / "input.npy", ref_dir / "output_torch.npy")
    with _locked(name):
        meta = _read_json(ref_dir / "meta.json")
        if not force and meta is not None and meta.get("key") == key and ref.input.exists() and ref.output.exists():
            return ref
        torch = _torch()
        x = make_input(name, batch)
        torch.set_num_threads(REFERENCE_THREADS)
        t0 = time.perf_counter()
        with torch.inference_mode():
            y = build_model(name)(torch.from_numpy(x))
        y = np.ascontiguousarray(y.numpy(), dtype=np.float32)
        if verbose:
            print(f"reference {name} b{batch}: {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
        _atomic_write(ref.input, lambda tmp: _save_npy(tmp, x))
        _atomic_write(ref.output, lambda tmp: _save_npy(tmp, y))
        meta = {"key": key, "batch": batch, "input_seed": input_seed(name, batch),
                "input_shape": list(x.shape), "output_shape": list(y.shape)}
        _atomic_write(ref_dir / "meta.json", lambda tmp: tmp.write_text(json.dumps(meta, indent=2) + "\n"))
        return ref


def _save_npy(path: Path, array: np.ndarray) -> None:
    with open(path, "wb") as f:  # a file object, so numpy does not append ".npy" to the temp name
        np.save(f, array)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="*",
                        help=f"model names (default: {' '.join(DEFAULT_MODELS)}; the model tests also use "
                             f"{' '.join(EXTRA_MODELS)})")
    parser.add_argument("--list-ops", action="store_true", help="print the ONNX op types of each model")
    parser.add_argument("--batch", type=int, nargs="*", default=[],
                        help="also write reference data for these batch sizes")
    parser.add_argument("--force", action="store_true", help="re-export and recompute even if cached")
    args = parser.parse_args(argv)

    names = args.models or list(DEFAULT_MODELS)
    for name in names:
        model_spec(name)  # fail early on unknown names
    t_all = time.perf_counter()
    for name in names:
        t0 = time.perf_counter()
        path = ensure_model(name, force=args.force, verbose=True)  # once, then the references
        for batch in args.batch:
            ensure_reference(name, batch, force=args.force, verbose=True)
        if args.list_ops:
            ops = op_types(path)
            print(f"{name} ({len(ops)} op types): {' '.join(ops)}", flush=True)
        else:
            print(f"{name}: {path} ({time.perf_counter() - t0:.1f} s)", flush=True)
    print(f"done in {time.perf_counter() - t_all:.1f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
