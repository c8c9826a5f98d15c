#include "serving/model_repository.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <future>
#include <list>
#include <thread>

#include "core/safe_math.h"
#include "crypto/crypto.h"
#include "engine/cpu/compiled_model.h"
#include "engine/onnx/importer.h"

namespace tenet::serving {

using Clock = std::chrono::steady_clock;

namespace {

uint64_t ns_between(Clock::time_point a, Clock::time_point b) {
  return static_cast<uint64_t>(std::max<int64_t>(0, std::chrono::duration_cast<std::chrono::nanoseconds>(b - a).count()));
}

void add(DurationStat& d, uint64_t ns, uint64_t count = 1) {
  d.count += count;
  d.ns += ns;
}

bool valid_model_name(std::string_view name) {
  if (name.empty() || name.size() > 256) return false;
  for (char c : name) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-' || c == '.';
    if (!ok) return false;
  }
  return name != "." && name != "..";
}

// One queued request.
struct Pending {
  std::vector<Tensor> inputs;
  int64_t rows = 0;  // batch rows (dim 0) when the model batches, else 0
  Clock::time_point enqueued;
  std::promise<Result<std::vector<Tensor>>> done;
};

// Shapes without dimension 0: requests batch together only when these agree.
std::vector<Shape> batch_key(const Pending& p) {
  std::vector<Shape> key;
  key.reserve(p.inputs.size());
  for (const Tensor& t : p.inputs) key.emplace_back(t.shape().begin() + 1, t.shape().end());
  return key;
}

class EngineModel final : public ServedModel {
 public:
  EngineModel(std::string name, ir::Graph graph, EngineModelOptions options)
      : name_(std::move(name)), graph_(std::move(graph)), options_(std::move(options)) {}

  ~EngineModel() override { stop(); }

  Status init() {
    for (ir::ValueId id : graph_.inputs) {
      const ir::Value& v = graph_.value(id);
      if (kserve_datatype(v.dtype)[0] == '\0') {
        return unimplemented("model '{}': input '{}' has dtype {}, which has no KServe datatype", name_, v.name, dtype_name(v.dtype));
      }
      inputs_.push_back(TensorSpec{v.name, v.dtype, v.shape});
    }
    // Probe compile at batch 1 (and 2) to learn output dtypes and which output dims are variable.
    auto probe_shapes = [&](int64_t batch) {
      std::map<std::string, Shape> shapes;
      for (const TensorSpec& s : inputs_) {
        Shape sh = s.shape;
        for (size_t i = 0; i < sh.size(); ++i) {
          if (sh[i] < 0) sh[i] = (i == 0) ? batch : 1;
        }
        shapes[s.name] = sh;
      }
      return shapes;
    };
    if (options_.streaming.store) return init_memory_bounded(probe_shapes(1));
    TENET_ASSIGN_OR_RETURN(auto one, compile(probe_shapes(1)));
    const bool inputs_batchable =
        !inputs_.empty() && std::all_of(inputs_.begin(), inputs_.end(), [](const TensorSpec& s) { return !s.shape.empty() && s.shape[0] < 0; });
    std::vector<cpu::TensorInfo> outs1 = one->outputs();
    bool batchable = inputs_batchable && options_.max_batch_size > 0;
    std::vector<cpu::TensorInfo> outs2;
    std::unique_ptr<cpu::CompiledModel> two;
    if (inputs_batchable) {
      auto r = compile(probe_shapes(2));
      if (r.ok()) {
        two = std::move(r).value();
        outs2 = two->outputs();
      } else {
        batchable = false;
      }
    }
    for (size_t i = 0; i < outs1.size(); ++i) {
      if (kserve_datatype(outs1[i].dtype)[0] == '\0') {
        return unimplemented("model '{}': output '{}' has dtype {}, which has no KServe datatype", name_, outs1[i].name,
                             dtype_name(outs1[i].dtype));
      }
      TensorSpec spec{outs1[i].name, outs1[i].dtype, outs1[i].shape};
      if (two) {
        const Shape& s2 = outs2[i].shape;
        if (s2.size() != spec.shape.size() || spec.shape.empty() || spec.shape[0] != 1 || s2[0] != 2) batchable = false;
        for (size_t d = 0; d < spec.shape.size() && d < s2.size(); ++d) {
          if (spec.shape[d] != s2[d]) spec.shape[d] = -1;
        }
      }
      // A variable non-batch input dim can make output dims variable too; the probe cannot tell.
      for (size_t in = 0; in < inputs_.size(); ++in) {
        for (size_t d = 1; d < inputs_[in].shape.size(); ++d) {
          if (inputs_[in].shape[d] < 0) {
            for (size_t od = 1; od < spec.shape.size(); ++od) spec.shape[od] = -1;
          }
        }
      }
      outputs_.push_back(std::move(spec));
    }
    max_batch_size_ = batchable ? options_.max_batch_size : 0;
    if (!batchable) {
      // Without a batch dimension requests run one by one; dim 0 stays an ordinary dim.
      two.reset();
    }
    Key key_one = shapes_key(one->inputs());  // before the move: argument order is unspecified
    cache_put(std::move(key_one), std::move(one));
    if (two) {
      Key key_two = shapes_key(two->inputs());
      cache_put(std::move(key_two), std::move(two));
    }
    worker_ = std::thread([this] { run_loop(); });
    ready_ = true;
    return ok_status();
  }

  // Under an EPC budget (EngineModelOptions::streaming): one instance, compiled once for batch 1
  // (variable dims bound to 1), weights streamed; the imported graph is handed to the compiler so
  // that its weights leave enclave memory. Requests must then have exactly these shapes.
  Status init_memory_bounded(const std::map<std::string, Shape>& shapes) {
    cpu::CompileOptions co;
    co.threads = options_.threads;
    co.streaming = options_.streaming;
    TENET_ASSIGN_OR_RETURN(auto one, cpu::compile_model(std::move(graph_), shapes, co));
    graph_consumed_ = true;
    for (size_t i = 0; i < inputs_.size(); ++i) inputs_[i].shape = one->inputs()[i].shape;
    for (const cpu::TensorInfo& o : one->outputs()) {
      if (kserve_datatype(o.dtype)[0] == '\0') {
        return unimplemented("model '{}': output '{}' has dtype {}, which has no KServe datatype", name_, o.name, dtype_name(o.dtype));
      }
      outputs_.push_back(TensorSpec{o.name, o.dtype, o.shape});
    }
    streaming_plan_ = one->streaming_plan();
    max_batch_size_ = 0;
    Key key = shapes_key(one->inputs());
    cache_put(std::move(key), std::move(one));
    worker_ = std::thread([this] { run_loop(); });
    ready_ = true;
    return ok_status();
  }

  const cpu::StreamingPlan* streaming_plan() const override { return streaming_plan_.enabled ? &streaming_plan_ : nullptr; }
  const std::string& name() const override { return name_; }
  const std::string& version() const override { return options_.version; }
  const std::string& platform() const override {
    static const std::string kPlatform = "onnx_onnxv1";
    return kPlatform;
  }
  const std::vector<TensorSpec>& inputs() const override { return inputs_; }
  const std::vector<TensorSpec>& outputs() const override { return outputs_; }
  int max_batch_size() const override { return max_batch_size_; }
  uint64_t max_queue_delay_us() const override { return options_.max_queue_delay_us; }
  bool ready() const override { return ready_; }

  Result<std::vector<Tensor>> infer(std::vector<Tensor> inputs) override {
    const auto t0 = Clock::now();
    Status s = check_request(*this, inputs);
    if (!s.ok()) {
      for (Tensor& t : inputs) wipe_tensor(t);
      record_fail(t0);
      return s;
    }
    auto p = std::make_unique<Pending>();
    p->rows = max_batch_size_ > 0 ? inputs[0].shape()[0] : 0;
    p->inputs = std::move(inputs);
    p->enqueued = t0;
    std::future<Result<std::vector<Tensor>>> fut = p->done.get_future();
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stopping_) {
        for (Tensor& t : p->inputs) wipe_tensor(t);
        return failed_precondition("model '{}' is stopping", name_);
      }
      if (queue_.size() >= options_.max_queue_requests) {
        for (Tensor& t : p->inputs) wipe_tensor(t);
        std::lock_guard<std::mutex> slock(stats_mu_);
        ++stats_.rejected_queue_full;
        add(stats_.fail, ns_between(t0, Clock::now()));
        return resource_exhausted("model '{}': request queue is full ({} requests); retry later", name_,
                                  options_.max_queue_requests);
      }
      queue_.push_back(std::move(p));
    }
    cv_.notify_one();
    return fut.get();
  }

  ModelStats stats() const override {
    std::lock_guard<std::mutex> lock(stats_mu_);
    ModelStats s = stats_;
    s.batch_stats.clear();
    for (const auto& [b, bs] : batch_stats_) s.batch_stats.push_back(bs);
    return s;
  }

  void stop() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stopping_) return;
      stopping_ = true;
      ready_ = false;
    }
    cv_.notify_all();
    if (worker_.joinable()) worker_.join();
  }

 private:
  using Key = std::vector<Shape>;

  static Key shapes_key(const std::vector<cpu::TensorInfo>& infos) {
    Key k;
    for (const auto& i : infos) k.push_back(i.shape);
    return k;
  }

  Result<std::unique_ptr<cpu::CompiledModel>> compile(const std::map<std::string, Shape>& shapes) {
    if (graph_consumed_) {
      return failed_precondition("model '{}' runs under an EPC budget, compiled for its load-time shapes only", name_);
    }
    cpu::CompileOptions co;
    co.threads = options_.threads;
    return cpu::compile_model(graph_, shapes, co);
  }

  void cache_put(Key key, std::unique_ptr<cpu::CompiledModel> m) {
    lru_.push_front(key);
    cache_[std::move(key)] = Entry{std::move(m), lru_.begin()};
    while (cache_.size() > std::max<size_t>(1, options_.max_compiled_instances)) {
      cache_.erase(lru_.back());
      lru_.pop_back();
    }
  }

  Result<cpu::CompiledModel*> compiled_for(const Key& key) {
    auto it = cache_.find(key);
    if (it != cache_.end()) {
      lru_.splice(lru_.begin(), lru_, it->second.lru_pos);
      return it->second.model.get();
    }
    std::map<std::string, Shape> shapes;
    for (size_t i = 0; i < inputs_.size(); ++i) shapes[inputs_[i].name] = key[i];
    auto r = compile(shapes);
    if (!r.ok()) {
      // Shapes came from the client: a compile failure is a bad request, not a server fault.
      return invalid_argument("model '{}' cannot run with input shapes {}: {}", name_, describe_key(key), r.status().message());
    }
    cpu::CompiledModel* raw = r->get();
    cache_put(key, std::move(r).value());
    return raw;
  }

  static std::string describe_key(const Key& key) {
    std::string s;
    for (const Shape& sh : key) s += (s.empty() ? "" : ", ") + shape_to_string(sh);
    return s;
  }

  void run_loop() {
    std::unique_lock<std::mutex> lock(mu_);
    while (true) {
      cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) {
        if (stopping_) break;
        continue;
      }
      std::vector<std::unique_ptr<Pending>> batch;
      if (max_batch_size_ <= 0) {
        batch.push_back(std::move(queue_.front()));
        queue_.pop_front();
      } else {
        const Key key = batch_key(*queue_.front());
        const auto deadline = queue_.front()->enqueued + std::chrono::microseconds(options_.max_queue_delay_us);
        while (true) {
          // Rows the compatible queued requests would fill, in FIFO order.
          int64_t rows = 0;
          for (const auto& p : queue_) {
            if (batch_key(*p) != key) continue;
            if (rows + p->rows > max_batch_size_) break;
            rows += p->rows;
          }
          if (rows >= max_batch_size_ || stopping_ || Clock::now() >= deadline) break;
          cv_.wait_until(lock, deadline);
        }
        int64_t rows = 0;
        for (auto it = queue_.begin(); it != queue_.end();) {
          if (batch_key(**it) == key) {
            if (rows + (*it)->rows > max_batch_size_) break;
            rows += (*it)->rows;
            batch.push_back(std::move(*it));
            it = queue_.erase(it);
          } else {
            ++it;
          }
        }
      }
      lock.unlock();
      execute(batch);
      lock.lock();
    }
    // Stopping: fail what is left.
    for (auto& p : queue_) {
      for (Tensor& t : p->inputs) wipe_tensor(t);
      p->done.set_value(failed_precondition("model '{}' stopped", name_));
    }
    queue_.clear();
  }

  void finish_fail(std::vector<std::unique_ptr<Pending>>& batch, const Status& s) {
    const auto now = Clock::now();
    {
      std::lock_guard<std::mutex> lock(stats_mu_);
      for (auto& p : batch) add(stats_.fail, ns_between(p->enqueued, now));
    }
    for (auto& p : batch) {
      for (Tensor& t : p->inputs) wipe_tensor(t);
      p->done.set_value(s);
    }
  }

  void execute(std::vector<std::unique_ptr<Pending>>& batch) {
    const auto t_start = Clock::now();
    const size_t n_in = inputs_.size();
    // Assemble the engine's inputs: the request's own tensors, or rows concatenated along dim 0.
    std::vector<Tensor> joined;
    std::vector<ConstTensorView> views;
    Key key;
    int64_t total_rows = 0;
    for (auto& p : batch) total_rows += p->rows;
    if (batch.size() == 1) {
      for (const Tensor& t : batch[0]->inputs) {
        views.push_back(t.view());
        key.push_back(t.shape());
      }
    } else {
      for (size_t i = 0; i < n_in; ++i) {
        Shape shape = batch[0]->inputs[i].shape();
        shape[0] = total_rows;
        std::vector<const Tensor*> parts;
        for (auto& p : batch) parts.push_back(&p->inputs[i]);
        auto t = join_rows(inputs_[i].dtype, shape, parts);
        if (!t.ok()) {
          for (Tensor& j : joined) wipe_tensor(j);
          return finish_fail(batch, t.status());
        }
        key.push_back(shape);
        joined.push_back(std::move(t).value());
      }
      for (const Tensor& t : joined) views.push_back(t.view());
    }
    if (batch.size() > 1) {
      for (auto& p : batch) {
        for (Tensor& t : p->inputs) wipe_tensor(t);  // copied into `joined`
      }
    }
    auto compiled = compiled_for(key);
    if (!compiled.ok()) {
      for (Tensor& t : joined) wipe_tensor(t);
      return finish_fail(batch, compiled.status());
    }
    cpu::CompiledModel* m = *compiled;
    // Engine input order may differ from the spec order only by name lookup.
    std::vector<ConstTensorView> ordered;
    for (const auto& info : m->inputs()) {
      for (size_t i = 0; i < n_in; ++i) {
        if (inputs_[i].name == info.name) ordered.push_back(views[i]);
      }
    }
    const auto t_input = Clock::now();
    Status s = m->run(ordered, engine_outputs_);
    m->wipe_activations();  // no intermediate value of this batch outlives it
    const auto t_infer = Clock::now();
    for (Tensor& t : joined) wipe_tensor(t);
    if (batch.size() == 1) {
      for (Tensor& t : batch[0]->inputs) wipe_tensor(t);
    }
    if (!s.ok()) {
      for (Tensor& t : engine_outputs_) wipe_tensor(t);
      return finish_fail(batch, internal_error("model '{}': engine run failed: {}", name_, s.message()));
    }
    // Split outputs back per request.
    std::vector<std::vector<Tensor>> results(batch.size());
    std::vector<int64_t> rows;
    for (auto& p : batch) rows.push_back(p->rows);
    Status split_status;
    for (size_t o = 0; o < engine_outputs_.size() && split_status.ok(); ++o) {
      const Tensor& out = engine_outputs_[o];
      if (batch.size() == 1) {
        results[0].push_back(out.clone());
        continue;
      }
      auto parts = split_rows(out, total_rows, rows);
      if (!parts.ok()) {
        split_status = parts.status().with_context(fmt::format("model '{}': output '{}'", name_, outputs_[o].name));
        break;
      }
      for (size_t r = 0; r < batch.size(); ++r) results[r].push_back(std::move((*parts)[r]));
    }
    for (Tensor& t : engine_outputs_) wipe_tensor(t);
    const auto t_output = Clock::now();
    if (!split_status.ok()) {
      for (auto& r : results) {
        for (Tensor& t : r) wipe_tensor(t);
      }
      return finish_fail(batch, split_status);
    }
    {
      std::lock_guard<std::mutex> lock(stats_mu_);
      const uint64_t n = batch.size();
      stats_.execution_count += 1;
      stats_.inference_count += static_cast<uint64_t>(std::max<int64_t>(total_rows, static_cast<int64_t>(n)));
      stats_.last_inference_ms = static_cast<uint64_t>(
          std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count());
      for (auto& p : batch) {
        add(stats_.success, ns_between(p->enqueued, t_output));
        add(stats_.queue, ns_between(p->enqueued, t_start));
      }
      add(stats_.compute_input, ns_between(t_start, t_input) * n, n);
      add(stats_.compute_infer, ns_between(t_input, t_infer) * n, n);
      add(stats_.compute_output, ns_between(t_infer, t_output) * n, n);
      const uint64_t bsize = static_cast<uint64_t>(std::max<int64_t>(total_rows, 1));
      BatchStat& bs = batch_stats_[bsize];
      bs.batch_size = bsize;
      add(bs.compute_input, ns_between(t_start, t_input));
      add(bs.compute_infer, ns_between(t_input, t_infer));
      add(bs.compute_output, ns_between(t_infer, t_output));
    }
    for (size_t r = 0; r < batch.size(); ++r) batch[r]->done.set_value(std::move(results[r]));
  }

  void record_fail(Clock::time_point t0) {
    std::lock_guard<std::mutex> lock(stats_mu_);
    add(stats_.fail, ns_between(t0, Clock::now()));
  }

  struct Entry {
    std::unique_ptr<cpu::CompiledModel> model;
    std::list<Key>::iterator lru_pos;
  };

  const std::string name_;
  ir::Graph graph_;  // consumed by init_memory_bounded()
  bool graph_consumed_ = false;
  cpu::StreamingPlan streaming_plan_;
  const EngineModelOptions options_;
  std::vector<TensorSpec> inputs_, outputs_;
  int max_batch_size_ = 0;
  std::atomic<bool> ready_{false};

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::unique_ptr<Pending>> queue_;
  bool stopping_ = false;
  std::thread worker_;

  // Execution-thread state.
  std::map<Key, Entry> cache_;
  std::list<Key> lru_;
  std::vector<Tensor> engine_outputs_;

  mutable std::mutex stats_mu_;
  ModelStats stats_;
  std::map<uint64_t, BatchStat> batch_stats_;
};

}  // namespace

Status check_request(const ServedModel& model, std::span<const Tensor> inputs) {
  const auto& specs = model.inputs();
  if (inputs.size() != specs.size()) {
    return invalid_argument("model '{}' expects {} inputs, got {}", model.name(), specs.size(), inputs.size());
  }
  int64_t batch = -1;
  for (size_t i = 0; i < specs.size(); ++i) {
    const TensorSpec& s = specs[i];
    const Tensor& t = inputs[i];
    if (t.dtype() != s.dtype) {
      return invalid_argument("input '{}' must be {}, got {}", s.name, kserve_datatype(s.dtype), kserve_datatype(t.dtype()));
    }
    if (t.shape().size() != s.shape.size()) {
      return invalid_argument("input '{}' must have shape {}, got {}", s.name, shape_to_string(s.shape), shape_to_string(t.shape()));
    }
    int64_t count = 0;
    if (!checked_element_count(t.shape(), &count)) {
      return invalid_argument("input '{}': shape {} is out of range", s.name, shape_to_string(t.shape()));
    }
    for (size_t d = 0; d < s.shape.size(); ++d) {
      if (s.shape[d] >= 0 && t.shape()[d] != s.shape[d]) {
        return invalid_argument("input '{}' must have shape {}, got {}", s.name, shape_to_string(s.shape), shape_to_string(t.shape()));
      }
      if (t.shape()[d] == 0) return invalid_argument("input '{}': empty dimension in shape {}", s.name, shape_to_string(t.shape()));
    }
    if (model.max_batch_size() > 0) {
      const int64_t b = t.shape()[0];
      if (b < 1 || b > model.max_batch_size()) {
        return invalid_argument("input '{}': batch size {} is outside 1..{} (max_batch_size)", s.name, b, model.max_batch_size());
      }
      if (batch >= 0 && b != batch) {
        return invalid_argument("inputs disagree on the batch size ({} vs {})", batch, b);
      }
      batch = b;
    }
  }
  return ok_status();
}

Result<std::shared_ptr<ServedModel>> load_engine_model(const std::string& name, ir::Graph graph,
                                                        const EngineModelOptions& options) {
  if (!valid_model_name(name)) {
    return invalid_argument("model name '{}' must be 1-256 characters from [A-Za-z0-9_.-]", name);
  }
  if (options.max_queue_requests == 0) return invalid_argument("model '{}': max_queue_requests must be > 0", name);
  auto model = std::make_shared<EngineModel>(name, std::move(graph), options);
  Status s = model->init();
  if (!s.ok()) return s.with_context("loading model '" + name + "'");
  return std::shared_ptr<ServedModel>(std::move(model));
}

Result<std::shared_ptr<ServedModel>> load_engine_model_file(const std::string& name, const std::string& onnx_path,
                                                             const EngineModelOptions& options) {
  TENET_ASSIGN_OR_RETURN(ir::Graph g, onnx_import::import_model_file(onnx_path));
  return load_engine_model(name, std::move(g), options);
}

Status ModelRepository::add(std::shared_ptr<ServedModel> model) {
  if (!model) return invalid_argument("null model");
  if (!valid_model_name(model->name())) return invalid_argument("model name '{}' is not valid", model->name());
  std::lock_guard<std::mutex> lock(mu_);
  if (models_.count(model->name())) return invalid_argument("model '{}' is already in the repository", model->name());
  models_[model->name()] = std::move(model);
  return ok_status();
}

Result<std::shared_ptr<ServedModel>> ModelRepository::get(std::string_view name, std::string_view version) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = models_.find(name);
  // Names come from clients: echo them only when they are plain identifiers.
  const std::string shown = valid_model_name(name) ? std::string(name) : std::string("<invalid name>");
  if (it == models_.end()) return not_found("unknown model '{}'", shown);
  if (!version.empty() && version != it->second->version()) {
    return not_found("model '{}' has no version '{}'", shown, valid_model_name(version) ? std::string(version) : "<invalid>");
  }
  return it->second;
}

std::vector<std::shared_ptr<ServedModel>> ModelRepository::models() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<std::shared_ptr<ServedModel>> out;
  for (const auto& [n, m] : models_) out.push_back(m);
  return out;
}

const char* kserve_datatype(DType dtype) {
  switch (dtype) {
    case DType::kBool: return "BOOL";
    case DType::kUint8: return "UINT8";
    case DType::kInt8: return "INT8";
    case DType::kInt16: return "INT16";
    case DType::kInt32: return "INT32";
    case DType::kInt64: return "INT64";
    case DType::kFloat16: return "FP16";
    case DType::kFloat32: return "FP32";
    case DType::kFloat64: return "FP64";
    default: return "";
  }
}

DType dtype_from_kserve(std::string_view d) {
  if (d == "BOOL") return DType::kBool;
  if (d == "UINT8") return DType::kUint8;
  if (d == "INT8") return DType::kInt8;
  if (d == "INT16") return DType::kInt16;
  if (d == "INT32") return DType::kInt32;
  if (d == "INT64") return DType::kInt64;
  if (d == "FP16") return DType::kFloat16;
  if (d == "FP32") return DType::kFloat32;
  if (d == "FP64") return DType::kFloat64;
  return DType::kUndefined;
}

int triton_config_dtype(DType dtype) {
  switch (dtype) {
    case DType::kBool: return 1;
    case DType::kUint8: return 2;
    case DType::kInt8: return 6;
    case DType::kInt16: return 7;
    case DType::kInt32: return 8;
    case DType::kInt64: return 9;
    case DType::kFloat16: return 10;
    case DType::kFloat32: return 11;
    case DType::kFloat64: return 12;
    default: return 0;
  }
}

void wipe_tensor(Tensor& t) {
  if (t.data() != nullptr && t.size_bytes() > 0) crypto::secure_wipe(t.data(), t.size_bytes());
}

Result<Tensor> join_rows(DType dtype, const Shape& shape, std::span<const Tensor* const> parts) {
  TENET_ASSIGN_OR_RETURN(Tensor t, Tensor::zeros(dtype, shape));
  auto* dst = static_cast<std::byte*>(t.data());
  const auto* end = dst + t.size_bytes();
  for (const Tensor* p : parts) {
    if (p->size_bytes() > static_cast<size_t>(end - dst)) {
      return internal_error("batch of shape {}: the requests' rows do not fit", shape_to_string(shape));
    }
    std::memcpy(dst, p->data(), p->size_bytes());
    dst += p->size_bytes();
  }
  return t;
}

Result<std::vector<Tensor>> split_rows(const Tensor& batched, int64_t batch_rows, std::span<const int64_t> rows) {
  if (batched.shape().empty() || batched.shape()[0] != batch_rows || batch_rows <= 0) {
    return internal_error("output of shape {} does not follow the batch dimension ({} rows)", shape_to_string(batched.shape()),
                          batch_rows);
  }
  const size_t row_bytes = batched.size_bytes() / static_cast<size_t>(batch_rows);
  const auto* src = static_cast<const std::byte*>(batched.data());
  std::vector<Tensor> parts;
  int64_t taken = 0;
  for (int64_t r : rows) {
    taken += r;
    if (r < 0 || taken > batch_rows) return internal_error("splitting {} rows into more than there are", batch_rows);
    Shape shape = batched.shape();
    shape[0] = r;
    const size_t nbytes = row_bytes * static_cast<size_t>(r);
    auto t = Tensor::from_bytes(batched.dtype(), shape, std::span<const std::byte>(src, nbytes));
    if (!t.ok()) {
      for (Tensor& p : parts) wipe_tensor(p);
      return t.status();
    }
    parts.push_back(std::move(t).value());
    src += nbytes;
  }
  return parts;
}

}  // namespace tenet::serving
