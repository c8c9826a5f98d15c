// HybridServedModel: a hybrid::HybridModel as a serving::ServedModel (see hybrid_served_model.h).
#include "enclave/hybrid_served_model.h"

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <map>
#include <mutex>
#include <thread>

#include "hybrid/hybrid_model.h"

namespace tenet::enclave {
namespace {

using Clock = std::chrono::steady_clock;

uint64_t ns_between(Clock::time_point a, Clock::time_point b) {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(b - a).count());
}

class HybridServedModel final : public serving::ServedModel {
 public:
  HybridServedModel(std::string name, HybridServedOptions options) : name_(std::move(name)), options_(std::move(options)) {}
  ~HybridServedModel() override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stopping_ = true;
    }
    cv_.notify_all();
    if (refill_.joinable()) refill_.join();
  }

  Status init(const ir::Graph& graph) {
    std::map<std::string, Shape> shapes;
    for (ir::ValueId id : graph.inputs) {
      const ir::Value& v = graph.value(id);
      Shape s = v.shape;
      for (int64_t& d : s) {
        if (d < 0) d = 1;  // batch 1; other variable dims bound to 1 as the engine model's probe does
      }
      shapes[v.name] = s;
    }
    hybrid::HybridOptions ho;
    ho.accelerator = options_.accelerator;
    ho.trusted_linear = options_.trusted_linear;
    ho.verify_bits = options_.verify_bits;
    ho.masks_to_precompute = options_.unblind_pool;
    ho.allow_inline_masks = true;  // a dry pool slows requests down, it does not fail them
    ho.pipeline_depth = options_.pipeline_depth;
    ho.threads = options_.threads;
    if (ho.threads == 0 && ho.pipeline_depth > 1) {
      // The instances in flight share the cores rather than each spreading over all of them.
      ho.threads = std::max(1, static_cast<int>(std::thread::hardware_concurrency()) / ho.pipeline_depth);
    }
    TENET_ASSIGN_OR_RETURN(model_, hybrid::HybridModel::compile(graph, shapes, ho));
    for (const cpu::TensorInfo& t : model_->inputs()) {
      if (serving::kserve_datatype(t.dtype)[0] == '\0') {
        return unimplemented("input '{}' has dtype {}, which has no KServe datatype", t.name, dtype_name(t.dtype));
      }
      inputs_.push_back(serving::TensorSpec{t.name, t.dtype, t.shape});
    }
    for (const cpu::TensorInfo& t : model_->outputs()) {
      if (serving::kserve_datatype(t.dtype)[0] == '\0') {
        return unimplemented("output '{}' has dtype {}, which has no KServe datatype", t.name, dtype_name(t.dtype));
      }
      outputs_.push_back(serving::TensorSpec{t.name, t.dtype, t.shape});
    }
    const hybrid::HybridStats st = model_->stats();
    std::fprintf(stderr,
                 "tenet enclave: model '%s' in hybrid mode: %d outsourced layers (%.0f%% of FLOPs), verify_bits %d, "
                 "%d unblinding terms per layer precomputed in %.0f ms, %d request(s) in flight\n",
                 name_.c_str(), st.outsourced_layers, st.outsourced_flops_fraction * 100.0, options_.verify_bits,
                 options_.unblind_pool, st.precompute_ms, options_.pipeline_depth);
    if (options_.unblind_pool > 0 && st.outsourced_layers > 0) refill_ = std::thread([this] { refill_loop(); });
    return ok_status();
  }

  const std::string& name() const override { return name_; }
  const std::string& version() const override { return options_.version; }
  const std::string& platform() const override { return platform_; }
  const std::vector<serving::TensorSpec>& inputs() const override { return inputs_; }
  const std::vector<serving::TensorSpec>& outputs() const override { return outputs_; }
  int max_batch_size() const override { return 0; }
  uint64_t max_queue_delay_us() const override { return 0; }
  bool ready() const override { return true; }
  serving::ProtectionInfo protection() const override { return {"hybrid", options_.verify_bits}; }

  Result<std::vector<Tensor>> infer(std::vector<Tensor> inputs) override {
    struct WipeInputs {
      std::vector<Tensor>& t;
      ~WipeInputs() {
        for (Tensor& x : t) serving::wipe_tensor(x);
      }
    } wipe{inputs};
    const auto t0 = Clock::now();
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (in_flight_ >= options_.max_queue_requests) {
        ++stats_.rejected_queue_full;
        return resource_exhausted("model '{}': {} requests already queued (max_queue_requests)", name_, in_flight_);
      }
      ++in_flight_;
    }
    Status s = serving::check_request(*this, inputs);
    std::vector<Tensor> outputs;
    Clock::time_point t_run = Clock::now(), t_end = t_run;
    if (s.ok()) {
      std::vector<ConstTensorView> views;
      views.reserve(inputs.size());
      for (const Tensor& t : inputs) views.push_back(t.view());
      s = model_->run(views, outputs);  // blocks while every instance is busy: the queue
      t_end = Clock::now();
      if (!s.ok()) {
        for (Tensor& t : outputs) serving::wipe_tensor(t);
        outputs.clear();
        // The request passed check_request: what failed is the untrusted accelerator's side
        // (gone, hung up, malformed or wrong products) or its unblinding terms, not the request.
        // kResourceExhausted is what the front ends answer with 503 / UNAVAILABLE: retry later.
        s = Status(StatusCode::kResourceExhausted,
                   fmt::format("hybrid model '{}' is unavailable: {}", name_, s.to_string()));
      }
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      --in_flight_;
      const uint64_t total_ns = ns_between(t0, Clock::now());
      if (s.ok()) {
        // The hybrid model's own queue (waiting for its instance) is inside run(); count the
        // whole run as compute.
        const uint64_t run_ns = ns_between(t_run, t_end);
        stats_.success.count++;
        stats_.success.ns += total_ns;
        stats_.compute_infer.count++;
        stats_.compute_infer.ns += run_ns;
        stats_.inference_count++;
        stats_.execution_count++;
        stats_.last_inference_ms = static_cast<uint64_t>(
            std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count());
        if (stats_.batch_stats.empty()) stats_.batch_stats.push_back(serving::BatchStat{1, {}, {}, {}});
        stats_.batch_stats[0].compute_infer.count++;
        stats_.batch_stats[0].compute_infer.ns += run_ns;
      } else {
        stats_.fail.count++;
        stats_.fail.ns += total_ns;
      }
    }
    cv_.notify_all();  // the refill thread may run now
    if (!s.ok()) return s;
    return outputs;
  }

  serving::ModelStats stats() const override {
    std::lock_guard<std::mutex> lock(mu_);
    return stats_;
  }

 private:
  // Fewest ready unblinding terms over the outsourced layers.
  size_t min_ready() {
    size_t m = SIZE_MAX;
    for (const auto& layer : model_->layers()) m = std::min(m, model_->vault().ready_count(layer->index));
    return m == SIZE_MAX ? 0 : m;
  }

  // Tops the pool up to unblind_pool while no request is in flight (hybrid_served_model.h).
  void refill_loop() {
    const size_t target = static_cast<size_t>(options_.unblind_pool);
    std::unique_lock<std::mutex> lock(mu_);
    while (!stopping_) {
      cv_.wait_for(lock, std::chrono::milliseconds(500), [&] { return stopping_ || in_flight_ == 0; });
      if (stopping_) break;
      if (in_flight_ != 0) continue;
      lock.unlock();
      const bool low = min_ready() < target;
      Status s = low ? model_->precompute(1) : ok_status();
      lock.lock();
      if (!s.ok()) {
        std::fprintf(stderr, "tenet enclave: model '%s': refilling unblinding terms failed (%s); requests compute them inline\n",
                     name_.c_str(), s.to_string().c_str());
        return;
      }
      if (!low) cv_.wait_for(lock, std::chrono::milliseconds(200), [&] { return stopping_; });
    }
  }

  const std::string name_;
  const HybridServedOptions options_;
  const std::string platform_ = "onnx_onnxv1";
  std::unique_ptr<hybrid::HybridModel> model_;
  std::vector<serving::TensorSpec> inputs_, outputs_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  size_t in_flight_ = 0;
  bool stopping_ = false;
  serving::ModelStats stats_;
  std::thread refill_;
};

}  // namespace

Result<std::shared_ptr<serving::ServedModel>> load_hybrid_model(const std::string& name, const ir::Graph& graph,
                                                                 const HybridServedOptions& options) {
  if (!options.accelerator) return failed_precondition("model '{}' is hybrid but no accelerator is connected", name);
  if (options.verify_bits < 0 || options.unblind_pool < 0 || options.max_queue_requests == 0) {
    return invalid_argument("model '{}': bad hybrid options", name);
  }
  auto model = std::make_shared<HybridServedModel>(name, options);
  Status s = model->init(graph);
  if (!s.ok()) return s.with_context("loading hybrid model '" + name + "'");
  return std::shared_ptr<serving::ServedModel>(std::move(model));
}

}  // namespace tenet::enclave
