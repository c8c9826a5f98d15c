#!/usr/bin/env bash
# The test command: set up, build, run the unit tests, the sanitizer build's unit tests, the fuzz
# targets briefly, and the model tests against PyTorch. Exit status is non-zero on any failure.
#   TENET_TEST_QUICK=1  skips the sanitizer build and the fuzzers (for local iteration).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/build.sh
jobs=$(nproc)

echo "== unit tests (Release)"
(cd build && ctest --output-on-failure -j"$jobs")

if [ "${TENET_TEST_QUICK:-0}" != 1 ]; then
  echo "== unit tests under AddressSanitizer + UndefinedBehaviorSanitizer"
  gen=(); command -v ninja >/dev/null && gen=(-G Ninja)
  cmake -S . -B build-asan "${gen[@]}" -DCMAKE_BUILD_TYPE=Debug -DTENET_SANITIZE=address,undefined >/dev/null
  cmake --build build-asan -j"$jobs"
  (cd build-asan && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 ctest --output-on-failure -j"$jobs")

  echo "== fuzz targets (libFuzzer, ${TENET_FUZZ_SECONDS:-30}s each)"
  CC=clang CXX=clang++ cmake -S . -B build-fuzz "${gen[@]}" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTENET_FUZZ=ON \
    -DTENET_BUILD_TESTS=OFF >/dev/null
  cmake --build build-fuzz -j"$jobs"
  for f in build-fuzz/*_fuzz; do
    corpus=$(mktemp -d)
    seeds="fuzz/corpus/$(basename "$f")"
    [ -d "$seeds" ] && cp -r "$seeds"/. "$corpus"/
    "$f" -max_total_time="${TENET_FUZZ_SECONDS:-30}" -rss_limit_mb=4096 -print_final_stats=0 "$corpus" 2>&1 | tail -2
  done
fi

echo "== model tests (tenet vs PyTorch and ONNX Runtime), serving and end-to-end tests (sim platform)"
TENET_BIN="$PWD/build/tenet" .venv/bin/python -m pytest tests/models tests/serving tests/e2e -q -p no:cacheprovider
