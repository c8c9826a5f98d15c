// Helpers shared by the operator table's sources (op_registry.cc, ops_*.cc); not part of the ops
// interface (op.h), and included by nothing else.
//
// - Errors that name the node: bad_node() for hostile or malformed models (InvalidArgument),
//   unsupported() for valid models tenet does not run (Unimplemented), kernel_contract() for a
//   reference called against its contract (Internal).
// - Optional inputs: an absent input is out of range of the span, or has no shape (infer) / no
//   dtype (reference).
// - numpy broadcasting (ONNX "multidirectional broadcasting") as shape arithmetic plus an odometer
//   that walks an output and the matching offsets of N broadcast inputs.
// - The post-op epilogue: residual = the node's last input when a `sum` post-op is present.
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#include <span>
#include <string_view>
#include <vector>

#include "core/safe_math.h"
#include "core/status.h"
#include "core/tensor.h"
#include "engine/ir/graph.h"
#include "engine/ops/op.h"

namespace tenet::ops::util {

template <typename... Args>
Status bad_node(const ir::Node& node, fmt::format_string<Args...> f, Args&&... args) {
  return invalid_argument("{}: {}", node.describe(), fmt::format(f, std::forward<Args>(args)...));
}
template <typename... Args>
Status unsupported(const ir::Node& node, fmt::format_string<Args...> f, Args&&... args) {
  return unimplemented("{}: {}", node.describe(), fmt::format(f, std::forward<Args>(args)...));
}
template <typename... Args>
Status kernel_contract(const ir::Node& node, fmt::format_string<Args...> f, Args&&... args) {
  return internal_error("{}: reference kernel called against its contract: {}", node.describe(),
                        fmt::format(f, std::forward<Args>(args)...));
}

inline Status unsupported_dtype(const ir::Node& node, std::string_view what, DType dtype) {
  return unsupported(node, "{} has dtype {}, which this operator does not support", what, dtype_name(dtype));
}

// ---- inputs and outputs -------------------------------------------------------------------------

inline const InferInput* opt_input(std::span<const InferInput> in, size_t i) {
  return i < in.size() && in[i].present() ? &in[i] : nullptr;
}
inline const ConstTensorView* opt_input(std::span<const ConstTensorView> in, size_t i) {
  return i < in.size() && (in[i].dtype != DType::kUndefined || in[i].data != nullptr) ? &in[i] : nullptr;
}

// A view of a compile-time constant input (data == nullptr when the value is not known).
inline ConstTensorView constant_view(const InferInput& in) {
  if (in.constant != nullptr) return in.constant->view();
  return ConstTensorView{in.dtype, *in.shape, nullptr};
}

inline void set_output(std::vector<InferOutput>& outputs, size_t i, DType dtype, Shape shape) {
  if (outputs.size() <= i) outputs.resize(i + 1);
  outputs[i].dtype = dtype;
  outputs[i].shape = std::move(shape);
}

// Number of inputs that are operands of the op itself: all but the residual of a `sum` post-op.
inline bool has_sum_post_op(const ir::Node& node) {
  return std::any_of(node.post_ops.begin(), node.post_ops.end(),
                     [](const ir::PostOp& p) { return p.kind == ir::PostOp::Kind::kSum; });
}
inline size_t regular_input_count(const ir::Node& node, size_t given) {
  return has_sum_post_op(node) && given > 0 ? given - 1 : given;
}

// Checks the reference's arguments before it touches memory: at least `required_inputs` inputs
// present (counted without a residual), `output_count` outputs, and data behind every non-empty
// view (inputs with `shape_only_input` set may carry no data: Shape reads only the shape).
inline Status check_views(const ir::Node& node, std::span<const ConstTensorView> inputs,
                          std::span<TensorView> outputs, size_t required_inputs, size_t output_count,
                          bool shape_only_input = false) {
  const size_t regular = regular_input_count(node, inputs.size());
  if (regular < required_inputs) {
    return kernel_contract(node, "{} inputs given, at least {} required", regular, required_inputs);
  }
  for (size_t i = 0; i < inputs.size(); ++i) {
    const ConstTensorView* v = opt_input(inputs, i);
    if (v == nullptr) {
      if (i < required_inputs) return kernel_contract(node, "required input {} is absent", i);
      continue;
    }
    if (!element_count(v->shape).ok()) return kernel_contract(node, "input {} has an invalid shape", i);
    if (v->data == nullptr && v->numel() > 0 && !(shape_only_input && i == 0)) {
      return kernel_contract(node, "input {} has no data", i);
    }
  }
  if (outputs.size() < output_count) {
    return kernel_contract(node, "{} outputs given, {} required", outputs.size(), output_count);
  }
  for (size_t i = 0; i < outputs.size(); ++i) {
    if (!element_count(outputs[i].shape).ok()) return kernel_contract(node, "output {} has an invalid shape", i);
    if (outputs[i].data == nullptr && outputs[i].numel() > 0) return kernel_contract(node, "output {} has no storage", i);
  }
  return ok_status();
}

// The reference recomputes what infer() decided; a mismatch means the caller broke the contract.
inline Status expect_output(const ir::Node& node, const TensorView& out, size_t index, DType dtype,
                            std::span<const int64_t> shape) {
  if (out.dtype != dtype || !std::equal(out.shape.begin(), out.shape.end(), shape.begin(), shape.end())) {
    return kernel_contract(node, "output {} is {} {}, expected {} {}", index, dtype_name(out.dtype),
                           shape_to_string(out.shape), dtype_name(dtype), shape_to_string(shape));
  }
  return ok_status();
}

// element_count() with the node named in the error.
inline Result<int64_t> checked_count(const ir::Node& node, std::span<const int64_t> shape, std::string_view what) {
  auto n = element_count(shape);
  if (!n.ok()) return Status(n.status().code(), fmt::format("{}: {}: {}", node.describe(), what, n.status().message()));
  return *n;
}

// Normalizes an axis in [-rank, rank - 1] to [0, rank - 1].
inline Result<int64_t> normalize_axis(const ir::Node& node, int64_t axis, int64_t rank, std::string_view what = "axis") {
  if (axis < -rank || axis >= rank) {
    return bad_node(node, "{} {} is out of range for rank {} (allowed [{}, {}])", what, axis, rank, -rank, rank - 1);
  }
  return axis < 0 ? axis + rank : axis;
}

// Integer values of an int32/int64 tensor (a constant at compile time, an input at run time).
inline Result<std::vector<int64_t>> read_ints(const ir::Node& node, const ConstTensorView& v, std::string_view what) {
  if (v.dtype != DType::kInt64 && v.dtype != DType::kInt32) {
    return bad_node(node, "{} must be int64 (or int32), got {}", what, dtype_name(v.dtype));
  }
  if (v.shape.size() > 1) return bad_node(node, "{} must be a 1-D tensor, got shape {}", what, shape_to_string(v.shape));
  const int64_t n = v.numel();
  if (n > 0 && v.data == nullptr) return bad_node(node, "{} has no value", what);
  std::vector<int64_t> out(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    out[i] = v.dtype == DType::kInt64 ? v.as<int64_t>()[i] : v.as<int32_t>()[i];
  }
  return out;
}

// Integer values of an input that must be a compile-time constant because an output shape
// depends on them (Reshape's shape, Slice's starts, ...).
inline Result<std::vector<int64_t>> constant_ints(const ir::Node& node, const InferInput& in, std::string_view what) {
  if (in.constant == nullptr) {
    return unsupported(node, "{} must be a constant: the output shape depends on its value", what);
  }
  return read_ints(node, in.constant->view(), what);
}

// ---- broadcasting -------------------------------------------------------------------------------

// numpy broadcast of two shapes; false when they are incompatible.
inline bool broadcast_shapes(std::span<const int64_t> a, std::span<const int64_t> b, Shape* out) {
  const size_t rank = std::max(a.size(), b.size());
  Shape s(rank);
  for (size_t i = 0; i < rank; ++i) {
    const int64_t da = i < rank - a.size() ? 1 : a[i - (rank - a.size())];
    const int64_t db = i < rank - b.size() ? 1 : b[i - (rank - b.size())];
    if (da == db || db == 1) {
      s[i] = da;
    } else if (da == 1) {
      s[i] = db;
    } else {
      return false;
    }
  }
  *out = std::move(s);
  return true;
}

// Element strides of `in` as seen from `out` (same rank as out, 0 on broadcast dims). `in` must
// broadcast to `out`.
inline std::vector<int64_t> broadcast_strides(std::span<const int64_t> in, std::span<const int64_t> out) {
  std::vector<int64_t> strides(out.size(), 0);
  const std::vector<int64_t> own = row_major_strides(in);
  const size_t lead = out.size() - in.size();
  for (size_t i = 0; i < in.size(); ++i) strides[lead + i] = in[i] == 1 ? 0 : own[i];
  return strides;
}

// Calls f(out_index, offsets) for every element of `out_shape` in row-major order, where
// offsets[k] is the element offset into input k (whose strides, from broadcast_strides(), are
// strides[k]).
template <size_t N, typename F>
void for_each_broadcast(std::span<const int64_t> out_shape, const std::array<std::vector<int64_t>, N>& strides, F&& f) {
  const size_t rank = out_shape.size();
  const int64_t total = numel(out_shape);
  if (total == 0) return;
  const int64_t inner = rank == 0 ? 1 : out_shape[rank - 1];
  std::array<int64_t, N> inner_stride{};
  for (size_t k = 0; k < N; ++k) inner_stride[k] = rank == 0 ? 0 : strides[k][rank - 1];
  std::vector<int64_t> index(rank, 0);
  std::array<int64_t, N> base{};
  int64_t out_index = 0;
  while (true) {
    std::array<int64_t, N> off = base;
    for (int64_t i = 0; i < inner; ++i) {
      f(out_index++, off);
      for (size_t k = 0; k < N; ++k) off[k] += inner_stride[k];
    }
    // Advance the odometer over the outer dims.
    size_t d = rank <= 1 ? 0 : rank - 1;
    while (true) {
      if (d == 0) return;
      --d;
      if (++index[d] < out_shape[d]) {
        for (size_t k = 0; k < N; ++k) base[k] += strides[k][d];
        break;
      }
      for (size_t k = 0; k < N; ++k) base[k] -= strides[k][d] * (out_shape[d] - 1);
      index[d] = 0;
    }
  }
}

// ---- dtype dispatch -----------------------------------------------------------------------------

// Calls f.template operator()<T>() for the C++ type of `dtype` among Ts; false if none matches.
template <typename... Ts, typename F>
bool visit_dtype(DType dtype, F&& f) {
  return ((dtype == dtype_of<Ts>() ? (f.template operator()<Ts>(), true) : false) || ...);
}

// Calls f.template operator()<U>() with an unsigned type of the element size (1, 2, 4 or 8
// bytes): for kernels that only move elements (Gather, Transpose, Slice, Pad, ...).
template <typename F>
bool visit_element_size(DType dtype, F&& f) {
  switch (dtype_size(dtype)) {
    case 1: f.template operator()<uint8_t>(); return true;
    case 2: f.template operator()<uint16_t>(); return true;
    case 4: f.template operator()<uint32_t>(); return true;
    case 8: f.template operator()<uint64_t>(); return true;
    default: return false;
  }
}

// ---- post-ops -----------------------------------------------------------------------------------

// Applies node.post_ops to the float32 output `dst`; the residual of a `sum` post-op is the
// node's last input and must have dst's shape.
inline Status apply_node_post_ops(const ir::Node& node, std::span<const ConstTensorView> inputs, const TensorView& dst) {
  if (node.post_ops.empty()) return ok_status();
  if (dst.dtype != DType::kFloat32) {
    return kernel_contract(node, "post-ops need a float32 output, got {}", dtype_name(dst.dtype));
  }
  const float* residual = nullptr;
  if (has_sum_post_op(node)) {
    const ConstTensorView* r = inputs.empty() ? nullptr : opt_input(inputs, inputs.size() - 1);
    if (r == nullptr || r->dtype != DType::kFloat32 || r->shape != dst.shape || (r->data == nullptr && dst.numel() > 0)) {
      return kernel_contract(node, "the sum post-op needs a float32 residual of shape {} as the last input",
                             shape_to_string(dst.shape));
    }
    residual = r->as<float>();
  }
  apply_post_ops(node.post_ops, dst.as<float>(), dst.numel(), residual);
  return ok_status();
}

}  // namespace tenet::ops::util
