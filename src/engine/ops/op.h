// The operator table: for every supported ONNX operator, a shape-inference function and a plain
// reference implementation.
//
// The reference is the oracle for the optimized CPU kernels (oneDNN) and any other backend, and
// the evaluator for constant folding; the compiler also falls back to it for nodes no faster
// kernel claims. It is written for clarity and exactness, not speed.
//
// Contract:
// - infer() validates every attribute and input dtype/shape of the node (so hostile models fail
//   at compile time with a message naming the node) and fills one InferOutput per node output.
//   An absent optional input has dtype kUndefined and shape == nullptr. When an input is a known
//   constant its tensor is passed (Reshape, Slice, Pad, ... read their parameters from it); an op
//   whose output shape depends on a non-constant input's values returns Unimplemented.
//   Output element counts must be checked with element_count() (overflow-safe).
// - reference() receives the inputs and pre-allocated outputs with exactly the inferred
//   dtypes/shapes (row-major, plain layout) and must not allocate output storage. Absent optional
//   inputs have data == nullptr. It applies the node's post_ops (see apply_post_ops); for a
//   `sum` post-op the residual is the node's last input.
#pragma once

#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"
#include "core/tensor.h"
#include "engine/ir/graph.h"

namespace tenet::ops {

struct InferInput {
  DType dtype = DType::kUndefined;
  const Shape* shape = nullptr;      // nullptr for an absent optional input
  const Tensor* constant = nullptr;  // set when the input's value is known at compile time
  bool present() const { return shape != nullptr; }
};

struct InferOutput {
  DType dtype = DType::kUndefined;
  Shape shape;
};

using InferFn = Status (*)(const ir::Node& node, std::span<const InferInput> inputs,
                           std::vector<InferOutput>& outputs);
using ReferenceFn = Status (*)(const ir::Node& node, std::span<const ConstTensorView> inputs,
                               std::span<TensorView> outputs);

struct OpSchema {
  std::string_view op_type;
  int min_opset;  // ONNX opsets for which this definition holds (tenet supports 11..17)
  int max_opset;
  InferFn infer;
  ReferenceFn reference;
  // Elementwise-like ops that keep the layout of their input (used by the layout pass).
  bool layout_transparent = false;
};

// Looks up an operator of the default ONNX domain (or a tenet-internal op) valid at `opset`.
const OpSchema* find_op(std::string_view op_type, int64_t opset);
// All op types tenet knows, sorted, for --help and error messages.
std::vector<std::string> supported_ops();

// Runs shape inference for one node. Checks input/output arity against the node first.
Status infer_node(const ir::Node& node, int64_t opset, std::span<const InferInput> inputs,
                  std::vector<InferOutput>& outputs);

// Applies the node's post-ops in place to dst (plain layout). `residual` is the sum operand,
// same shape as dst, or empty if the node has no sum post-op.
void apply_post_ops(std::span<const ir::PostOp> post_ops, float* dst, int64_t count, const float* residual);

// The elements of a row-major input that a Slice node selects: element i of the output (row-major
// over `shape`) is input element offset + sum_d index_d * strides[d]. `inputs` are the node's
// (data, starts, ends[, axes[, steps]]); only the data's shape is read, the others' values must be
// known. Kernels use it to run Slice as one strided copy.
struct StridedWindow {
  Shape shape;
  std::vector<int64_t> strides;  // in elements; 0 on dims of one element
  int64_t offset = 0;            // in elements
};
Result<StridedWindow> slice_window(const ir::Node& node, std::span<const ConstTensorView> inputs);

// Per-op registration, one table per source file (ops_nn.cc, ops_elementwise.cc, ...).
std::span<const OpSchema> nn_ops();
std::span<const OpSchema> elementwise_ops();
std::span<const OpSchema> tensor_ops();
std::span<const OpSchema> reduce_ops();

}  // namespace tenet::ops
