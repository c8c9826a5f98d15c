#!/usr/bin/env bash
# The main job: set up, build, and run the bundled demo model (a torchvision ResNet-18 with random
# weights, exported to ONNX here; models are generated, not committed), then check tenet's output
# against PyTorch's. Serving over attested TLS comes with the serving work; until then the demo
# runs the engine from the command line.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/build.sh
PY=.venv/bin/python
model=${DEMO_MODEL:-resnet18}
echo "demo: exporting $model (cached under .cache/models)"
"$PY" tests/models/export_models.py "$model" --batch 1 >/dev/null
dir=.cache/models/$model/b1
out=$(mktemp -d)
echo "demo: tenet inspect (first lines)"
build/tenet inspect ".cache/models/$model.onnx" > "$out/inspect.txt"
head -4 "$out/inspect.txt"
echo "demo: tenet run"
build/tenet run ".cache/models/$model.onnx" --input "input=$dir/input.npy" --output-dir "$out" --bench 10
"$PY" - "$out/output.npy" "$dir/output_torch.npy" <<'PYEOF'
import sys, numpy as np
got, ref = np.load(sys.argv[1]), np.load(sys.argv[2])
err = np.abs(got - ref).max() / max(np.abs(ref).max(), 1e-6)
print(f"demo: top-5 classes tenet {np.argsort(-got[0])[:5].tolist()}  pytorch {np.argsort(-ref[0])[:5].tolist()}")
print(f"demo: max abs error relative to output scale: {err:.2e} (bound 1e-4)")
sys.exit(0 if err <= 1e-4 else 1)
PYEOF
