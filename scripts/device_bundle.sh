#!/usr/bin/env bash
# Packs what a GPU machine needs to run tenet's CUDA checks into .device/bundle.tar.xz (ignored by
# git), for machines that have a GPU, the CUDA runtime and Python with PyTorch, but cannot install
# anything (no network) — such as the H100 machines lent to some development sessions.
#
# The bundle holds build/tenet, the CUDA backend module (libtenet_accel_cuda.so, which tenet loads
# from its own directory), the accelerator unit tests, and every shared library they need that a
# stock glibc system may lack (oneDNN, protobuf, ONNX, gRPC, OpenSSL, ...), found with ldd. The C
# and C++ runtimes and the CUDA libraries are left to the target machine (a newer glibc/libstdc++
# runs these binaries; cudart/cuBLAS must match its driver anyway). Then, on that machine:
#
#   bash bench/device_check.sh        # see there: unpacks the bundle, runs the checks
#
# Usage: bash scripts/device_bundle.sh   (builds build/ first if needed; needs the CUDA toolkit)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh -DTENET_CUDA=ON
bins=(build/tenet build/tenet_accel_tests)
for b in "${bins[@]}" build/libtenet_accel_cuda.so; do
  [ -f "$b" ] || { echo "device_bundle: $b is missing" >&2; exit 1; }
done
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/bin" "$stage/lib" .device
cp "${bins[@]}" build/libtenet_accel_cuda.so "$stage/bin/"
# Libraries the target provides itself: glibc's, the C++ runtime, and CUDA's (driver-matched).
skip='^(libc|libm|libdl|librt|libpthread|libresolv|libutil|ld-linux-x86-64|libstdc\+\+|libgcc_s|libcuda|libcudart|libcublas|libcublasLt|libnvidia-.*)\.so'
ldd "${bins[@]}" | awk '/=> \// {print $1, $3}' | sort -u | while read -r name path; do
  if [[ ! "$name" =~ $skip ]]; then cp -L "$path" "$stage/lib/$name"; fi
done
tar -C "$stage" -cJf .device/bundle.tar.xz bin lib
echo "device_bundle: .device/bundle.tar.xz ($(du -h .device/bundle.tar.xz | cut -f1)): $(ls "$stage/bin" | tr '\n' ' ')+ $(ls "$stage/lib" | wc -l) libraries"
echo "device_bundle: carry .device to the GPU machine and run: bash bench/device_check.sh"
