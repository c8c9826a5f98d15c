// Models served by the KServe v2 front ends, and the dynamic batcher in front of the engine.
//
// A ServedModel is what the REST and gRPC handlers see: KServe metadata (name, version, platform,
// tensor specs with -1 for a variable dimension), Triton's max_batch_size, and a blocking,
// thread-safe infer(). The engine-backed implementation (load_engine_model) owns:
//
//   * one execution thread. A cpu::CompiledModel binds its input shapes when compiled and runs
//     one request at a time (its arena is its state), so every run of a model happens on that
//     thread; oneDNN/OpenMP parallelism happens inside the run.
//   * a cache of compiled instances keyed by the full input shapes actually seen (in practice:
//     one per batch size), created lazily on the execution thread and bounded (least recently
//     used evicted), so a client cycling through shapes cannot make the server compile without
//     bound.
//   * a bounded FIFO request queue. infer() never blocks on a full queue: it fails at once with
//     kResourceExhausted, which the front ends map to HTTP 503 / gRPC UNAVAILABLE.
//   * the dynamic batcher (Triton's dynamic_batching): when the model's inputs and outputs all
//     have a variable dimension 0, queued requests whose other dimensions agree are concatenated
//     along dimension 0 up to max_batch_size rows, run once and the outputs split back. The
//     batcher waits at most max_queue_delay_us after the oldest request arrived for the batch to
//     fill. Requests with different non-batch shapes are never mixed; they wait their turn.
//
// Leak hygiene: the engine-backed infer() wipes the bytes of the input tensors it was given, the
// concatenated batch buffers and the engine's output buffers after use (tenet::crypto::
// secure_wipe); callers wipe the tensors infer() returns once they have encoded them. Nothing here
// logs tensor contents, and error messages name tensors and shapes, never values.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"
#include "core/tensor.h"
#include "engine/cpu/weight_streaming.h"
#include "engine/ir/graph.h"

namespace tenet::serving {

// A model input or output as KServe metadata shows it: -1 marks a variable-size dimension.
struct TensorSpec {
  std::string name;
  DType dtype = DType::kUndefined;
  Shape shape;
};

// Cumulative counters, shaped like Triton's ModelStatistics (grpc_service.proto) so that /stats
// and ModelStatistics are a direct rendering. Counts and durations only: nothing here is derived
// from tensor values, so the host may export all of it (Prometheus).
struct DurationStat {
  uint64_t count = 0;
  uint64_t ns = 0;
};
struct BatchStat {
  uint64_t batch_size = 0;
  DurationStat compute_input, compute_infer, compute_output;
};
struct ModelStats {
  uint64_t last_inference_ms = 0;  // ms since the epoch
  uint64_t inference_count = 0;    // successful inferences, counting each batch row
  uint64_t execution_count = 0;    // engine runs (one per formed batch)
  DurationStat success, fail, queue, compute_input, compute_infer, compute_output;
  uint64_t rejected_queue_full = 0;  // infer() calls refused because the queue was full
  std::vector<BatchStat> batch_stats;  // ascending batch_size
};

// How a served model is protected (design.md, "Three ways to protect a model"): what KServe
// metadata shows under "parameters" and what the enclave claims in its RA-TLS evidence.
struct ProtectionInfo {
  std::string mode = "tee";  // "tee": all in the enclave; "hybrid": linear layers on an untrusted accelerator
  int verify_bits = 0;       // hybrid: Freivalds soundness of each outsourced result (0: unchecked, INSECURE)
};

class ServedModel {
 public:
  virtual ~ServedModel() = default;
  virtual const std::string& name() const = 0;
  virtual const std::string& version() const = 0;
  virtual const std::string& platform() const = 0;  // "onnx_onnxv1"
  virtual const std::vector<TensorSpec>& inputs() const = 0;
  virtual const std::vector<TensorSpec>& outputs() const = 0;
  // Triton's meaning: > 0 if dimension 0 of every input and output is the batch dimension and
  // requests may carry up to this many rows; 0 if the model has no batch dimension.
  virtual int max_batch_size() const = 0;
  virtual uint64_t max_queue_delay_us() const = 0;
  virtual bool ready() const = 0;
  // Runs one request. `inputs` are in the order of inputs(); check_request() must accept them.
  // Thread-safe; blocks until the request ran or failed. Errors: kInvalidArgument (shapes or
  // dtypes), kResourceExhausted (queue full: retry later), kFailedPrecondition (stopped),
  // kInternal. Returned outputs are in the order of outputs().
  virtual Result<std::vector<Tensor>> infer(std::vector<Tensor> inputs) = 0;
  virtual ModelStats stats() const = 0;
  // The weight-streaming plan of a memory-bounded model (EngineModelOptions::streaming), or null.
  virtual const cpu::StreamingPlan* streaming_plan() const { return nullptr; }
  virtual ProtectionInfo protection() const { return {}; }
};

// Checks a request's tensors against a model's specs: count, dtype, rank, fixed dims, one common
// batch size in 1..max_batch_size when the model batches, element counts within limits. Error
// messages name the input and the shapes, never data.
Status check_request(const ServedModel& model, std::span<const Tensor> inputs);

struct EngineModelOptions {
  std::string version = "1";
  int max_batch_size = 8;             // 0 disables batching; ignored if the model cannot batch
  uint64_t max_queue_delay_us = 0;    // how long the batcher waits for a batch to fill
  size_t max_queue_requests = 64;     // queue bound; beyond it infer() fails with kResourceExhausted
  int threads = 0;                    // engine threads per run (0: all cores)
  size_t max_compiled_instances = 8;  // LRU bound on compiled shapes
  // Memory-bounded (Vessels' planned mode): with a store set, the model is compiled once, for
  // batch 1, with its weights streamed within streaming.budget_bytes; no batching, fixed shapes.
  cpu::StreamingOptions streaming;
};

// Builds an engine-backed model from an imported graph (e.g. decrypted from a sealed package).
// Compiles it at load (batch 1, and batch 2 to learn which output dims follow the batch), so a
// model that does not compile fails here, not on the first request. Variable non-batch input
// dims are bound to 1 for that probe.
Result<std::shared_ptr<ServedModel>> load_engine_model(const std::string& name, ir::Graph graph,
                                                        const EngineModelOptions& options);
// Convenience: imports an .onnx file first.
Result<std::shared_ptr<ServedModel>> load_engine_model_file(const std::string& name, const std::string& onnx_path,
                                                             const EngineModelOptions& options);

// The models a server serves, by name (one version each). Thread-safe.
class ModelRepository {
 public:
  // Error if a model of that name is already present or the name is not a valid URL segment.
  Status add(std::shared_ptr<ServedModel> model);
  // kNotFound if no such model, or `version` is non-empty and differs from the model's.
  Result<std::shared_ptr<ServedModel>> get(std::string_view name, std::string_view version = {}) const;
  std::vector<std::shared_ptr<ServedModel>> models() const;

 private:
  mutable std::mutex mu_;
  std::map<std::string, std::shared_ptr<ServedModel>, std::less<>> models_;
};

// KServe datatype strings ("FP32", ...) for the dtypes the engine has; "" for none.
const char* kserve_datatype(DType dtype);
// Inverse; kUndefined for types tenet does not serve (UINT16/32/64, BF16, BYTES) or unknown.
DType dtype_from_kserve(std::string_view datatype);
// Triton model_config DataType enum value (TYPE_FP32 = 11, ...).
int triton_config_dtype(DType dtype);

// Wipes a tensor's bytes (OPENSSL_cleanse). Safe on undefined tensors.
void wipe_tensor(Tensor& t);

// Dynamic batching, shared by the batchers of engine and hybrid models. join_rows: one tensor of
// `shape` (dimension 0: the batch's rows) holding `parts` one after the other along dimension 0,
// zeros after them (padding, when the parts have fewer rows). split_rows: `batched`'s leading
// rows cut back into tensors of rows[0], rows[1], ... rows; kInternal when its dimension 0 is not
// `batch_rows` (an output that does not follow the batch dimension).
Result<Tensor> join_rows(DType dtype, const Shape& shape, std::span<const Tensor* const> parts);
Result<std::vector<Tensor>> split_rows(const Tensor& batched, int64_t batch_rows, std::span<const int64_t> rows);

}  // namespace tenet::serving
