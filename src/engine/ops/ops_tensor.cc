// Tensor-manipulation operators: shape arithmetic and data movement (Concat, Reshape, Gather,
// Slice, Pad, ...). These are dtype-agnostic: kernels move elements by their byte size.
//
// Where an output shape depends on an input's values (Reshape's shape, Slice's starts, Tile's
// repeats, ...), that input must be a compile-time constant; the reference re-reads the values
// at run time and checks them against the planned output shape.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "engine/ops/op.h"
#include "engine/ops/op_util.h"

namespace tenet::ops {
namespace {

using util::bad_node;
using util::opt_input;
using util::set_output;
using util::unsupported;
using util::unsupported_dtype;


Status check_movable(const ir::Node& node, DType dtype, std::string_view what = "input") {
  if (dtype_size(dtype) == 0) return unsupported_dtype(node, what, dtype);
  return ok_status();
}

// Reshape-like reference: the same bytes under the planned shape.
Status copy_same_bytes(const ir::Node& node, std::span<const ConstTensorView> inputs, std::span<TensorView> outputs) {
  TENET_RETURN_IF_ERROR(util::check_views(node, inputs, outputs, 1, 1));
  const ConstTensorView& x = inputs[0];
  TensorView& out = outputs[0];
  if (out.dtype != x.dtype || out.numel() != x.numel()) {
    return util::kernel_contract(node, "output {} {} does not hold the input {} {}", dtype_name(out.dtype),
                                 shape_to_string(out.shape), dtype_name(x.dtype), shape_to_string(x.shape));
  }
  if (out.size_bytes() > 0) std::memcpy(out.data, x.data, out.size_bytes());
  return ok_status();
}

// Copies src into dst where the strides map each element of `out_shape` (row-major into dst)
// to src + base + sum(index[d] * strides[d]).
Status strided_copy(const ir::Node& node, DType dtype, const void* src, int64_t base, std::span<const int64_t> out_shape,
                    std::vector<int64_t> strides, void* dst) {
  const bool done = util::visit_element_size(dtype, [&]<typename U>() {
    const U* s = static_cast<const U*>(src) + base;
    U* d = static_cast<U*>(dst);
    util::for_each_broadcast<1>(out_shape, {std::move(strides)},
                                [&](int64_t i, const std::array<int64_t, 1>& off) { d[i] = s[off[0]]; });
  });
  if (!done) return unsupported_dtype(node, "input", dtype);
  return ok_status();
}

// ---- Concat -------------------------------------------------------------------------------------

Result<Shape> concat_shape(const ir::Node& node, std::span<const DType> dtypes, std::span<const Shape* const> shapes,
                           int64_t* axis_out) {
  TENET_ASSIGN_OR_RETURN(const int64_t axis_attr, node.attr_int("axis"));
  const Shape& first = *shapes[0];
  if (first.empty()) return bad_node(node, "cannot concatenate scalars");
  TENET_ASSIGN_OR_RETURN(const int64_t axis, util::normalize_axis(node, axis_attr, static_cast<int64_t>(first.size())));
  Shape out = first;
  for (size_t i = 1; i < shapes.size(); ++i) {
    const Shape& s = *shapes[i];
    if (dtypes[i] != dtypes[0]) {
      return bad_node(node, "input {} has dtype {}, input 0 {}", i, dtype_name(dtypes[i]), dtype_name(dtypes[0]));
    }
    if (s.size() != first.size()) return bad_node(node, "input {} has rank {}, input 0 rank {}", i, s.size(), first.size());
    for (size_t d = 0; d < s.size(); ++d) {
      if (static_cast<int64_t>(d) == axis) {
        if (!checked_add(out[d], s[d], &out[d])) return bad_node(node, "concatenated dimension overflows");
      } else if (s[d] != first[d]) {
        return bad_node(node, "input {} has shape {}, incompatible with {} outside axis {}", i, shape_to_string(s),
                        shape_to_string(first), axis);
      }
    }
  }
  TENET_RETURN_IF_ERROR(util::checked_count(node, out, "output").status());
  *axis_out = axis;
  return out;
}

Status concat_infer(const ir::Node& node, std::span<const InferInput> inputs, std::vector<InferOutput>& outputs) {
  std::vector<DType> dtypes;
  std::vector<const Shape*> shapes;
  for (size_t i = 0; i < inputs.size(); ++i) {
    if (!inputs[i].present()) return bad_node(node, "input {} is absent", i);
    dtypes.push_back(inputs[i].dtype);
    shapes.push_back(inputs[i].shape);
  }
  TENET_RETURN_IF_ERROR(check_movable(node, dtypes[0]));
  int64_t axis = 0;
  TENET_ASSIGN_OR_RETURN(Shape out, concat_shape(node, dtypes, shapes, &axis));
  set_output(outputs, 0, dtypes[0], std::move(out));
  return ok_status();
}

Status concat_reference(const ir::Node& node, std::span<const ConstTensorView> inputs, std::span<TensorView> outputs) {
  TENET_RETURN_IF_ERROR(util::check_views(node, inputs, outputs, 1, 1));
  std::vector<DType> dtypes;
  std::vector<const Shape*> shapes;
  for (const ConstTensorView& in : inputs) {
    dtypes.push_back(in.dtype);
    shapes.push_back(&in.shape);
  }
  int64_t axis = 0;
  TENET_ASSIGN_OR_RETURN(const Shape shape, concat_shape(node, dtypes, shapes, &axis));
  TENET_RETURN_IF_ERROR(util::expect_output(node, outputs[0], 0, dtypes[0], shape));
  const size_t esize = dtype_size(dtypes[0]);
  const int64_t outer = numel(std::span(shape).first(static_cast<size_t>(axis)));
  auto* dst = static_cast<std::byte*>(outputs[0].data);
  for (int64_t o = 0; o < outer; ++o) {
    for (const ConstTensorView& in : inputs) {
      const size_t block = static_cast<size_t>(numel(std::span(in.shape).subspan(static_cast<size_t>(axis)))) * esize;
      if (block == 0) continue;
      std::memcpy(dst, static_cast<const std::byte*>(in.data) + static_cast<size_t>(o) * block, block);
      dst += block;
    }
  }
  return ok_status();
}

// ---- Flatten ------------------------------------------------------------------------------------

Status flatten_infer(const ir::Node& node, std::span<const InferInput> inputs, std::vector<InferOutput>& outputs) {
  TENET_RETURN_IF_ERROR(check_movable(node, inputs[0].dtype));
  const Shape& x = *inputs[0].shape;
  const auto rank = static_cast<int64_t>(x.size());
  TENET_ASSIGN_OR_RETURN(int64_t axis, node.attr_int("axis", 1));
  if (axis < -rank || axis > rank) return bad_node(node, "axis {} is out of range [{}, {}]", axis, -rank, rank);
  if (axis < 0) axis += rank;
  const auto split = static_cast<size_t>(axis);
  set_output(outputs, 0, inputs[0].dtype,
             {numel(std::span(x).first(split)), numel(std::span(x).subspan(split))});
  return ok_status();
}

// ---- Reshape ------------------------------------------------------------------------------------

Result<Shape> reshape_target(const ir::Node& node, const Shape& in, const std::vector<int64_t>& requested) {
  TENET_ASSIGN_OR_RETURN(const int64_t allowzero, node.attr_int("allowzero", 0));
  if (allowzero != 0 && allowzero != 1) return bad_node(node, "allowzero must be 0 or 1, got {}", allowzero);
  if (static_cast<int64_t>(requested.size()) > kMaxRank) {
    return bad_node(node, "target shape has rank {}; the maximum is {}", requested.size(), kMaxRank);
  }
  Shape out(requested.size());
  int64_t infer_at = -1;
  int64_t known = 1;
  bool has_zero = false;
  for (size_t i = 0; i < requested.size(); ++i) {
    int64_t d = requested[i];
    if (d == -1) {
      if (infer_at >= 0) return bad_node(node, "target shape has more than one -1");
      infer_at = static_cast<int64_t>(i);
      continue;
    }
    if (d < -1) return bad_node(node, "target shape has invalid dimension {}", d);
    if (d == 0 && allowzero == 0) {
      if (i >= in.size()) return bad_node(node, "target dimension {} is 0 (copy) but the input has rank {}", i, in.size());
      d = in[i];
    }
    has_zero = has_zero || (d == 0 && allowzero != 0);
    out[i] = d;
    if (!checked_mul(known, d, &known) || known > kMaxTensorElements) {
      return bad_node(node, "target shape {} has more than 2^40 elements", shape_to_string(requested));
    }
  }
  if (has_zero && infer_at >= 0) return bad_node(node, "with allowzero=1 the target shape cannot hold both 0 and -1");
  const int64_t in_count = numel(in);
  if (infer_at >= 0) {
    if (known == 0 || in_count % known != 0) {
      return bad_node(node, "cannot infer the -1 dimension: {} elements into {}", in_count, shape_to_string(requested));
    }
    out[static_cast<size_t>(infer_at)] = in_count / known;
  }
  TENET_ASSIGN_OR_RETURN(const int64_t count, util::checked_count(node, out, "target shape"));
  if (count != in_count) {
    return bad_node(node, "cannot reshape {} ({} elements) to {} ({} elements)", shape_to_string(in), in_count,
                    shape_to_string(out), count);
  }
  return out;
}

Status reshape_infer(const ir::Node& node, std::span<const InferInput> inputs, std::vector<InferOutput>& outputs) {
  TENET_RETURN_IF_ERROR(check_movable(node, inputs[0].dtype));
  TENET_ASSIGN_OR_RETURN(const std::vector<int64_t> requested, util::constant_ints(node, inputs[1], "shape"));
  TENET_ASSIGN_OR_RETURN(Shape out, reshape_target(node, *inputs[0].shape, requested));
  set_output(outputs, 0, inputs[0].dtype, std::move(out));
  return ok_status();
}

// ---- Transpose ----------------------------------------------------------------------------------

Result<std::vector<int64_t>> transpose_perm(const ir::Node& node, size_t rank) {
  std::vector<int64_t> reversed(rank);
  for (size_t i = 0; i < rank; ++i) reversed[i] = static_cast<int64_t>(rank - 1 - i);
  TENET_ASSIGN_OR_RETURN(std::vector<int64_t> perm, node.attr_ints("perm", reversed));
  if (perm.size() != rank) return bad_node(node, "perm has {} values for an input of rank {}", perm.size(), rank);
  std::vector<bool> seen(rank, false);
  for (int64_t p : perm) {
    if (p < 0 || p >= static_cast<int64_t>(rank) || seen[static_cast<size_t>(p)]) {
      return bad_node(node, "perm {} is not a permutation of [0, {})", shape_to_string(perm), rank);
    }
    seen[static_cast<size_t>(p)] = true;
  }
  return perm;
}

Status transpose_infer(const ir::Node& node, std::span<const InferInput> inputs, std::vector<InferOutput>& outputs) {
  TENET_RETURN_IF_ERROR(check_movable(node, inputs[0].dtype));
  const Shape& x = *inputs[0].shape;
  TENET_ASSIGN_OR_RETURN(const std::vector<int64_t> perm, transpose_perm(node, x.size()));
  Shape out(x.size());
  for (size_t i = 0; i < x.size(); ++i) out[i] = x[static_cast<size_t>(perm[i])];
  set_output(outputs, 0, inputs[0].dtype, std::move(out));
  return ok_status();
}

Status transpose_reference(const ir::Node& node, std::span<const ConstTensorView> inputs, std::span<TensorView> outputs) {
  TENET_RETURN_IF_ERROR(util::check_views(node, inputs, outputs, 1, 1));
  const ConstTensorView& x = inputs[0];
  TENET_ASSIGN_OR_RETURN(const std::vector<int64_t> perm, transpose_perm(node, x.shape.size()));
  const std::vector<int64_t> in_strides = row_major_strides(x.shape);
  Shape out(x.shape.size());
  std::vector<int64_t> strides(x.shape.size());
  for (size_t i = 0; i < x.shape.size(); ++i) {
    out[i] = x.shape[static_cast<size_t>(perm[i])];
    strides[i] = in_strides[static_cast<size_t>(perm[i])];
  }
  TENET_RETURN_IF_ERROR(util::expect_output(node, outputs[0], 0, x.dtype, out));
  return strided_copy(node, x.dtype, x.data, 0, out, std::move(strides), outputs[0].data);
}

// ---- Gather -------------------------------------------------------------------------------------

Result<Shape> gather_shape(const ir::Node& node, const Shape& data, DType index_dtype, const Shape& indices, int64_t* axis_out) {
  if (index_dtype != DType::kInt64 && index_dtype != DType::kInt32) {
    return bad_node(node, "indices must be int32 or int64, got {}", dtype_name(index_dtype));
  }
  if (data.empty()) return bad_node(node, "data must have rank >= 1");
  TENET_ASSIGN_OR_RETURN(const int64_t axis_attr, node.attr_int("axis", 0));
  TENET_ASSIGN_OR_RETURN(const int64_t axis, util::normalize_axis(node, axis_attr, static_cast<int64_t>(data.size())));
  Shape out(data.begin(), data.begin() + axis);
  out.insert(out.end(), indices.begin(), indices.end());
  out.insert(out.end(), data.begin() + axis + 1, data.end());
  TENET_RETURN_IF_ERROR(util::checked_count(node, out, "output").status());
  *axis_out = axis;
  return out;
}

// Index i of the indices tensor, made non-negative; error when outside [-dim, dim).
Result<int64_t> gather_index(const ir::Node& node, const ConstTensorView& indices, int64_t i, int64_t dim) {
  int64_t idx = indices.dtype == DType::kInt64 ? indices.as<int64_t>()[i] : indices.as<int32_t>()[i];
  if (idx < -dim || idx >= dim) {
    return out_of_range("{}: index {} is out of range for a dimension of size {}", node.describe(), idx, dim);
  }
  return idx < 0 ? idx + dim : idx;
}

Status gather_infer(const ir::Node& node, std::span<const InferInput> inputs, std::vector<InferOutput>& outputs) {
  TENET_RETURN_IF_ERROR(check_movable(node, inputs[0].dtype, "data"));
  int64_t axis = 0;
  TENET_ASSIGN_OR_RETURN(Shape out, gather_shape(node, *inputs[0].shape, inputs[1].dtype, *inputs[1].shape, &axis));
  if (inputs[1].constant != nullptr) {
    const ConstTensorView indices = inputs[1].constant->view();
    for (int64_t i = 0; i < indices.numel(); ++i) {
      TENET_RETURN_IF_ERROR(gather_index(node, indices, i, (*inputs[0].shape)[static_cast<size_t>(axis)]).status());
    }
  }
  set_output(outputs, 0, inputs[0].dtype, std::move(out));
  return ok_status();
}

Status gather_reference(const ir::Node& node, std::span<const ConstTensorView> inputs, std::span<TensorView> outputs) {
  TENET_RETURN_IF_ERROR(util::check_views(node, inputs, outputs, 2, 1));
  const ConstTensorView& data = inputs[0];
  const ConstTensorView& indices = inputs[1];
  int64_t axis = 0;
  TENET_ASSIGN_OR_RETURN(const Shape shape, gather_shape(node, data.shape, indices.dtype, indices.shape, &axis));
  TENET_RETURN_IF_ERROR(util::expect_output(node, outputs[0], 0, data.dtype, shape));
  const auto a = static_cast<size_t>(axis);
  const int64_t outer = numel(std::span(data.shape).first(a));
  const int64_t dim = data.shape[a];
  const size_t block = static_cast<size_t>(numel(std::span(data.shape).subspan(a + 1))) * dtype_size(data.dtype);
  const int64_t count = indices.numel();
  const auto* src = static_cast<const std::byte*>(data.data);
  auto* dst = static_cast<std::byte*>(outputs[0].data);
  for (int64_t o = 0; o < outer; ++o) {
    for (int64_t j = 0; j < count; ++j) {
      TENET_ASSIGN_OR_RETURN(const int64_t idx, gather_index(node, indices, j, dim));
      if (block > 0) std::memcpy(dst, src + static_cast<size_t>(o * dim + idx) * block, block);
      dst += block;
    }
  }
  return ok_status();
}

// ---- Slice (opset 10+: starts, ends, axes, steps as inputs) -------------------------------------

struct SliceParams {
  std::vector<int64_t> start;  // per input dim
  std::vector<int64_t> step;
  Shape out;
};

Result<SliceParams> slice_params(const ir::Node& node, const Shape& in, const std::vector<int64_t>& starts,
                                 const std::vector<int64_t>& ends, const std::vector<int64_t>* axes_in,
                                 const std::vector<int64_t>* steps_in) {
  const auto rank = static_cast<int64_t>(in.size());
  if (starts.size() != ends.size()) return bad_node(node, "starts has {} values, ends {}", starts.size(), ends.size());
  if (axes_in != nullptr && axes_in->size() != starts.size()) {
    return bad_node(node, "axes has {} values, starts {}", axes_in->size(), starts.size());
  }
  if (steps_in != nullptr && steps_in->size() != starts.size()) {
    return bad_node(node, "steps has {} values, starts {}", steps_in->size(), starts.size());
  }
  SliceParams p{std::vector<int64_t>(in.size(), 0), std::vector<int64_t>(in.size(), 1), in};
  std::vector<bool> seen(in.size(), false);
  for (size_t i = 0; i < starts.size(); ++i) {
    int64_t axis = axes_in != nullptr ? (*axes_in)[i] : static_cast<int64_t>(i);
    TENET_ASSIGN_OR_RETURN(axis, util::normalize_axis(node, axis, rank, "slice axis"));
    const auto a = static_cast<size_t>(axis);
    if (seen[a]) return bad_node(node, "axis {} is sliced twice", axis);
    seen[a] = true;
    const int64_t step = steps_in != nullptr ? (*steps_in)[i] : 1;
    if (step == 0) return bad_node(node, "step 0 on axis {}", axis);
    const int64_t dim = in[a];
    int64_t start = starts[i] < 0 ? starts[i] + dim : starts[i];  // no overflow: dim >= 0
    int64_t end = ends[i] < 0 ? ends[i] + dim : ends[i];
    int64_t distance = 0;
    if (dim == 0) {
      distance = 0;
    } else if (step > 0) {
      start = std::clamp<int64_t>(start, 0, dim);
      end = std::clamp<int64_t>(end, 0, dim);
      distance = end - start;
    } else {
      start = std::clamp<int64_t>(start, 0, dim - 1);
      end = std::clamp<int64_t>(end, -1, dim - 1);
      distance = start - end;
    }
    const int64_t magnitude = step > 0 ? step : (step == std::numeric_limits<int64_t>::min() ? std::numeric_limits<int64_t>::max() : -step);
    const int64_t count = distance <= 0 ? 0 : 1 + (distance - 1) / magnitude;
    p.start[a] = count > 0 ? start : 0;
    p.step[a] = step;
    p.out[a] = count;
  }
  return p;
}

Status slice_infer(const ir::Node& node, std::span<const InferInput> inputs, std::vector<InferOutput>& outputs) {
  TENET_RETURN_IF_ERROR(check_movable(node, inputs[0].dtype, "data"));
  TENET_ASSIGN_OR_RETURN(const std::vector<int64_t> starts, util::constant_ints(node, inputs[1], "starts"));
  TENET_ASSIGN_OR_RETURN(const std::vector<int64_t> ends, util::constant_ints(node, inputs[2], "ends"));
  std::vector<int64_t> axes, steps;
  const InferInput* axes_in = opt_input(inputs, 3);
  const InferInput* steps_in = opt_input(inputs, 4);
  if (axes_in != nullptr) {
    TENET_ASSIGN_OR_RETURN(axes, util::constant_ints(node, *axes_in, "axes"));
  }
  if (steps_in != nullptr) {
    TENET_ASSIGN_OR_RETURN(steps, util::constant_ints(node, *steps_in, "steps"));
  }
  TENET_ASSIGN_OR_RETURN(SliceParams p, slice_params(node, *inputs[0].shape, starts, ends, axes_in ? &axes : nullptr,
                                                      steps_in ? &steps : nullptr));
  set_output(outputs, 0, inputs[0].dtype, std::move(p.out));
  return ok_status();
}

Status slice_reference(const ir::Node& node, std::span<const ConstTensorView> inputs, std::span<TensorView> outputs) {
  TENET_RETURN_IF_ERROR(util::check_views(node, inputs, outputs, 3, 1));
  const ConstTensorView& x = inputs[0];
  TENET_ASSIGN_OR_RETURN(const StridedWindow w, slice_window(node, inputs));
  TENET_RETURN_IF_ERROR(util::expect_output(node, outputs[0], 0, x.dtype, w.shape));
  return strided_copy(node, x.dtype, x.data, w.offset, w.shape, w.strides, outputs[0].data);
}

// ---- Split --------------------------------------------------------------------------------------

Status split_common(const ir::Node& node, const InferInput& x, const std::vector<int64_t>* split,
                    std::vector<InferOutput>& outputs) {
  TENET_RETURN_IF_ERROR(check_movable(node, x.dtype));
  const Shape& shape = *x.shape;
  if (shape.empty()) return bad_node(node, "cannot split a scalar");
  TENET_ASSIGN_OR_RETURN(const int64_t axis_attr, node.attr_int("axis", 0));
  TENET_ASSIGN_OR_RETURN(const int64_t axis, util::normalize_axis(node, axis_attr, static_cast<int64_t>(shape.size())));
  const size_t n = node.outputs.size();
  if (n == 0) return bad_node(node, "has no outputs");
  const int64_t dim = shape[static_cast<size_t>(axis)];
  std::vector<int64_t> sizes;
  if (split != nullptr) {
    if (split->size() != n) return bad_node(node, "split has {} values for {} outputs", split->size(), n);
    int64_t total = 0;
    for (int64_t s : *split) {
      if (s < 0 || !checked_add(total, s, &total)) return bad_node(node, "split {} has a negative or huge value", shape_to_string(*split));
    }
    if (total != dim) return bad_node(node, "split {} sums to {}, but the dimension is {}", shape_to_string(*split), total, dim);
    sizes = *split;
  } else {
    if (dim % static_cast<int64_t>(n) != 0) {
      return bad_node(node, "dimension {} of size {} cannot be split evenly into {} outputs", axis, dim, n);
    }
    sizes.assign(n, dim / static_cast<int64_t>(n));
  }
  for (size_t i = 0; i < n; ++i) {
    Shape out = shape;
    out[static_cast<size_t>(axis)] = sizes[i];
    set_output(outputs, i, x.dtype, std::move(out));
  }
  return ok_status();
}

Status split11_infer(const ir::Node& node, std::span<const InferInput> inputs, std::vector<InferOutput>& outputs) {
  if (!node.has_attr("split")) return split_common(node, inputs[0], nullptr, outputs);
  TENET_ASSIGN_OR_RETURN(const std::vector<int64_t> split, node.attr_ints("split"));
  return split_common(node, inputs[0], &split, outputs);
}

Status split13_infer(const ir::Node& node, std::span<const InferInput> inputs, std::vector<InferOutput>& outputs) {
  const InferInput* split_in = opt_input(inputs, 1);
  if (split_in == nullptr) return split_common(node, inputs[0], nullptr, outputs);
  TENET_ASSIGN_OR_RETURN(const std::vector<int64_t> split, util::constant_ints(node, *split_in, "split"));
  return split_common(node, inputs[0], &split, outputs);
}

// The part sizes are read from the planned outputs (and checked against the input).
Status split_reference(const ir::Node& node, std::span<const ConstTensorView> inputs, std::span<TensorView> outputs) {
  TENET_RETURN_IF_ERROR(util::check_views(node, inputs, outputs, 1, 1));
  const ConstTensorView& x = inputs[0];
  if (x.shape.empty()) return util::kernel_contract(node, "scalar input");
  TENET_ASSIGN_OR_RETURN(const int64_t axis_attr, node.attr_int("axis", 0));
  TENET_ASSIGN_OR_RETURN(const int64_t axis, util::normalize_axis(node, axis_attr, static_cast<int64_t>(x.shape.size())));
  const auto a = static_cast<size_t>(axis);
  int64_t total = 0;
  for (size_t i = 0; i < outputs.size(); ++i) {
    const TensorView& out = outputs[i];
    if (out.dtype != x.dtype || out.shape.size() != x.shape.size()) return util::kernel_contract(node, "output {} mismatches", i);
    for (size_t d = 0; d < x.shape.size(); ++d) {
      if (d != a && out.shape[d] != x.shape[d]) return util::kernel_contract(node, "output {} mismatches", i);
    }
    total += out.shape[a];
  }
  if (total != x.shape[a]) return util::kernel_contract(node, "outputs cover {} of {} along axis {}", total, x.shape[a], axis);
  const size_t esize = dtype_size(x.dtype);
  const int64_t outer = numel(std::span(x.shape).first(a));
  const size_t inner = static_cast<size_t>(numel(std::span(x.shape).subspan(a + 1))) * esize;
  const auto* src = static_cast<const std::byte*>(x.data);
  for (int64_t o = 0; o < outer; ++o) {
    for (const TensorView& out : outputs) {
      const size_t block = static_cast<size_t>(out.shape[a]) * inner;
      if (block == 0) continue;
      std::memcpy(static_cast<std::byte*>(out.data) + static_cast<size_t>(o) * block, src, block);
      src += block;
    }
  }
  return ok_status();
}

// ---- Squeeze / Unsqueeze ------------------------------------------------------------------------

Status squeeze_common(const ir::Node& node, const InferInput& x, const std::vector<int64_t>* axes,
                      std::vector<InferOutput>& outputs) {
  TENET_RETURN_IF_ERROR(check_movable(node, x.dtype));
  const Shape& in = *x.shape;
  const auto rank = static_cast<int64_t>(in.size());
  std::vector<bool> drop(in.size(), false);
  if (axes == nullptr || axes->empty()) {
    for (size_t d = 0; d < in.size(); ++d) drop[d] = in[d] == 1;
  } else {
    for (int64_t axis : *axes) {
      TENET_ASSIGN_OR_RETURN(const int64_t a, util::normalize_axis(node, axis, rank));
      if (drop[static_cast<size_t>(a)]) return bad_node(node, "axis {} is given twice", axis);
      if (in[static_cast<size_t>(a)] != 1) {
        return bad_node(node, "cannot squeeze axis {} of size {} (shape {})", axis, in[static_cast<size_t>(a)], shape_to_string(in));
      }
      drop[static_cast<size_t>(a)] = true;
    }
  }
  Shape out;
  for (size_t d = 0; d < in.size(); ++d) {
    if (!drop[d]) out.push_back(in[d]);
  }
  set_output(outputs, 0, x.dtype, std::move(out));
  return ok_status();
}

Status unsqueeze_common(const ir::Node& node, const InferInput& x, const std::vector<int64_t>& axes,
                        std::vector<InferOutput>& outputs) {
  TENET_RETURN_IF_ERROR(check_movable(node, x.dtype));
  const Shape& in = *x.shape;
  const auto out_rank = static_cast<int64_t>(in.size() + axes.size());
  if (out_rank > kMaxRank) return bad_node(node, "output rank {} exceeds the maximum of {}", out_rank, kMaxRank);
  std::vector<bool> inserted(static_cast<size_t>(out_rank), false);
  for (int64_t axis : axes) {
    TENET_ASSIGN_OR_RETURN(const int64_t a, util::normalize_axis(node, axis, out_rank));
    if (inserted[static_cast<size_t>(a)]) return bad_node(node, "axis {} is given twice", axis);
    inserted[static_cast<size_t>(a)] = true;
  }
  Shape out(static_cast<size_t>(out_rank));
  size_t next = 0;
  for (size_t d = 0; d < out.size(); ++d) out[d] = inserted[d] ? 1 : in[next++];
  set_output(outputs, 0, x.dtype, std::move(out));
  return ok_status();
}

Status squeeze11_infer(const ir::Node& node, std::span<const InferInput> inputs, std::vector<InferOutput>& outputs) {
  if (!node.has_attr("axes")) return squeeze_common(node, inputs[0], nullptr, outputs);
  TENET_ASSIGN_OR_RETURN(const std::vector<int64_t> axes, node.attr_ints("axes"));
  return squeeze_common(node, inputs[0], &axes, outputs);
}

Status squeeze13_infer(const ir::Node& node, std::span<const InferInput> inputs, std::vector<InferOutput>& outputs) {
  const InferInput* axes_in = opt_input(inputs, 1);
  if (axes_in == nullptr) return squeeze_common(node, inputs[0], nullptr, outputs);
  TENET_ASSIGN_OR_RETURN(const std::vector<int64_t> axes, util::constant_ints(node, *axes_in, "axes"));
  return squeeze_common(node, inputs[0], &axes, outputs);
}

Status unsqueeze11_infer(const ir::Node& node, std::span<const InferInput> inputs, std::vector<InferOutput>& outputs) {
  TENET_ASSIGN_OR_RETURN(const std::vector<int64_t> axes, node.attr_ints("axes"));
  return unsqueeze_common(node, inputs[0], axes, outputs);
}

Status unsqueeze13_infer(const ir::Node& node, std::span<const InferInput> inputs, std::vector<InferOutput>& outputs) {
  TENET_ASSIGN_OR_RETURN(const std::vector<int64_t> axes, util::constant_ints(node, inputs[1], "axes"));
  return unsqueeze_common(node, inputs[0], axes, outputs);
}

// ---- Pad (opset 11+: pads and constant_value as inputs) -----------------------------------------

enum class PadMode { kConstant, kReflect, kEdge };

struct PadParams {
  PadMode mode = PadMode::kConstant;
  std::vector<int64_t> begin;
  Shape out;
};

Result<PadParams> pad_params(const ir::Node& node, const Shape& in, const std::vector<int64_t>& pads) {
  PadParams p;
  TENET_ASSIGN_OR_RETURN(const std::string mode, node.attr_string("mode", "constant"));
  if (mode == "constant") {
    p.mode = PadMode::kConstant;
  } else if (mode == "reflect") {
    p.mode = PadMode::kReflect;
  } else if (mode == "edge") {
    p.mode = PadMode::kEdge;
  } else {
    return unsupported(node, "pad mode '{}' is not supported (constant, reflect, edge)", mode);
  }
  const size_t rank = in.size();
  if (pads.size() != 2 * rank) return bad_node(node, "pads has {} values for an input of rank {}", pads.size(), rank);
  p.begin.resize(rank);
  p.out.resize(rank);
  for (size_t d = 0; d < rank; ++d) {
    const int64_t b = pads[d];
    const int64_t e = pads[d + rank];
    int64_t size = 0;
    if (!checked_add(in[d], b, &size) || !checked_add(size, e, &size) || size < 0) {
      return bad_node(node, "pads {} and {} on axis {} of size {} give an invalid size", b, e, d, in[d]);
    }
    if (p.mode == PadMode::kReflect && (b > 0 || e > 0) && (b >= in[d] || e >= in[d])) {
      return bad_node(node, "reflect pads ({}, {}) on axis {} must be smaller than its size {}", b, e, d, in[d]);
    }
    if (p.mode == PadMode::kEdge && in[d] == 0 && size > 0) return bad_node(node, "edge padding of an empty axis {}", d);
    p.begin[d] = b;
    p.out[d] = size;
  }
  TENET_RETURN_IF_ERROR(util::checked_count(node, p.out, "output").status());
  return p;
}

Status pad_infer(const ir::Node& node, std::span<const InferInput> inputs, std::vector<InferOutput>& outputs) {
  TENET_RETURN_IF_ERROR(check_movable(node, inputs[0].dtype, "data"));
  TENET_ASSIGN_OR_RETURN(const std::vector<int64_t> pads, util::constant_ints(node, inputs[1], "pads"));
  TENET_ASSIGN_OR_RETURN(PadParams p, pad_params(node, *inputs[0].shape, pads));
  if (const InferInput* value = opt_input(inputs, 2)) {
    if (value->dtype != inputs[0].dtype || numel(*value->shape) != 1) {
      return bad_node(node, "constant_value must be a scalar of the data's dtype {}", dtype_name(inputs[0].dtype));
    }
  }
  set_output(outputs, 0, inputs[0].dtype, std::move(p.out));
  return ok_status();
}

Status pad_reference(const ir::Node& node, std::span<const ConstTensorView> inputs, std::span<TensorView> outputs) {
  TENET_RETURN_IF_ERROR(util::check_views(node, inputs, outputs, 2, 1));
  const ConstTensorView& x = inputs[0];
  TENET_ASSIGN_OR_RETURN(const std::vector<int64_t> pads, util::read_ints(node, inputs[1], "pads"));
  TENET_ASSIGN_OR_RETURN(const PadParams p, pad_params(node, x.shape, pads));
  TENET_RETURN_IF_ERROR(util::expect_output(node, outputs[0], 0, x.dtype, p.out));
  const ConstTensorView* value = opt_input(inputs, 2);
  if (value != nullptr && (value->dtype != x.dtype || value->numel() != 1)) {
    return util::kernel_contract(node, "bad constant_value");
  }
  const size_t rank = x.shape.size();
  const std::vector<int64_t> in_strides = row_major_strides(x.shape);
  const bool done = util::visit_element_size(x.dtype, [&]<typename U>() {
    U fill{};
    if (value != nullptr) std::memcpy(&fill, value->data, sizeof(U));
    const U* src = x.as<U>();
    U* dst = outputs[0].as<U>();
    const int64_t total = numel(p.out);
    std::vector<int64_t> index(rank, 0);
    for (int64_t i = 0; i < total; ++i) {
      int64_t offset = 0;
      bool inside = true;
      for (size_t d = 0; d < rank && inside; ++d) {
        int64_t c = index[d] - p.begin[d];
        const int64_t dim = x.shape[d];
        if (c < 0 || c >= dim) {
          switch (p.mode) {
            case PadMode::kConstant: inside = false; break;
            case PadMode::kEdge: c = c < 0 ? 0 : dim - 1; break;
            case PadMode::kReflect: c = c < 0 ? -c : 2 * (dim - 1) - c; break;  // pads < dim: one reflection
          }
        }
        offset += c * in_strides[d];
      }
      dst[i] = inside ? src[offset] : fill;
      for (size_t d = rank; d-- > 0;) {
        if (++index[d] < p.out[d]) break;
        index[d] = 0;
      }
    }
  });
  if (!done) return unsupported_dtype(node, "data", x.dtype);
  return ok_status();
}

// ---- Shape (opset 15: start / end) --------------------------------------------------------------

void shape_range(const ir::Node& node, int64_t rank, int64_t start, int64_t end, int64_t* lo, int64_t* hi) {
  if (start < 0) start += rank;
  if (end < 0) end += rank;
  *lo = std::clamp<int64_t>(start, 0, rank);
  *hi = std::max(*lo, std::clamp<int64_t>(end, 0, rank));
}

Status shape_infer(const ir::Node& node, std::span<const InferInput> inputs, std::vector<InferOutput>& outputs) {
  const auto rank = static_cast<int64_t>(inputs[0].shape->size());
  TENET_ASSIGN_OR_RETURN(const int64_t start, node.attr_int("start", 0));
  TENET_ASSIGN_OR_RETURN(const int64_t end, node.attr_int("end", rank));
  int64_t lo = 0, hi = 0;
  shape_range(node, rank, start, end, &lo, &hi);
  set_output(outputs, 0, DType::kInt64, {hi - lo});
  return ok_status();
}

Status shape_reference(const ir::Node& node, std::span<const ConstTensorView> inputs, std::span<TensorView> outputs) {
  TENET_RETURN_IF_ERROR(util::check_views(node, inputs, outputs, 1, 1, /*shape_only_input=*/true));
  const Shape& x = inputs[0].shape;
  const auto rank = static_cast<int64_t>(x.size());
  TENET_ASSIGN_OR_RETURN(const int64_t start, node.attr_int("start", 0));
  TENET_ASSIGN_OR_RETURN(const int64_t end, node.attr_int("end", rank));
  int64_t lo = 0, hi = 0;
  shape_range(node, rank, start, end, &lo, &hi);
  const Shape out_shape{hi - lo};
  TENET_RETURN_IF_ERROR(util::expect_output(node, outputs[0], 0, DType::kInt64, out_shape));
  for (int64_t i = lo; i < hi; ++i) outputs[0].as<int64_t>()[i - lo] = x[static_cast<size_t>(i)];
  return ok_status();
}

// ---- Constant, ConstantOfShape ------------------------------------------------------------------

Result<Tensor> constant_value(const ir::Node& node) {
  for (const char* unsupported_attr : {"sparse_value", "value_string", "value_strings"}) {
    if (node.has_attr(unsupported_attr)) return unsupported(node, "attribute '{}' is not supported", unsupported_attr);
  }
  int given = 0;
  for (const char* key : {"value", "value_float", "value_floats", "value_int", "value_ints"}) given += node.has_attr(key);
  if (given != 1) return bad_node(node, "needs exactly one of value, value_float(s), value_int(s); {} given", given);
  if (node.has_attr("value")) {
    TENET_ASSIGN_OR_RETURN(Tensor t, node.attr_tensor("value"));
    if (dtype_size(t.dtype()) == 0) return unsupported_dtype(node, "value", t.dtype());
    TENET_RETURN_IF_ERROR(util::checked_count(node, t.shape(), "value").status());
    return t;
  }
  if (node.has_attr("value_float")) {
    TENET_ASSIGN_OR_RETURN(const float v, node.attr_float("value_float"));
    return Tensor::from_vector<float>({}, {v});
  }
  if (node.has_attr("value_floats")) {
    TENET_ASSIGN_OR_RETURN(const std::vector<float> v, node.attr_floats("value_floats"));
    return Tensor::from_vector<float>({static_cast<int64_t>(v.size())}, v);
  }
  if (node.has_attr("value_int")) {
    TENET_ASSIGN_OR_RETURN(const int64_t v, node.attr_int("value_int"));
    return Tensor::scalar_int64(v);
  }
  TENET_ASSIGN_OR_RETURN(const std::vector<int64_t> v, node.attr_ints("value_ints"));
  return Tensor::vector_int64(v);
}

Status constant_infer(const ir::Node& node, std::span<const InferInput>, std::vector<InferOutput>& outputs) {
  TENET_ASSIGN_OR_RETURN(const Tensor t, constant_value(node));
  set_output(outputs, 0, t.dtype(), t.shape());
  return ok_status();
}

Status constant_reference(const ir::Node& node, std::span<const ConstTensorView> inputs, std::span<TensorView> outputs) {
  TENET_RETURN_IF_ERROR(util::check_views(node, inputs, outputs, 0, 1));
  TENET_ASSIGN_OR_RETURN(const Tensor t, constant_value(node));
  TENET_RETURN_IF_ERROR(util::expect_output(node, outputs[0], 0, t.dtype(), t.shape()));
  if (t.size_bytes() > 0) std::memcpy(outputs[0].data, t.data(), t.size_bytes());
  return ok_status();
}

Result<Tensor> constant_of_shape_value(const ir::Node& node) {
  if (!node.has_attr("value")) return Tensor::from_vector<float>({1}, {0.f});
  TENET_ASSIGN_OR_RETURN(Tensor t, node.attr_tensor("value"));
  if (dtype_size(t.dtype()) == 0) return unsupported_dtype(node, "value", t.dtype());
  if (t.numel() != 1) return bad_node(node, "value must hold one element, got shape {}", shape_to_string(t.shape()));
  return t;
}

Result<Shape> shape_from_values(const ir::Node& node, const std::vector<int64_t>& dims, std::string_view what) {
  for (int64_t d : dims) {
    if (d < 0) return bad_node(node, "{} {} has a negative dimension", what, shape_to_string(dims));
  }
  TENET_RETURN_IF_ERROR(util::checked_count(node, dims, what).status());
  return Shape(dims);
}

Status constant_of_shape_infer(const ir::Node& node, std::span<const InferInput> inputs, std::vector<InferOutput>& outputs) {
  TENET_ASSIGN_OR_RETURN(const Tensor value, constant_of_shape_value(node));
  TENET_ASSIGN_OR_RETURN(const std::vector<int64_t> dims, util::constant_ints(node, inputs[0], "shape"));
  TENET_ASSIGN_OR_RETURN(Shape out, shape_from_values(node, dims, "shape"));
  set_output(outputs, 0, value.dtype(), std::move(out));
  return ok_status();
}

Status constant_of_shape_reference(const ir::Node& node, std::span<const ConstTensorView> inputs, std::span<TensorView> outputs) {
  TENET_RETURN_IF_ERROR(util::check_views(node, inputs, outputs, 1, 1));
  TENET_ASSIGN_OR_RETURN(const Tensor value, constant_of_shape_value(node));
  TENET_ASSIGN_OR_RETURN(const std::vector<int64_t> dims, util::read_ints(node, inputs[0], "shape"));
  TENET_ASSIGN_OR_RETURN(const Shape shape, shape_from_values(node, dims, "shape"));
  TENET_RETURN_IF_ERROR(util::expect_output(node, outputs[0], 0, value.dtype(), shape));
  const size_t esize = dtype_size(value.dtype());
  auto* dst = static_cast<std::byte*>(outputs[0].data);
  for (int64_t i = 0; i < outputs[0].numel(); ++i) std::memcpy(dst + static_cast<size_t>(i) * esize, value.data(), esize);
  return ok_status();
}

// ---- Expand, Tile -------------------------------------------------------------------------------

Result<Shape> expand_shape(const ir::Node& node, const Shape& in, const std::vector<int64_t>& requested) {
  for (int64_t d : requested) {
    if (d < 0) return bad_node(node, "shape {} has a negative dimension", shape_to_string(requested));
  }
  Shape out;
  if (!util::broadcast_shapes(in, requested, &out)) {
    return bad_node(node, "input shape {} cannot be expanded to {}", shape_to_string(in), shape_to_string(requested));
  }
  TENET_RETURN_IF_ERROR(util::checked_count(node, out, "output").status());
  return out;
}

Status expand_infer(const ir::Node& node, std::span<const InferInput> inputs, std::vector<InferOutput>& outputs) {
  TENET_RETURN_IF_ERROR(check_movable(node, inputs[0].dtype));
  TENET_ASSIGN_OR_RETURN(const std::vector<int64_t> requested, util::constant_ints(node, inputs[1], "shape"));
  TENET_ASSIGN_OR_RETURN(Shape out, expand_shape(node, *inputs[0].shape, requested));
  set_output(outputs, 0, inputs[0].dtype, std::move(out));
  return ok_status();
}

Status expand_reference(const ir::Node& node, std::span<const ConstTensorView> inputs, std::span<TensorView> outputs) {
  TENET_RETURN_IF_ERROR(util::check_views(node, inputs, outputs, 2, 1));
  const ConstTensorView& x = inputs[0];
  TENET_ASSIGN_OR_RETURN(const std::vector<int64_t> requested, util::read_ints(node, inputs[1], "shape"));
  TENET_ASSIGN_OR_RETURN(const Shape shape, expand_shape(node, x.shape, requested));
  TENET_RETURN_IF_ERROR(util::expect_output(node, outputs[0], 0, x.dtype, shape));
  return strided_copy(node, x.dtype, x.data, 0, shape, util::broadcast_strides(x.shape, shape), outputs[0].data);
}

Result<Shape> tile_shape(const ir::Node& node, const Shape& in, const std::vector<int64_t>& repeats) {
  if (repeats.size() != in.size()) return bad_node(node, "repeats has {} values for an input of rank {}", repeats.size(), in.size());
  Shape out(in.size());
  for (size_t d = 0; d < in.size(); ++d) {
    if (repeats[d] < 0) return bad_node(node, "repeats {} has a negative value", shape_to_string(repeats));
    if (!checked_mul(in[d], repeats[d], &out[d])) return bad_node(node, "tiled dimension {} overflows", d);
  }
  TENET_RETURN_IF_ERROR(util::checked_count(node, out, "output").status());
  return out;
}

Status tile_infer(const ir::Node& node, std::span<const InferInput> inputs, std::vector<InferOutput>& outputs) {
  TENET_RETURN_IF_ERROR(check_movable(node, inputs[0].dtype));
  TENET_ASSIGN_OR_RETURN(const std::vector<int64_t> repeats, util::constant_ints(node, inputs[1], "repeats"));
  TENET_ASSIGN_OR_RETURN(Shape out, tile_shape(node, *inputs[0].shape, repeats));
  set_output(outputs, 0, inputs[0].dtype, std::move(out));
  return ok_status();
}

Status tile_reference(const ir::Node& node, std::span<const ConstTensorView> inputs, std::span<TensorView> outputs) {
  TENET_RETURN_IF_ERROR(util::check_views(node, inputs, outputs, 2, 1));
  const ConstTensorView& x = inputs[0];
  TENET_ASSIGN_OR_RETURN(const std::vector<int64_t> repeats, util::read_ints(node, inputs[1], "repeats"));
  TENET_ASSIGN_OR_RETURN(const Shape shape, tile_shape(node, x.shape, repeats));
  TENET_RETURN_IF_ERROR(util::expect_output(node, outputs[0], 0, x.dtype, shape));
  const size_t rank = shape.size();
  const std::vector<int64_t> in_strides = row_major_strides(x.shape);
  const bool done = util::visit_element_size(x.dtype, [&]<typename U>() {
    const U* src = x.as<U>();
    U* dst = outputs[0].as<U>();
    std::vector<int64_t> index(rank, 0);
    const int64_t total = numel(shape);
    for (int64_t i = 0; i < total; ++i) {
      int64_t offset = 0;
      for (size_t d = 0; d < rank; ++d) offset += (index[d] % x.shape[d]) * in_strides[d];
      dst[i] = src[offset];
      for (size_t d = rank; d-- > 0;) {
        if (++index[d] < shape[d]) break;
        index[d] = 0;
      }
    }
  });
  if (!done) return unsupported_dtype(node, "input", x.dtype);
  return ok_status();
}

// ---- Range --------------------------------------------------------------------------------------

// Scalar i of a float32 / int32 / int64 tensor, widened.
template <typename T>
T scalar_as(const ConstTensorView& v) {
  switch (v.dtype) {
    case DType::kFloat32: return static_cast<T>(v.as<float>()[0]);
    case DType::kInt32: return static_cast<T>(v.as<int32_t>()[0]);
    default: return static_cast<T>(v.as<int64_t>()[0]);
  }
}

// Number of elements of Range(start, limit, delta): max(ceil((limit - start) / delta), 0).
Result<int64_t> range_count(const ir::Node& node, const ConstTensorView& start, const ConstTensorView& limit,
                            const ConstTensorView& delta) {
  for (const ConstTensorView* v : {&start, &limit, &delta}) {
    if (v->dtype != start.dtype || v->numel() != 1 || v->shape.size() > 1) {
      return bad_node(node, "start, limit and delta must be scalars of one dtype");
    }
  }
  if (start.dtype != DType::kFloat32 && start.dtype != DType::kInt32 && start.dtype != DType::kInt64) {
    return unsupported_dtype(node, "start", start.dtype);
  }
  if (start.dtype == DType::kFloat32) {
    const double s = scalar_as<double>(start), l = scalar_as<double>(limit), d = scalar_as<double>(delta);
    if (d == 0) return bad_node(node, "delta is 0");
    const double n = std::ceil((l - s) / d);
    if (!std::isfinite(n) || n > static_cast<double>(kMaxTensorElements)) {
      return bad_node(node, "Range({}, {}, {}) has too many elements", s, l, d);
    }
    return n <= 0 ? int64_t{0} : static_cast<int64_t>(n);
  }
  const __int128 s = scalar_as<int64_t>(start), l = scalar_as<int64_t>(limit), d = scalar_as<int64_t>(delta);
  if (d == 0) return bad_node(node, "delta is 0");
  const __int128 diff = l - s;
  __int128 n = diff / d;
  if (diff % d != 0 && ((diff > 0) == (d > 0))) ++n;
  if (n > kMaxTensorElements) {
    return bad_node(node, "Range({}, {}, {}) has too many elements", static_cast<int64_t>(s), static_cast<int64_t>(l),
                    static_cast<int64_t>(d));
  }
  return n <= 0 ? int64_t{0} : static_cast<int64_t>(n);
}

Status range_infer(const ir::Node& node, std::span<const InferInput> inputs, std::vector<InferOutput>& outputs) {
  for (size_t i = 0; i < 3; ++i) {
    if (inputs[i].constant == nullptr) return unsupported(node, "start, limit and delta must be constants");
  }
  TENET_ASSIGN_OR_RETURN(const int64_t count, range_count(node, inputs[0].constant->view(), inputs[1].constant->view(),
                                                          inputs[2].constant->view()));
  set_output(outputs, 0, inputs[0].dtype, {count});
  return ok_status();
}

Status range_reference(const ir::Node& node, std::span<const ConstTensorView> inputs, std::span<TensorView> outputs) {
  TENET_RETURN_IF_ERROR(util::check_views(node, inputs, outputs, 3, 1));
  TENET_ASSIGN_OR_RETURN(const int64_t count, range_count(node, inputs[0], inputs[1], inputs[2]));
  const Shape shape{count};
  TENET_RETURN_IF_ERROR(util::expect_output(node, outputs[0], 0, inputs[0].dtype, shape));
  const TensorView& out = outputs[0];
  if (out.dtype == DType::kFloat32) {
    const double s = scalar_as<double>(inputs[0]), d = scalar_as<double>(inputs[2]);
    for (int64_t i = 0; i < count; ++i) out.as<float>()[i] = static_cast<float>(s + static_cast<double>(i) * d);
    return ok_status();
  }
  const __int128 s = scalar_as<int64_t>(inputs[0]), d = scalar_as<int64_t>(inputs[2]);
  for (int64_t i = 0; i < count; ++i) {
    const __int128 v = s + i * d;  // between start and limit, so it fits the dtype
    if (out.dtype == DType::kInt32) {
      out.as<int32_t>()[i] = static_cast<int32_t>(v);
    } else {
      out.as<int64_t>()[i] = static_cast<int64_t>(v);
    }
  }
  return ok_status();
}

constexpr OpSchema kTensorOps[] = {
    {"Concat", 11, 17, concat_infer, concat_reference},
    {"Flatten", 11, 17, flatten_infer, copy_same_bytes},
    {"Reshape", 11, 17, reshape_infer, copy_same_bytes},
    {"Transpose", 11, 17, transpose_infer, transpose_reference},
    {"Gather", 11, 17, gather_infer, gather_reference},
    {"Slice", 11, 17, slice_infer, slice_reference},
    {"Split", 11, 12, split11_infer, split_reference},
    {"Split", 13, 17, split13_infer, split_reference},
    {"Squeeze", 11, 12, squeeze11_infer, copy_same_bytes},
    {"Squeeze", 13, 17, squeeze13_infer, copy_same_bytes},
    {"Unsqueeze", 11, 12, unsqueeze11_infer, copy_same_bytes},
    {"Unsqueeze", 13, 17, unsqueeze13_infer, copy_same_bytes},
    {"Pad", 11, 17, pad_infer, pad_reference},
    {"Shape", 11, 17, shape_infer, shape_reference},
    {"Constant", 11, 17, constant_infer, constant_reference},
    {"ConstantOfShape", 11, 17, constant_of_shape_infer, constant_of_shape_reference},
    {"Expand", 11, 17, expand_infer, expand_reference},
    {"Range", 11, 17, range_infer, range_reference},
    {"Tile", 11, 17, tile_infer, tile_reference},
};

}  // namespace

Result<StridedWindow> slice_window(const ir::Node& node, std::span<const ConstTensorView> inputs) {
  if (inputs.size() < 3) return util::bad_node(node, "takes at least 3 inputs, got {}", inputs.size());
  const Shape& x = inputs[0].shape;
  TENET_ASSIGN_OR_RETURN(const std::vector<int64_t> starts, util::read_ints(node, inputs[1], "starts"));
  TENET_ASSIGN_OR_RETURN(const std::vector<int64_t> ends, util::read_ints(node, inputs[2], "ends"));
  std::vector<int64_t> axes, steps;
  const ConstTensorView* axes_in = util::opt_input(inputs, 3);
  const ConstTensorView* steps_in = util::opt_input(inputs, 4);
  if (axes_in != nullptr) {
    TENET_ASSIGN_OR_RETURN(axes, util::read_ints(node, *axes_in, "axes"));
  }
  if (steps_in != nullptr) {
    TENET_ASSIGN_OR_RETURN(steps, util::read_ints(node, *steps_in, "steps"));
  }
  TENET_ASSIGN_OR_RETURN(SliceParams p, slice_params(node, x, starts, ends, axes_in ? &axes : nullptr, steps_in ? &steps : nullptr));
  const std::vector<int64_t> in_strides = row_major_strides(x);
  StridedWindow w{std::move(p.out), std::vector<int64_t>(x.size(), 0), 0};
  for (size_t d = 0; d < x.size(); ++d) {
    w.offset += p.start[d] * in_strides[d];
    // A dim with one element never advances; its step may be huge.
    if (w.shape[d] > 1) w.strides[d] = p.step[d] * in_strides[d];
  }
  return w;
}

std::span<const OpSchema> tensor_ops() { return kTensorOps; }

}  // namespace tenet::ops
