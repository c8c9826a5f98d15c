// `tenet run MODEL --mode hybrid ...`: the hybrid counterpart of the plain `tenet run` (same
// --input NAME=FILE.npy / --output-dir handling), for scripts and bench/bench_hybrid.py. The
// CLI (src/cli/main.cc) parses the flags and prints the returned JSON as its last line.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/status.h"

namespace tenet::hybrid {

struct HybridRunArgs {
  std::string model;
  std::vector<std::string> inputs;  // NAME=FILE.npy
  std::string output_dir;
  int threads = 0;  // enclave threads per instance (and the CPU accelerator's)
  int bench = 0;
  int warmup = 5;
  bool quiet = false;
  // cpu | cuda | unix:PATH | exact (the enclave's own exact loops, in process: for tests)
  std::string accelerator = "cpu";
  int verify_bits = 40;  // 0: --no-verify
  int pipeline_depth = 1;
  int masks = -1;  // unblinding terms precomputed per layer; -1: warmup + bench + 1
  // INSECURE benchmark baseline: the linear layers on the accelerator without blinding or
  // verification (verify_bits is ignored).
  bool insecure_plain = false;
  // TEESlice (slices.h): a manifest of private slices attached to the model (the public
  // backbone); sealed slices are opened with the model key in `slice_key` (a key file).
  std::string slices;
  std::string slice_key;
};

// Runs the model once (writing one .npy per output), then `bench` more times, and returns the
// summary: latency_ms_p50, throughput_per_s, verified_layers, outsourced_flops_fraction, mode,
// accelerator, verify_bits, per-phase times, private_slices, private_flops_fraction, ...
Result<nlohmann::json> run_hybrid(const HybridRunArgs& args);

}  // namespace tenet::hybrid
