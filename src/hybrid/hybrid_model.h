// Hybrid mode (design.md, "hybrid"; Slalom, Tramèr & Boneh 2019; TEESlice, Zhang et al. 2024):
// the enclave runs a model's non-linear and private parts itself and moves its heavy linear
// layers to an untrusted accelerator, over quantized, one-time-pad-blinded features, checking
// every outsourced result with Freivalds' algorithm. This header is the enclave-side API;
// outsourced_linear.h describes one layer's path, freivalds.h the soundness argument,
// mask_vault.h the sealed use-once unblinding terms, and host_mask_store.h (untrusted) where
// those terms live.
//
//   auto m = HybridModel::compile(graph, {{"input", {1, 3, 224, 224}}}, options);
//   m->precompute(16);                 // 16 requests' worth of unblinding terms per layer
//   m->run(inputs, outputs);           // thread-safe: up to pipeline_depth requests at once
//
// Pipelining: the model is compiled pipeline_depth times (the engine's CompiledModel runs one
// request at a time); concurrent run() calls each take a free instance and share the layer
// state and the one thread-safe accelerator, so one request's enclave work (quantizing,
// checking, pooling, ...) overlaps another's accelerator products. run_many() drives that
// with one thread per instance.
//
// Batches: compiled with dimension 0 of its variable-batch inputs bound to B, a run carries B
// images, with one blinded transfer and one product per outsourced layer for all of them and one
// B-image unblinding term; a partial batch (run's `images`) sends and checks only its real
// images. Each image is quantized with its own scales (RuntimeOptions::images),
// so an image's output is bitwise what it gets alone and owes nothing to the other images.
#pragma once

#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <span>
#include <string>
#include <vector>

#include "accel/accelerator.h"
#include "core/status.h"
#include "core/tensor.h"
#include "engine/cpu/compiled_model.h"
#include "engine/ir/graph.h"
#include "hybrid/host_mask_store.h"
#include "hybrid/outsourced_linear.h"

namespace tenet::hybrid {

struct HybridOptions {
  std::shared_ptr<accel::Accelerator> accelerator;  // untrusted; required
  // Soundness of each check in bits (error <= 2^-verify_bits per outsourced result); 0 turns
  // verification off (INSECURE against a lying accelerator; privacy is unaffected).
  int verify_bits = 40;
  // Unblinding terms precomputed per layer at compile time (more with precompute()).
  int masks_to_precompute = 0;
  // When the pool is dry: compute W·r in the enclave on the request path (true), or fail the
  // request (false).
  bool allow_inline_masks = true;
  // INSECURE (benchmark baseline): no one-time pads; the accelerator sees the 8-bit activations.
  bool insecure_no_blinding = false;
  int pipeline_depth = 1;  // compiled instances = requests in flight
  int threads = 0;         // enclave CPU threads per instance (0: all cores)
  // The in-enclave exact engine for precomputing W·r (trusted code in the enclave's process);
  // default: the exact loops of trusted_linear.h.
  std::shared_ptr<accel::Accelerator> trusted_linear;
  int64_t min_outsourced_flops = 0;  // smaller linear layers stay in the enclave
  // Private slices (TEESlice §4): linear nodes, by name after optimization, that stay in the
  // enclave so that their weights are never sent to the accelerator. Everything the accelerator
  // receives is blinded anyway, including features computed from a private slice's output.
  std::set<std::string> private_nodes;
  passes::OptimizeOptions optimize;
};

struct HybridStats {
  int outsourced_layers = 0;
  int verified_layers = 0;     // outsourced layers whose every result is checked
  int verify_repetitions = 0;  // per check
  double outsourced_flops_fraction = 0;  // outsourced FLOPs / all FLOPs (cpu::node_flops)
  double private_flops_fraction = 0;     // FLOPs of HybridOptions::private_nodes / all FLOPs
  int64_t total_flops = 0;
  int64_t requests = 0, failed_requests = 0;
  int64_t layer_calls = 0, verifications = 0, verification_failures = 0;
  int64_t masks_precomputed = 0, masks_consumed = 0, masks_inline = 0, masks_ready = 0;
  size_t host_mask_bytes = 0;
  // Wall time summed over requests (concurrent requests overlap), in milliseconds.
  double request_ms = 0, quantize_blind_ms = 0, accelerator_ms = 0, verify_ms = 0, unblind_ms = 0, dequantize_ms = 0,
         precompute_ms = 0;
  // request_ms minus the outsourced phases: the enclave's own kernels and the engine overhead.
  double enclave_other_ms = 0;
};

class HybridModel {
 public:
  ~HybridModel();
  static Result<std::unique_ptr<HybridModel>> compile(const ir::Graph& imported, const std::map<std::string, Shape>& input_shapes,
                                                      HybridOptions options);

  const std::vector<cpu::TensorInfo>& inputs() const;
  const std::vector<cpu::TensorInfo>& outputs() const;
  // As cpu::CompiledModel::run. Thread-safe; blocks while all instances are busy. `images` in
  // 1..images(): only the first `images` images of the batch are real, the rest padding (their
  // outputs are meaningless); their outsourced products are neither sent nor computed
  // (ActiveImages, outsourced_linear.h). 0: all.
  Status run(std::span<const ConstTensorView> inputs, std::vector<Tensor>& outputs, int64_t images = 0);
  // Runs every request, up to pipeline_depth at once; outputs[i] for requests[i]. The first
  // error is returned (other requests still run).
  Status run_many(std::span<const std::vector<ConstTensorView>> requests, std::vector<std::vector<Tensor>>& outputs);
  // Deposits `count` more sealed unblinding terms per outsourced layer.
  Status precompute(int count);

  HybridStats stats() const;
  const std::vector<std::unique_ptr<OutsourcedLayer>>& layers() const;
  const cpu::CompiledModel& instance(size_t i) const { return *instances_[i]; }
  // Images per run whose quantization scales are separate (RuntimeOptions::images; 1 unbatched).
  int64_t images() const { return runtime_->options().images; }
  // The untrusted side's storage (what a malicious host controls; tests tamper with it).
  HostMaskStore& host_store() { return *store_; }
  MaskVault& vault() { return *runtime_->vault(); }

 private:
  HybridModel() = default;
  std::unique_ptr<HostMaskStore> store_;
  std::unique_ptr<HybridRuntime> runtime_;
  std::vector<std::unique_ptr<cpu::CompiledModel>> instances_;
  HybridOptions options_;
  int64_t total_flops_ = 0, outsourced_flops_ = 0, private_flops_ = 0;
  mutable std::mutex mu_;
  std::condition_variable free_cv_;
  std::vector<size_t> free_;
  int64_t requests_ = 0, failed_requests_ = 0, request_ns_ = 0;
};

}  // namespace tenet::hybrid
