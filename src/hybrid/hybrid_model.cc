// HybridModel: compiled instances, the instance pool, statistics (see hybrid_model.h).
#include "hybrid/hybrid_model.h"

#include <algorithm>
#include <chrono>
#include <thread>

#include "engine/passes/passes.h"
#include "engine/passes/shape_inference.h"
#include "hybrid/freivalds.h"

namespace tenet::hybrid {

HybridModel::~HybridModel() = default;

Result<std::unique_ptr<HybridModel>> HybridModel::compile(const ir::Graph& imported, const std::map<std::string, Shape>& input_shapes,
                                                          HybridOptions options) {
  if (!options.accelerator) return invalid_argument("hybrid: no accelerator given");
  if (options.verify_bits < 0 || options.verify_bits > 256) return invalid_argument("hybrid: verify_bits {} outside [0, 256]", options.verify_bits);
  if (options.pipeline_depth < 1 || options.pipeline_depth > 64) {
    return invalid_argument("hybrid: pipeline_depth {} outside [1, 64]", options.pipeline_depth);
  }
  if (options.masks_to_precompute < 0) return invalid_argument("hybrid: negative masks_to_precompute");
  std::unique_ptr<HybridModel> m(new HybridModel());
  m->options_ = options;
  m->store_ = std::make_unique<HostMaskStore>();
  RuntimeOptions ro;
  ro.accelerator = options.accelerator;
  ro.trusted = options.trusted_linear;
  ro.repetitions = repetitions_for_bits(options.verify_bits);
  ro.allow_inline_masks = options.allow_inline_masks;
  ro.insecure_no_blinding = options.insecure_no_blinding;
  ro.min_flops = options.min_outsourced_flops;
  ro.private_nodes = options.private_nodes;
  // The batch: the common size given to dimension 0 of inputs whose dimension 0 is variable (a
  // batch dimension); each image gets its own quantization scales (RuntimeOptions::images).
  int64_t images = 0;
  for (ir::ValueId id : imported.inputs) {
    const ir::Value& v = imported.value(id);
    const auto it = input_shapes.find(v.name);
    if (v.shape.empty() || v.shape[0] >= 0 || it == input_shapes.end() || it->second.empty() || it->second[0] < 1 ||
        (images != 0 && images != it->second[0])) {
      images = 1;
      break;
    }
    images = it->second[0];
  }
  ro.images = std::max<int64_t>(1, images);
  m->runtime_ = std::make_unique<HybridRuntime>(std::move(ro));

  ir::Graph g = imported;
  passes::PassStats pass_stats;
  TENET_RETURN_IF_ERROR(passes::prepare_graph(g, input_shapes, options.optimize, pass_stats));
  cpu::CompileOptions co;
  co.threads = options.threads;
  co.optimize = options.optimize;
  HybridRuntime* runtime = m->runtime_.get();
  co.kernel_override = [runtime](cpu::KernelInputs& in) { return runtime->make_kernel(in); };
  for (int i = 0; i < options.pipeline_depth; ++i) {
    TENET_ASSIGN_OR_RETURN(std::unique_ptr<cpu::CompiledModel> inst, cpu::CompiledModel::compile(g, co));
    m->instances_.push_back(std::move(inst));
    m->free_.push_back(static_cast<size_t>(i));
    if (i == 0) TENET_RETURN_IF_ERROR(runtime->finalize(m->store_.get()));
  }
  const ir::Graph& compiled = m->instances_[0]->graph();
  for (const ir::Node& n : compiled.nodes) {
    const int64_t f = cpu::node_flops(compiled, n);
    m->total_flops_ += f;
    if (runtime->outsources(n.name)) m->outsourced_flops_ += f;
    if (options.private_nodes.count(n.name)) {
      // A private node that was outsourced would have sent its weights out: refuse, whatever
      // the cause (a runtime that ignored the set, a pass that renamed a node to a private name).
      if (runtime->outsources(n.name)) return internal_error("hybrid: private node '{}' was outsourced", n.name);
      m->private_flops_ += f;
    }
  }
  if (options.masks_to_precompute > 0) TENET_RETURN_IF_ERROR(m->precompute(options.masks_to_precompute));
  return m;
}

const std::vector<cpu::TensorInfo>& HybridModel::inputs() const { return instances_[0]->inputs(); }
const std::vector<cpu::TensorInfo>& HybridModel::outputs() const { return instances_[0]->outputs(); }
const std::vector<std::unique_ptr<OutsourcedLayer>>& HybridModel::layers() const { return runtime_->layers(); }

Status HybridModel::precompute(int count) {
  if (count < 0) return invalid_argument("hybrid: negative precompute count");
  return runtime_->precompute(count);
}

Status HybridModel::run(std::span<const ConstTensorView> inputs, std::vector<Tensor>& outputs, int64_t images) {
  if (images < 0 || images > runtime_->options().images) {
    return invalid_argument("hybrid: {} real images in a batch of {}", images, runtime_->options().images);
  }
  size_t slot;
  {
    std::unique_lock<std::mutex> lock(mu_);
    free_cv_.wait(lock, [&] { return !free_.empty(); });
    slot = free_.back();
    free_.pop_back();
  }
  const auto t0 = std::chrono::steady_clock::now();
  cpu::CompiledModel& inst = *instances_[slot];
  Status s;
  {
    ActiveImages active(images);
    s = inst.run(inputs, outputs);
  }
  // No intermediate value of a request outlives it (as the server does after every run).
  inst.wipe_activations();
  const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - t0).count();
  {
    std::lock_guard<std::mutex> lock(mu_);
    free_.push_back(slot);
    ++requests_;
    if (!s.ok()) ++failed_requests_;
    request_ns_ += ns;
  }
  free_cv_.notify_one();
  return s;
}

Status HybridModel::run_many(std::span<const std::vector<ConstTensorView>> requests, std::vector<std::vector<Tensor>>& outputs) {
  outputs.resize(requests.size());
  std::atomic<size_t> next{0};
  std::mutex err_mu;
  Status first_error;
  auto worker = [&] {
    for (size_t i = next.fetch_add(1); i < requests.size(); i = next.fetch_add(1)) {
      Status s = run(requests[i], outputs[i]);
      if (!s.ok()) {
        std::lock_guard<std::mutex> lock(err_mu);
        if (first_error.ok()) first_error = s.with_context(fmt::format("request {}", i));
      }
    }
  };
  const size_t workers = std::min(instances_.size(), requests.size());
  std::vector<std::thread> threads;
  for (size_t i = 1; i < workers; ++i) threads.emplace_back(worker);
  worker();
  for (std::thread& t : threads) t.join();
  return first_error;
}

HybridStats HybridModel::stats() const {
  HybridStats st;
  RuntimeCounters& c = runtime_->counters();
  st.outsourced_layers = static_cast<int>(runtime_->layers().size());
  st.verify_repetitions = runtime_->options().repetitions;
  st.verified_layers = st.verify_repetitions > 0 ? st.outsourced_layers : 0;
  st.total_flops = total_flops_;
  st.outsourced_flops_fraction = total_flops_ > 0 ? static_cast<double>(outsourced_flops_) / static_cast<double>(total_flops_) : 0.0;
  st.private_flops_fraction = total_flops_ > 0 ? static_cast<double>(private_flops_) / static_cast<double>(total_flops_) : 0.0;
  st.layer_calls = c.layer_calls.load();
  st.verifications = c.verifications.load();
  st.verification_failures = c.verification_failures.load();
  st.masks_precomputed = c.masks_precomputed.load();
  st.masks_consumed = c.masks_consumed.load();
  st.masks_inline = c.masks_inline.load();
  st.masks_ready = runtime_->vault() ? static_cast<int64_t>(runtime_->vault()->ready_count_total()) : 0;
  st.host_mask_bytes = store_->size_bytes();
  auto ms = [](const std::atomic<int64_t>& ns) { return static_cast<double>(ns.load()) / 1e6; };
  st.quantize_blind_ms = ms(c.quantize_blind_ns);
  st.accelerator_ms = ms(c.accelerator_ns);
  st.verify_ms = ms(c.verify_ns);
  st.unblind_ms = ms(c.unblind_ns);
  st.dequantize_ms = ms(c.dequantize_ns);
  st.precompute_ms = ms(c.precompute_ns);
  {
    std::lock_guard<std::mutex> lock(mu_);
    st.requests = requests_;
    st.failed_requests = failed_requests_;
    st.request_ms = static_cast<double>(request_ns_) / 1e6;
  }
  st.enclave_other_ms =
      st.request_ms - st.quantize_blind_ms - st.accelerator_ms - st.verify_ms - st.unblind_ms - st.dequantize_ms;
  return st;
}

}  // namespace tenet::hybrid
