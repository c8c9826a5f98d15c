#!/usr/bin/env bash
# The GPU half of issue 5, in one command on a machine with an NVIDIA GPU (run from the repository
# root, with .device/bundle.tar.xz made here by scripts/device_bundle.sh; needs python3 with
# PyTorch, ONNX and NumPy there to export the random-weight test models):
#
#   1. the accelerator unit tests, CUDA cases included: the CUDA backend equals the reference
#      (and so the CPU backend) bit for bit on the standard cases and maximal operands;
#   2. hybrid outputs through the CUDA and the CPU accelerator, bitwise equal on resnet18 and
#      resnet50 (the products are exact, so the unblinded logits must not differ by a bit);
#   3. bench/bench_hybrid.py --accelerator cuda: tee vs plain accelerator vs hybrid vs
#      hybrid+verify, images/s (the bar: resnet50 hybrid+verify >= 4x tee, hybrid >= 10x tee).
#
# Results are printed and, where $OUT is set (the device tool's output folder), saved there.
#   DEVICE_CHECK_MODELS=resnet50  DEVICE_CHECK_SIZES=224  DEVICE_CHECK_RUNS=10
#   DEVICE_CHECK_PIPELINE=4  DEVICE_CHECK_THREADS=4 (hybrid: pipeline x threads; tee gets their product)
#   DEVICE_CHECK_ACCELERATOR=cuda (cpu: a dry run of this script on a machine without a GPU)
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-/tmp/device-check-out}
mkdir -p "$out"
accel=${DEVICE_CHECK_ACCELERATOR:-cuda}
dir=/tmp/tenet-device
rm -rf "$dir" && mkdir -p "$dir"
tar -C "$dir" -xJf .device/bundle.tar.xz || { echo "device_check: no .device/bundle.tar.xz (run scripts/device_bundle.sh and carry .device)"; exit 1; }
# The CUDA runtime and cuBLAS of the machine: the toolkit's, or the pip wheels beside PyTorch.
cuda_libs=""
for f in $(ls /usr/local/cuda/lib64/libcudart.so.* /usr/local/cuda/lib/libcudart.so.* 2>/dev/null) \
         $(find / -xdev -name 'libcudart.so.1[0-9]*' -not -path '/proc/*' 2>/dev/null | head -3); do
  d=$(dirname "$f")
  [ -e "$d/libcublas.so.13" ] || [ -e "$d/libcublas.so" ] || ls "$d"/libcublas.so.* >/dev/null 2>&1 || continue
  cuda_libs=$d
  break
done
export LD_LIBRARY_PATH="$dir/lib${cuda_libs:+:$cuda_libs}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export TENET_BIN=$dir/bin/tenet
py=${PYTHON:-python3}
status=0
step1() {
  local s=0
  echo "== device_check $(date -u +%FT%TZ), accelerator $accel, CUDA libraries: ${cuda_libs:-not found}"
  command -v nvidia-smi >/dev/null && nvidia-smi -L
  nproc
  echo "== 1. accelerator unit tests"
  "$dir/bin/tenet_accel_tests" --gtest_brief=1 || s=1
  "$dir/bin/tenet_accel_tests" --gtest_filter='Cuda*' 2>&1 | grep -E "SKIPPED|OK|FAILED|Skipped" | head -20
  return $s
}
step1 2>&1 | tee "$out/device_check.log"
[ "${PIPESTATUS[0]}" = 0 ] || status=1

step2() {
  echo "== 2. hybrid outputs, $accel accelerator against the cpu accelerator, bitwise"
  PYTHONPATH=tests/models "$py" - "$accel" <<'EOF'
import subprocess, sys, tempfile, os, json
from pathlib import Path
import numpy as np
import export_models
accel = sys.argv[1]
tenet = os.environ["TENET_BIN"]
bad = 0
with tempfile.TemporaryDirectory() as t:
    t = Path(t)
    for name in ["resnet18", "resnet50"]:
        model = export_models.ensure_model(name)
        x = t / "x.npy"
        np.save(x, np.random.default_rng(1).standard_normal((2, 3, 224, 224)).astype(np.float32))
        outs = []
        for a in ["cpu", accel]:  # with accel=cpu (a dry run): two runs under different masks
            d = t / f"{name}_{len(outs)}"
            r = subprocess.run([tenet, "run", str(model), "--input", f"input={x}", "--output-dir", str(d), "--quiet",
                                "--mode", "hybrid", "--accelerator", a], capture_output=True, text=True)
            if r.returncode != 0:
                print(f"{name} {a}: FAILED {r.stderr.strip()[-300:]}"); bad += 1; break
            outs.append(np.load(d / "output.npy"))
        if len(outs) == 2:
            same = outs[0].tobytes() == outs[1].tobytes()
            print(f"{name}: cpu vs {accel}: {'bitwise equal' if same else 'DIFFERENT, max abs diff %g' % np.abs(outs[0] - outs[1]).max()}")
            bad += 0 if same else 1
sys.exit(1 if bad else 0)
EOF
}
step2 2>&1 | tee -a "$out/device_check.log"
[ "${PIPESTATUS[0]}" = 0 ] || status=1

step3() {
  echo "== 3. bench_hybrid"
  PYTHONUNBUFFERED=1 "$py" bench/bench_hybrid.py --accelerator "$accel" --tenet "$TENET_BIN" \
    --models "${DEVICE_CHECK_MODELS:-resnet50,resnet18,resnet101}" --sizes "${DEVICE_CHECK_SIZES:-224,32}" \
    --runs "${DEVICE_CHECK_RUNS:-10}" --pipeline "${DEVICE_CHECK_PIPELINE:-4}" --threads "${DEVICE_CHECK_THREADS:-4}" \
    --json "$out/bench_hybrid.json"
}
step3 2>&1 | tee -a "$out/device_check.log"
[ "${PIPESTATUS[0]}" = 0 ] || status=1
echo "device_check: exit $status (log and JSON in $out)"
exit $status
