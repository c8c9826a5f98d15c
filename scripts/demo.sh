#!/usr/bin/env bash
# The main job: set up, build, then serve the bundled demo model (a torchvision ResNet-18 with
# random weights, exported to ONNX here; models are generated, not committed) confidentially on the
# sim platform and query it from an attesting client:
#   model owner: tenet sim init, tenet seal, tenet measure, policy, tenet keybroker
#   operator:    tenet serve (two enclave processes; TLS terminates inside them)
#   client:      tenet attest (verifies the RA-TLS certificate against the policy), tenet infer
# and compare the served output with PyTorch's. The sim platform is NOT SECURE: it runs the real
# protocol and cryptography, but no hardware protects the enclaves.
#   DEMO_MODEL=mobilenet_v2 bash scripts/demo.sh   another torchvision model
#   DEMO_KEEP=1 bash scripts/demo.sh               keep serving until Ctrl-C (try curl, tritonclient)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/build.sh
model=${DEMO_MODEL:-resnet18}
echo "demo: exporting $model (cached under .cache/models)"
.venv/bin/python tests/models/export_models.py "$model" --batch 1 >/dev/null
keep=(); [ "${DEMO_KEEP:-0}" = 1 ] && keep=(--keep)
.venv/bin/python tests/e2e/deployment.py --model "$model" --enclaves 2 "${keep[@]}"
