// A model compiled for the CPU for one set of input shapes: kernels chosen per node, layouts
// assigned (blocked oneDNN layouts kept between oneDNN ops, reorders only at boundaries), one
// activation arena planned from buffer lifetimes and allocated once. run() allocates nothing.
//
// One CompiledModel runs one request at a time (its arena is its state); a server keeps one per
// worker thread.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "core/status.h"
#include "core/tensor.h"
#include "engine/cpu/kernel.h"
#include "engine/cpu/weight_streaming.h"
#include "engine/ir/graph.h"
#include "engine/passes/shape_inference.h"
#include "engine/plan/arena_planner.h"

namespace tenet::cpu {

struct CompileOptions {
  int threads = 0;              // 0: all cores
  bool reference_only = false;  // run every node with the plain reference (the oracle)
  // true: one buffer per activation, never shared (the naive baseline); false: one arena planned
  // from lifetimes (greedy by size).
  bool no_buffer_reuse = false;
  passes::OptimizeOptions optimize;
  // Tried before the built-in kernels for every node; returns nullptr to decline. Hybrid mode
  // (src/hybrid) puts its outsourced linear layers here.
  std::function<Result<std::unique_ptr<Kernel>>(KernelInputs&)> kernel_override;
  // Memory-bounded execution (weight_streaming.h); off unless a store is set.
  StreamingOptions streaming;
};

struct TensorInfo {
  std::string name;
  DType dtype = DType::kUndefined;
  Shape shape;
};

// One executed step, for `tenet inspect` and tests.
struct StepInfo {
  std::string node;     // node name, or "reorder <value>"
  std::string op_type;  // ONNX op, or "Reorder"/"Copy"
  std::string kernel;   // "dnnl_conv", "reference", ...
  std::string output_layout;
  std::string post_ops;  // "sum+relu"
  int64_t flops = 0;
  uint64_t activation_bytes = 0;  // its inputs and outputs that live in the arena
  uint64_t weight_bytes = 0;      // the weights its kernel owns (reordered copies, or shared)
  uint64_t shared_weight_bytes = 0;  // of weight_bytes: a graph constant's own storage, not a copy
};

class CompiledModel {
 public:
  ~CompiledModel();
  CompiledModel(const CompiledModel&) = delete;
  CompiledModel& operator=(const CompiledModel&) = delete;

  // Compiles a graph already through passes::prepare_graph.
  static Result<std::unique_ptr<CompiledModel>> compile(ir::Graph graph, const CompileOptions& options);

  const std::vector<TensorInfo>& inputs() const { return inputs_; }
  const std::vector<TensorInfo>& outputs() const { return outputs_; }
  // Inputs in the order of inputs(), each with exactly the compiled dtype and shape. Outputs are
  // written to `outputs` (allocated here on first use, reused afterwards).
  Status run(std::span<const ConstTensorView> inputs, std::vector<Tensor>& outputs);
  // run() that also adds each step's wall time in milliseconds to `step_ms` (one entry per
  // steps(), resized on first use), for profilers such as bench/profile_steps.cc.
  Status run_profiled(std::span<const ConstTensorView> inputs, std::vector<Tensor>& outputs, std::vector<double>& step_ms);

  // Overwrites the activation arena and the scratchpad with zeros, so that no intermediate value
  // of a request outlives it (the server calls this after every run; outputs are the caller's).
  void wipe_activations();

  const std::vector<plan::BufferRequest>& buffers() const { return buffers_; }
  const plan::ArenaPlan& arena_plan() const { return arena_plan_; }
  const std::vector<StepInfo>& steps() const { return step_info_; }
  size_t scratchpad_bytes() const { return scratchpad_bytes_; }
  size_t weight_bytes() const { return weight_bytes_; }
  // With CompileOptions::streaming: what stays resident, what is loaded per run, the ring.
  const StreamingPlan& streaming_plan() const { return streaming_plan_; }
  int threads() const { return threads_; }
  const ir::Graph& graph() const;

 private:
  CompiledModel();
  Status run_steps(std::span<const ConstTensorView> inputs, std::vector<Tensor>& outputs, std::vector<double>* step_ms);
  Status plan_streaming(const StreamingOptions& options);
  friend Result<std::unique_ptr<CompiledModel>> compile_model(ir::Graph&&, const std::map<std::string, Shape>&,
                                                              const CompileOptions&, passes::PassStats*);
  struct Impl;
  std::unique_ptr<Impl> impl_;
  std::vector<TensorInfo> inputs_, outputs_;
  std::vector<plan::BufferRequest> buffers_;
  plan::ArenaPlan arena_plan_;
  std::vector<StepInfo> step_info_;
  size_t scratchpad_bytes_ = 0;
  size_t weight_bytes_ = 0;
  StreamingPlan streaming_plan_;
  int threads_ = 1;
};

// Import-to-executable in one call: copies `imported`, prepares it for `input_shapes` (inputs not
// named keep the model's declared shapes) and compiles it. `stats` may be null. With streaming,
// linear layers whose weights exceed a ring slot are tiled first (passes::tile_linear_outputs).
Result<std::unique_ptr<CompiledModel>> compile_model(const ir::Graph& imported,
                                                     const std::map<std::string, Shape>& input_shapes,
                                                     const CompileOptions& options,
                                                     passes::PassStats* stats = nullptr);
// The same, consuming the graph: with streaming, weights that no kernel reads at run time are
// then freed during compilation instead of staying alive in the caller's copy.
Result<std::unique_ptr<CompiledModel>> compile_model(ir::Graph&& imported,
                                                     const std::map<std::string, Shape>& input_shapes,
                                                     const CompileOptions& options,
                                                     passes::PassStats* stats = nullptr);

// Floating-point operations of one node (multiply-add = 2), 0 for data movement.
int64_t node_flops(const ir::Graph& g, const ir::Node& n);

}  // namespace tenet::cpu
