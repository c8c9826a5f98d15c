// Trusted (enclave side): the outsourced linear layers of hybrid mode, as engine kernels.
//
// HybridRuntime::make_kernel is a cpu::CompileOptions::kernel_override. It claims Conv (2-D) and
// Gemm / MatMul / FusedMatMul nodes with constant weights whose products are exact in Z_p
// (reduction length K < 66,572); every other node (pooling, residual adds not fused, softmax,
// ...) keeps the engine's own CPU kernels, inside the enclave. A claimed node requires plain
// (row-major) inputs and writes a plain output. Per call, one path gives privacy and integrity:
//
//   1. quantize x to int8 (one scale per image of the batch, see RuntimeOptions::images; weights
//      were quantized per output channel at build)
//   2. blind: x' = x_q + r mod p, r the one-time pad of (layer, use counter) (pad_prg.h)
//   3. y' = accelerator.run(x')                        (untrusted; may lie or fail)
//   4. reject values >= p; Freivalds-check y' against x' (freivalds.h), `repetitions` times
//   5. unblind: y = y' - W·r, W·r precomputed and sealed outside the enclave, consumed once
//      (mask_vault.h); when the pool of precomputed terms is dry, W·r is computed here, on the
//      request path, with the trusted exact loops (counted in stats: masks_inline)
//   6. lift y to signed (centred, exact), dequantize (x scale · per-channel weight scale ·
//      alpha), add the bias, apply the node's post-ops (sum residual, relu, clip, ...) in fp32.
// Any failure (accelerator error, malformed or wrong result, missing / reused / tampered term)
// fails the request with an error naming the layer; no output is produced from a bad result.
//
// Unblinding terms are precomputed ahead of time, by precompute(n) (n terms per layer, in the
// enclave with the trusted exact engine), not in a background thread: on the 2-core hosts tenet
// is developed on a background producer would steal the cores the request path measures.
//
// Layer state (quantized weights, accelerator handle, check vectors, scales) is shared by every
// compiled instance of the model, so that several requests can be in flight at once, each on its
// own cpu::CompiledModel, sharing one thread-safe accelerator (pipelining).
#pragma once

#include <array>
#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "accel/accelerator.h"
#include "engine/cpu/kernel.h"
#include "hybrid/freivalds.h"
#include "hybrid/host_mask_store.h"
#include "hybrid/mask_vault.h"

namespace tenet::hybrid {

struct OutsourcedLayer {
  uint32_t index = 0;
  std::string node_name;
  accel::LinearSpec spec;       // quantized (public) weights
  int32_t accel_handle = -1;    // on the untrusted accelerator
  int32_t trusted_handle = -1;  // on the in-enclave exact engine
  Shape src_shape;              // as the accelerator sees it: [N, C, H, W] or [M, K]
  Shape dst_shape;              // [N, Cout, Ho, Wo] or [M, Nout]
  int64_t positions = 1;        // conv: Ho·Wo (channel of dst element i = i / positions % Cout)
  int64_t images = 1;           // src and dst are this many equal image-major blocks, each with its own x scale
  std::vector<float> weight_scales;  // per output channel, times the node's alpha
  std::vector<float> bias;           // per output channel, or empty
  std::vector<ir::PostOp> post_ops;
  bool has_sum = false;
  int64_t flops = 0;
  FreivaldsCheck check;
};

// Counters in nanoseconds / counts, added by every request on every instance.
struct RuntimeCounters {
  std::atomic<int64_t> quantize_blind_ns{0}, accelerator_ns{0}, verify_ns{0}, unblind_ns{0}, dequantize_ns{0};
  std::atomic<int64_t> layer_calls{0}, verifications{0}, verification_failures{0};
  std::atomic<int64_t> masks_consumed{0}, masks_inline{0}, masks_precomputed{0};
  std::atomic<int64_t> precompute_ns{0};
};

struct RuntimeOptions {
  std::shared_ptr<accel::Accelerator> accelerator;  // untrusted
  std::shared_ptr<accel::Accelerator> trusted;      // in-enclave exact engine (precompute)
  int repetitions = 2;
  bool allow_inline_masks = true;
  // INSECURE, for benchmarks only: send x_q itself (no pad, no unblinding term): the accelerator
  // sees the activations. The baseline "plain accelerator" of bench/bench_hybrid.py.
  bool insecure_no_blinding = false;
  int64_t min_flops = 0;  // nodes with fewer FLOPs stay in the enclave
  // The batch the model is compiled for (HybridModel::compile: the common dimension 0 of inputs
  // whose dimension 0 is variable, else 1). Each outsourced layer's input is quantized with one
  // scale per image, not one over the whole batch, so that an image's result does not depend on
  // the images it was batched with: batched outputs are bitwise those of the image alone, and no
  // value of one image (its largest |x|) reaches another's output. This assumes image-major
  // activations (dimension 0 of every outsourced layer's input a multiple of `images`, as in
  // NCHW convolutions and [batch·rows, K] matmuls); a layer whose input is not is left in the
  // enclave (never quantized across images).
  int64_t images = 1;
  // Private slices (TEESlice): nodes (by name, after optimization) whose weights must never
  // leave the enclave; they run on the engine's kernels inside it.
  std::set<std::string> private_nodes;
};

// A partial batch: while one is alive on a thread, the outsourced kernels that thread runs (the
// engine runs an instance's steps on the caller's thread) treat only the first `n` images of a
// batch as real: they quantize, blind, send, check and unblind those alone and write zeros for
// the others (padding, whose outputs the caller drops), so a batch of k < B requests costs the
// accelerator k images, not B. The unblinding term is still one B-image term, consumed once; the
// pad's unsent part is never revealed. The accelerator learns k (the host, which relays every
// request, knows it anyway). Without one (0, or n >= B) every image is real: the safe default.
class ActiveImages {
 public:
  explicit ActiveImages(int64_t n);
  ~ActiveImages();
  ActiveImages(const ActiveImages&) = delete;
  ActiveImages& operator=(const ActiveImages&) = delete;
  static int64_t current();  // 0: all

 private:
  int64_t previous_;
};

class HybridRuntime {
 public:
  explicit HybridRuntime(RuntimeOptions options);
  ~HybridRuntime();

  // The kernel_override: an outsourced kernel, or nullptr to let the engine's kernels run it.
  Result<std::unique_ptr<cpu::Kernel>> make_kernel(cpu::KernelInputs& in);
  // After the first instance is compiled: derives the model id from the layers' public weights
  // and opens the mask vault over `store`.
  Status finalize(HostMaskStore* store);
  // Deposits `count` sealed unblinding terms per layer.
  Status precompute(int count);

  const std::vector<std::unique_ptr<OutsourcedLayer>>& layers() const { return layers_; }
  bool outsources(const std::string& node_name) const;
  const RuntimeOptions& options() const { return options_; }
  RuntimeCounters& counters() { return counters_; }
  MaskVault* vault() { return vault_.get(); }
  std::span<const uint8_t, 32> pad_key() const { return pad_key_; }

 private:
  Result<std::unique_ptr<OutsourcedLayer>> build_layer(cpu::KernelInputs& in);
  RuntimeOptions options_;
  std::array<uint8_t, 32> pad_key_{};
  std::array<uint8_t, 32> vault_key_{};
  std::mutex mu_;
  std::vector<std::unique_ptr<OutsourcedLayer>> layers_;
  std::map<std::string, OutsourcedLayer*> by_name_;
  std::map<std::string, bool> declined_;
  std::unique_ptr<MaskVault> vault_;
  RuntimeCounters counters_;
};

}  // namespace tenet::hybrid
