#!/usr/bin/env bash
# Installs everything tenet needs on a fresh Debian 12 machine: build tools and libraries from
# Debian, the Python reference stack (Debian's torch/torchvision/onnx), and the peers from PyPI
# (onnxruntime) into a virtual environment at .venv that sees Debian's packages.
# Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."

debs=(
  build-essential cmake ninja-build pkg-config git ca-certificates
  clang libclang-rt-14-dev clang-format clang-tidy
  libdnnl-dev libonnx-dev libprotobuf-dev protobuf-compiler
  libssl-dev libcli11-dev nlohmann-json3-dev libspdlog-dev
  libcbor-dev libgrpc++-dev protobuf-compiler-grpc libcpp-httplib-dev libsimdjson-dev prometheus-cpp-dev
  curl openssl
  libgtest-dev libgmock-dev libbenchmark-dev
  python3 python3-venv python3-pip python3-numpy python3-torch python3-torchvision python3-onnx
)
missing=()
for p in "${debs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# Debian's python3 (not a pyenv shim) carries torch; the venv sees it through system site-packages.
PY=/usr/bin/python3
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv (with Debian's site-packages)"
  "$PY" -m venv --system-site-packages .venv
fi
if ! .venv/bin/python -c "import onnxruntime, tritonclient.http, tritonclient.grpc" 2>/dev/null; then
  echo "setup: installing peers (onnxruntime, tritonclient) from PyPI into .venv"
  .venv/bin/pip install -q --disable-pip-version-check -r scripts/requirements-peers.txt
fi
.venv/bin/python -c "import torch, torchvision, onnx, onnxruntime, numpy, tritonclient.grpc; print('setup: python ok: torch', torch.__version__, 'torchvision', torchvision.__version__, 'onnx', onnx.__version__, 'onnxruntime', onnxruntime.__version__)"
