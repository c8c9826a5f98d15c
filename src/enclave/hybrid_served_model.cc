// HybridServedModel: a hybrid::HybridModel as a serving::ServedModel (see hybrid_served_model.h).
#include "enclave/hybrid_served_model.h"

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <deque>
#include <future>
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
    batch_cv_.notify_all();
    for (std::thread& t : batchers_) t.join();
    if (refill_.joinable()) refill_.join();
    // The batchers fail what is still queued before they return; nothing is left waiting.
  }

  Status init(const ir::Graph& graph) {
    batch_ = options_.max_batch_size > 1 ? options_.max_batch_size : 0;
    std::map<std::string, Shape> shapes;
    for (ir::ValueId id : graph.inputs) {
      const ir::Value& v = graph.value(id);
      if (batch_ > 0 && (v.shape.empty() || v.shape[0] >= 0)) {
        return invalid_argument("max_batch_size {} needs a variable batch dimension 0 on every input; input '{}' has shape {}",
                                batch_, v.name, shape_to_string(v.shape));
      }
      Shape s = v.shape;
      for (size_t d = 0; d < s.size(); ++d) {
        // Batch 1 or B; other variable dims bound to 1 as the engine model's probe does.
        if (s[d] < 0) s[d] = (d == 0 && batch_ > 0) ? batch_ : 1;
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
      if (batch_ > 0) inputs_.back().shape[0] = -1;  // as a batching tee model shows it
    }
    for (const cpu::TensorInfo& t : model_->outputs()) {
      if (serving::kserve_datatype(t.dtype)[0] == '\0') {
        return unimplemented("output '{}' has dtype {}, which has no KServe datatype", t.name, dtype_name(t.dtype));
      }
      outputs_.push_back(serving::TensorSpec{t.name, t.dtype, t.shape});
      if (batch_ > 0) {
        if (t.shape.empty() || t.shape[0] != batch_) {
          return invalid_argument("max_batch_size {}: output '{}' has shape {} at batch {}, which does not follow the batch dimension",
                                  batch_, t.name, shape_to_string(t.shape), batch_);
        }
        outputs_.back().shape[0] = -1;
      }
    }
    const hybrid::HybridStats st = model_->stats();
    std::fprintf(stderr,
                 "tenet enclave: model '%s' in hybrid mode: %d outsourced layers (%.0f%% of FLOPs), verify_bits %d, "
                 "%d unblinding terms per layer precomputed in %.0f ms, %d run(s) in flight, batch %d\n",
                 name_.c_str(), st.outsourced_layers, st.outsourced_flops_fraction * 100.0, options_.verify_bits,
                 options_.unblind_pool, st.precompute_ms, options_.pipeline_depth, std::max(batch_, 1));
    if (options_.unblind_pool > 0 && st.outsourced_layers > 0) refill_ = std::thread([this] { refill_loop(); });
    if (batch_ > 0) {
      for (int i = 0; i < options_.pipeline_depth; ++i) batchers_.emplace_back([this] { batch_loop(); });
    }
    return ok_status();
  }

  const std::string& name() const override { return name_; }
  const std::string& version() const override { return options_.version; }
  const std::string& platform() const override { return platform_; }
  const std::vector<serving::TensorSpec>& inputs() const override { return inputs_; }
  const std::vector<serving::TensorSpec>& outputs() const override { return outputs_; }
  int max_batch_size() const override { return batch_; }
  uint64_t max_queue_delay_us() const override { return batch_ > 0 ? options_.max_queue_delay_us : 0; }
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
    if (batch_ > 0 && s.ok()) return finish_batched(t0, run_batched(std::move(inputs)));
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
        s = unavailable(s);
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
  // One request queued for a batch.
  struct Pending {
    std::vector<Tensor> inputs;
    int64_t rows = 0;
    Clock::time_point enqueued;
    std::promise<Result<std::vector<Tensor>>> done;
  };

  // The request passed check_request: what failed is the untrusted accelerator's side (gone,
  // hung up, malformed or wrong products) or its unblinding terms, not the request.
  // kResourceExhausted is what the front ends answer with 503 / UNAVAILABLE: retry later.
  Status unavailable(const Status& s) const {
    return Status(StatusCode::kResourceExhausted, fmt::format("hybrid model '{}' is unavailable: {}", name_, s.to_string()));
  }

  // Batching: queues the request (already counted in in_flight_) and waits for its batch.
  Result<std::vector<Tensor>> run_batched(std::vector<Tensor> inputs) {
    auto p = std::make_unique<Pending>();
    p->rows = inputs[0].shape()[0];
    p->inputs = std::move(inputs);
    p->enqueued = Clock::now();
    std::future<Result<std::vector<Tensor>>> fut = p->done.get_future();
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stopping_) {
        for (Tensor& t : p->inputs) serving::wipe_tensor(t);
        return failed_precondition("model '{}' is stopping", name_);
      }
      queue_.push_back(std::move(p));
    }
    batch_cv_.notify_all();
    return fut.get();
  }

  // Bookkeeping of a batched request once its batch ran (or failed): in_flight_ and the
  // per-request counters; the per-batch ones are execute_batch's.
  Result<std::vector<Tensor>> finish_batched(Clock::time_point t0, Result<std::vector<Tensor>> r) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      --in_flight_;
      const uint64_t total_ns = ns_between(t0, Clock::now());
      if (r.ok()) {
        stats_.success.count++;
        stats_.success.ns += total_ns;
      } else {
        stats_.fail.count++;
        stats_.fail.ns += total_ns;
      }
    }
    cv_.notify_all();  // the refill thread may run now
    return r;
  }

  // A batcher thread (pipeline_depth of them): one at a time forms a batch from the queue (FIFO,
  // up to batch_ rows, waiting at most max_queue_delay_us after the oldest request arrived), then
  // runs it on a free instance while the next batcher forms the next batch.
  void batch_loop() {
    std::unique_lock<std::mutex> lock(mu_);
    while (true) {
      batch_cv_.wait(lock, [&] { return stopping_ || (!forming_ && !queue_.empty()); });
      if (stopping_) break;
      forming_ = true;
      const auto deadline = queue_.front()->enqueued + std::chrono::microseconds(options_.max_queue_delay_us);
      while (!stopping_ && Clock::now() < deadline && queued_rows() < batch_) batch_cv_.wait_until(lock, deadline);
      std::vector<std::unique_ptr<Pending>> batch;
      int64_t rows = 0;
      while (!queue_.empty() && rows + queue_.front()->rows <= batch_) {
        rows += queue_.front()->rows;
        batch.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
      forming_ = false;
      lock.unlock();
      batch_cv_.notify_all();
      execute_batch(batch, rows);
      lock.lock();
    }
    // Stopping: fail what is left (the first batcher to get here takes it all).
    for (auto& p : queue_) {
      for (Tensor& t : p->inputs) serving::wipe_tensor(t);
      p->done.set_value(failed_precondition("model '{}' stopped", name_));
    }
    queue_.clear();
  }

  // Rows the queued requests would fill, in FIFO order, up to batch_ (caller holds mu_).
  int64_t queued_rows() const {
    int64_t rows = 0;
    for (const auto& p : queue_) {
      if (rows + p->rows > batch_) break;
      rows += p->rows;
    }
    return rows;
  }

  // Runs `batch` (rows in all, <= batch_) as one batch of batch_ rows, the rest zero padding,
  // and hands each request its rows of the outputs; a failure fails every request in it.
  void execute_batch(std::vector<std::unique_ptr<Pending>>& batch, int64_t rows) {
    auto fail_all = [&](const Status& s) {
      for (auto& p : batch) {
        for (Tensor& t : p->inputs) serving::wipe_tensor(t);
        p->done.set_value(s);
      }
    };
    const auto t_start = Clock::now();
    std::vector<Tensor> joined;
    std::vector<ConstTensorView> views;
    for (size_t i = 0; i < inputs_.size(); ++i) {
      std::vector<const Tensor*> parts;
      for (auto& p : batch) parts.push_back(&p->inputs[i]);
      // [batch_, ...]: rows past `rows` stay zero (padding).
      auto t = serving::join_rows(inputs_[i].dtype, model_->inputs()[i].shape, parts);
      if (!t.ok()) {
        for (Tensor& j : joined) serving::wipe_tensor(j);
        return fail_all(t.status());
      }
      for (auto& p : batch) serving::wipe_tensor(p->inputs[i]);  // copied into the batch
      joined.push_back(std::move(t).value());
    }
    for (const Tensor& t : joined) views.push_back(t.view());
    std::vector<Tensor> outputs;
    // A free instance (there are as many as batchers); only the first `rows` images are sent.
    Status s = model_->run(views, outputs, rows);
    for (Tensor& t : joined) serving::wipe_tensor(t);
    const auto t_end = Clock::now();
    std::vector<std::vector<Tensor>> results(batch.size());
    std::vector<int64_t> request_rows;
    for (auto& p : batch) request_rows.push_back(p->rows);
    for (size_t o = 0; o < outputs.size() && s.ok(); ++o) {
      auto parts = serving::split_rows(outputs[o], batch_, request_rows);
      if (!parts.ok()) {
        s = parts.status().with_context(fmt::format("output '{}'", outputs_[o].name));
        break;
      }
      for (size_t r = 0; r < batch.size(); ++r) results[r].push_back(std::move((*parts)[r]));
    }
    for (Tensor& t : outputs) serving::wipe_tensor(t);  // the padding rows' outputs with the rest
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (s.ok()) {
        const uint64_t run_ns = ns_between(t_start, t_end), n = batch.size();
        stats_.execution_count++;
        stats_.inference_count += static_cast<uint64_t>(rows);
        stats_.compute_infer.count += n;
        stats_.compute_infer.ns += run_ns * n;
        for (auto& p : batch) {
          stats_.queue.count++;
          stats_.queue.ns += ns_between(p->enqueued, t_start);
        }
        stats_.last_inference_ms = static_cast<uint64_t>(
            std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count());
        // By rows actually carried (the run itself is always batch_ rows, padding included).
        auto it = std::find_if(stats_.batch_stats.begin(), stats_.batch_stats.end(),
                               [&](const serving::BatchStat& b) { return b.batch_size >= static_cast<uint64_t>(rows); });
        if (it == stats_.batch_stats.end() || it->batch_size != static_cast<uint64_t>(rows)) {
          it = stats_.batch_stats.insert(it, serving::BatchStat{static_cast<uint64_t>(rows), {}, {}, {}});
        }
        it->compute_infer.count++;
        it->compute_infer.ns += run_ns;
      }
    }
    if (!s.ok()) {
      for (auto& r : results) {
        for (Tensor& t : r) serving::wipe_tensor(t);
      }
      return fail_all(unavailable(s));
    }
    for (size_t r = 0; r < batch.size(); ++r) batch[r]->done.set_value(std::move(results[r]));
  }

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
  // Dynamic batching (batch_ > 0).
  int batch_ = 0;
  std::condition_variable batch_cv_;
  std::deque<std::unique_ptr<Pending>> queue_;
  bool forming_ = false;
  std::vector<std::thread> batchers_;
};

}  // namespace

Result<std::shared_ptr<serving::ServedModel>> load_hybrid_model(const std::string& name, const ir::Graph& graph,
                                                                 const HybridServedOptions& options) {
  if (!options.accelerator) return failed_precondition("model '{}' is hybrid but no accelerator is connected", name);
  if (options.verify_bits < 0 || options.unblind_pool < 0 || options.max_queue_requests == 0) {
    return invalid_argument("model '{}': bad hybrid options", name);
  }
  if (options.max_batch_size < 0 || options.max_batch_size > 64) {
    return invalid_argument("model '{}': hybrid max_batch_size {} is outside 0..64", name, options.max_batch_size);
  }
  auto model = std::make_shared<HybridServedModel>(name, options);
  Status s = model->init(graph);
  if (!s.ok()) return s.with_context("loading hybrid model '" + name + "'");
  return std::shared_ptr<serving::ServedModel>(std::move(model));
}

}  // namespace tenet::enclave
