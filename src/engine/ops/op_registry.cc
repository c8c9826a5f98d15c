// The operator table: lookup by (op_type, opset), arity checks, and the post-op epilogue.
#include <algorithm>
#include <climits>
#include <cmath>
#include <set>

#include "engine/ops/op.h"
#include "engine/ops/op_util.h"

namespace tenet::ops {
namespace {

constexpr int kVariadic = INT_MAX;

// Input/output counts per op and opset range, as in the ONNX operator schemas. Inputs are counted
// without the residual of a `sum` post-op; the first min_inputs inputs and the first min_outputs
// outputs must be present.
struct Arity {
  std::string_view op_type;
  int min_opset;
  int max_opset;
  int min_inputs;
  int max_inputs;
  int min_outputs;
  int max_outputs;
};

constexpr Arity kArities[] = {
    // ops_nn.cc
    {"Conv", 11, 17, 2, 3, 1, 1},
    {"BatchNormalization", 11, 17, 5, 5, 1, 5},
    {"MaxPool", 11, 17, 1, 1, 1, 2},
    {"AveragePool", 11, 17, 1, 1, 1, 1},
    {"GlobalAveragePool", 11, 17, 1, 1, 1, 1},
    {"Gemm", 11, 17, 2, 3, 1, 1},
    {"MatMul", 11, 17, 2, 2, 1, 1},
    {"FusedMatMul", 11, 17, 2, 3, 1, 1},  // tenet-internal (ops_nn.cc)
    {"Softmax", 11, 17, 1, 1, 1, 1},
    {"LayerNormalization", 17, 17, 2, 3, 1, 3},
    {"Gelu", 11, 17, 1, 1, 1, 1},
    // ops_elementwise.cc
    {"Relu", 11, 17, 1, 1, 1, 1},
    {"Clip", 11, 17, 1, 3, 1, 1},
    {"Sigmoid", 11, 17, 1, 1, 1, 1},
    {"HardSigmoid", 11, 17, 1, 1, 1, 1},
    {"HardSwish", 14, 17, 1, 1, 1, 1},
    {"Tanh", 11, 17, 1, 1, 1, 1},
    {"Erf", 11, 17, 1, 1, 1, 1},
    {"Sqrt", 11, 17, 1, 1, 1, 1},
    {"Exp", 11, 17, 1, 1, 1, 1},
    {"Neg", 11, 17, 1, 1, 1, 1},
    {"Reciprocal", 11, 17, 1, 1, 1, 1},
    {"Abs", 11, 17, 1, 1, 1, 1},
    {"Add", 11, 17, 2, 2, 1, 1},
    {"Sub", 11, 17, 2, 2, 1, 1},
    {"Mul", 11, 17, 2, 2, 1, 1},
    {"Div", 11, 17, 2, 2, 1, 1},
    {"Pow", 11, 17, 2, 2, 1, 1},
    {"Min", 11, 17, 1, kVariadic, 1, 1},
    {"Max", 11, 17, 1, kVariadic, 1, 1},
    {"Equal", 11, 17, 2, 2, 1, 1},
    {"Less", 11, 17, 2, 2, 1, 1},
    {"Greater", 11, 17, 2, 2, 1, 1},
    {"Not", 11, 17, 1, 1, 1, 1},
    {"Where", 11, 17, 3, 3, 1, 1},
    {"Identity", 11, 17, 1, 1, 1, 1},
    {"Dropout", 11, 11, 1, 1, 1, 2},
    {"Dropout", 12, 17, 1, 3, 1, 2},
    {"Cast", 11, 17, 1, 1, 1, 1},
    // ops_tensor.cc
    {"Concat", 11, 17, 1, kVariadic, 1, 1},
    {"Flatten", 11, 17, 1, 1, 1, 1},
    {"Reshape", 11, 17, 2, 2, 1, 1},
    {"Transpose", 11, 17, 1, 1, 1, 1},
    {"Gather", 11, 17, 2, 2, 1, 1},
    {"Slice", 11, 17, 3, 5, 1, 1},
    {"Split", 11, 12, 1, 1, 1, kVariadic},
    {"Split", 13, 17, 1, 2, 1, kVariadic},
    {"Squeeze", 11, 12, 1, 1, 1, 1},
    {"Squeeze", 13, 17, 1, 2, 1, 1},
    {"Unsqueeze", 11, 12, 1, 1, 1, 1},
    {"Unsqueeze", 13, 17, 2, 2, 1, 1},
    {"Pad", 11, 17, 2, 3, 1, 1},
    {"Shape", 11, 17, 1, 1, 1, 1},
    {"Constant", 11, 17, 0, 0, 1, 1},
    {"ConstantOfShape", 11, 17, 1, 1, 1, 1},
    {"Expand", 11, 17, 2, 2, 1, 1},
    {"Range", 11, 17, 3, 3, 1, 1},
    {"Tile", 11, 17, 2, 2, 1, 1},
    // ops_reduce.cc
    {"ReduceMean", 11, 17, 1, 1, 1, 1},
    {"ReduceSum", 11, 12, 1, 1, 1, 1},
    {"ReduceSum", 13, 17, 1, 2, 1, 1},
    {"ReduceMax", 11, 17, 1, 1, 1, 1},
    {"ReduceMin", 11, 17, 1, 1, 1, 1},
    {"ReduceProd", 11, 17, 1, 1, 1, 1},
};

// Ops whose reference applies node.post_ops (the fusion passes attach them to these).
constexpr std::string_view kPostOpOps[] = {"Conv", "Gemm", "MatMul", "FusedMatMul", "BatchNormalization", "Add", "Sub", "Mul", "Div"};

const std::vector<const OpSchema*>& all_schemas() {
  static const std::vector<const OpSchema*> schemas = [] {
    std::vector<const OpSchema*> v;
    for (auto table : {nn_ops(), elementwise_ops(), tensor_ops(), reduce_ops()}) {
      for (const OpSchema& s : table) v.push_back(&s);
    }
    return v;
  }();
  return schemas;
}

const Arity* find_arity(std::string_view op_type, int64_t opset) {
  for (const Arity& a : kArities) {
    if (a.op_type == op_type && a.min_opset <= opset && opset <= a.max_opset) return &a;
  }
  return nullptr;
}

std::string count_range(int lo, int hi) {
  if (lo == hi) return std::to_string(lo);
  if (hi == kVariadic) return fmt::format("at least {}", lo);
  return fmt::format("{} to {}", lo, hi);
}

Status check_post_ops(const ir::Node& node, size_t input_count) {
  if (node.post_ops.empty()) return ok_status();
  if (std::find(std::begin(kPostOpOps), std::end(kPostOpOps), node.op_type) == std::end(kPostOpOps)) {
    return util::unsupported(node, "carries post-ops, which this operator does not apply");
  }
  const auto sums = std::count_if(node.post_ops.begin(), node.post_ops.end(),
                                  [](const ir::PostOp& p) { return p.kind == ir::PostOp::Kind::kSum; });
  if (sums > 1) return util::unsupported(node, "has {} sum post-ops; at most one is supported", sums);
  if (sums == 1 && input_count == 0) return util::bad_node(node, "has a sum post-op but no residual input");
  return ok_status();
}

}  // namespace

const OpSchema* find_op(std::string_view op_type, int64_t opset) {
  for (const OpSchema* s : all_schemas()) {
    if (s->op_type == op_type && s->min_opset <= opset && opset <= s->max_opset) return s;
  }
  return nullptr;
}

std::vector<std::string> supported_ops() {
  std::set<std::string> names;
  for (const OpSchema* s : all_schemas()) names.emplace(s->op_type);
  return {names.begin(), names.end()};
}

Status infer_node(const ir::Node& node, int64_t opset, std::span<const InferInput> inputs,
                  std::vector<InferOutput>& outputs) {
  const OpSchema* schema = find_op(node.op_type, opset);
  if (schema == nullptr) {
    return util::unsupported(node, "operator '{}' at opset {} is not supported by tenet", node.op_type, opset);
  }
  const Arity* arity = find_arity(node.op_type, opset);
  if (arity == nullptr) return internal_error("{}: no arity entry for opset {}", node.describe(), opset);
  if (inputs.size() != node.inputs.size()) {
    return internal_error("{}: {} input descriptions given for {} inputs", node.describe(), inputs.size(), node.inputs.size());
  }
  TENET_RETURN_IF_ERROR(check_post_ops(node, inputs.size()));
  const size_t regular = util::regular_input_count(node, inputs.size());
  const auto op_inputs = inputs.first(regular);

  if (static_cast<int64_t>(regular) < arity->min_inputs || static_cast<int64_t>(regular) > arity->max_inputs) {
    return util::bad_node(node, "has {} inputs; {} at opset {} takes {}", regular, node.op_type, opset,
                          count_range(arity->min_inputs, arity->max_inputs));
  }
  for (int i = 0; i < arity->min_inputs; ++i) {
    if (!op_inputs[static_cast<size_t>(i)].present()) return util::bad_node(node, "required input {} is absent", i);
  }
  const size_t output_count = node.outputs.size();
  if (static_cast<int64_t>(output_count) < arity->min_outputs || static_cast<int64_t>(output_count) > arity->max_outputs) {
    return util::bad_node(node, "has {} outputs; {} at opset {} produces {}", output_count, node.op_type, opset,
                          count_range(arity->min_outputs, arity->max_outputs));
  }
  for (int i = 0; i < arity->min_outputs; ++i) {
    if (node.outputs[static_cast<size_t>(i)] == ir::kNoValue) return util::bad_node(node, "required output {} is absent", i);
  }

  outputs.assign(output_count, InferOutput{});
  TENET_RETURN_IF_ERROR(schema->infer(node, op_inputs, outputs));
  if (outputs.size() != output_count) {
    return internal_error("{}: shape inference produced {} outputs for {}", node.describe(), outputs.size(), output_count);
  }
  for (size_t i = 0; i < output_count; ++i) {
    if (outputs[i].dtype == DType::kUndefined) {
      return internal_error("{}: shape inference left output {} without a dtype", node.describe(), i);
    }
    TENET_RETURN_IF_ERROR(util::checked_count(node, outputs[i].shape, fmt::format("output {}", i)).status());
  }

  if (!node.post_ops.empty()) {
    if (outputs[0].dtype != DType::kFloat32) {
      return util::unsupported(node, "post-ops need a float32 output, the output is {}", dtype_name(outputs[0].dtype));
    }
    if (util::has_sum_post_op(node)) {
      const InferInput& r = inputs.back();
      if (!r.present() || r.dtype != DType::kFloat32 || *r.shape != outputs[0].shape) {
        return util::bad_node(node, "the sum post-op's residual (last input) must be float32 of shape {}",
                              shape_to_string(outputs[0].shape));
      }
    }
  }
  return ok_status();
}

void apply_post_ops(std::span<const ir::PostOp> post_ops, float* dst, int64_t count, const float* residual) {
  using Kind = ir::PostOp::Kind;
  for (const ir::PostOp& p : post_ops) {
    switch (p.kind) {
      case Kind::kSum:
        if (residual == nullptr) break;  // callers check for the residual (util::apply_node_post_ops)
        for (int64_t i = 0; i < count; ++i) dst[i] += residual[i];
        break;
      case Kind::kRelu:
        for (int64_t i = 0; i < count; ++i) dst[i] = dst[i] > 0.f ? dst[i] : 0.f;
        break;
      case Kind::kClip:
        for (int64_t i = 0; i < count; ++i) dst[i] = std::min(std::max(dst[i], p.alpha), p.beta);
        break;
      case Kind::kSigmoid:
        for (int64_t i = 0; i < count; ++i) dst[i] = 1.f / (1.f + std::exp(-dst[i]));
        break;
      case Kind::kHardSigmoid:
        for (int64_t i = 0; i < count; ++i) dst[i] = std::max(0.f, std::min(1.f, p.alpha * dst[i] + p.beta));
        break;
      case Kind::kHardSwish:
        for (int64_t i = 0; i < count; ++i) dst[i] = dst[i] * std::max(0.f, std::min(1.f, dst[i] / 6.f + 0.5f));
        break;
      case Kind::kSwish:
        for (int64_t i = 0; i < count; ++i) dst[i] = dst[i] / (1.f + std::exp(-dst[i]));
        break;
      case Kind::kGeluErf:
        for (int64_t i = 0; i < count; ++i) {
          dst[i] = 0.5f * dst[i] * (1.f + std::erf(dst[i] * static_cast<float>(M_SQRT1_2)));
        }
        break;
    }
  }
}

}  // namespace tenet::ops
