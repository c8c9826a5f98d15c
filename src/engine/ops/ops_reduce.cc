// Reductions: ReduceMean, ReduceSum, ReduceMax, ReduceMin, ReduceProd with keepdims and (for
// ReduceSum-13, whose axes are an input) noop_with_empty_axes. Float reductions accumulate in
// double; integer sums and products wrap.
#include <cmath>
#include <cstring>
#include <limits>
#include <type_traits>

#include "engine/ops/op.h"
#include "engine/ops/op_util.h"

namespace tenet::ops {
namespace {

using util::bad_node;
using util::opt_input;
using util::set_output;

enum class ReduceKind { kSum, kMean, kMax, kMin, kProd };

struct ReduceParams {
  std::vector<bool> reduced;  // per input dim
  Shape out;
  bool identity = false;  // empty axes with noop_with_empty_axes=1
};

// `axes` == nullptr: none given.
Result<ReduceParams> reduce_params(const ir::Node& node, const Shape& in, const std::vector<int64_t>* axes, bool axes_as_input) {
  TENET_ASSIGN_OR_RETURN(const int64_t keepdims, node.attr_int("keepdims", 1));
  if (keepdims != 0 && keepdims != 1) return bad_node(node, "keepdims must be 0 or 1, got {}", keepdims);
  int64_t noop = 0;
  if (axes_as_input) {
    TENET_ASSIGN_OR_RETURN(noop, node.attr_int("noop_with_empty_axes", 0));
    if (noop != 0 && noop != 1) return bad_node(node, "noop_with_empty_axes must be 0 or 1, got {}", noop);
  }
  ReduceParams p;
  p.reduced.assign(in.size(), false);
  if (axes == nullptr || axes->empty()) {
    if (noop == 1) {
      p.identity = true;
      p.out = in;
      return p;
    }
    p.reduced.assign(in.size(), true);
  } else {
    for (int64_t axis : *axes) {
      TENET_ASSIGN_OR_RETURN(const int64_t a, util::normalize_axis(node, axis, static_cast<int64_t>(in.size())));
      if (p.reduced[static_cast<size_t>(a)]) return bad_node(node, "axis {} is given twice", axis);
      p.reduced[static_cast<size_t>(a)] = true;
    }
  }
  for (size_t d = 0; d < in.size(); ++d) {
    if (!p.reduced[d]) {
      p.out.push_back(in[d]);
    } else if (keepdims == 1) {
      p.out.push_back(1);
    }
  }
  return p;
}

bool reducible(DType t) { return t == DType::kFloat32 || t == DType::kInt32 || t == DType::kInt64; }

Status finish_infer(const ir::Node& node, const InferInput& x, const std::vector<int64_t>* axes, bool axes_as_input,
                    std::vector<InferOutput>& outputs) {
  if (!reducible(x.dtype)) return util::unsupported_dtype(node, "input", x.dtype);
  TENET_ASSIGN_OR_RETURN(ReduceParams p, reduce_params(node, *x.shape, axes, axes_as_input));
  set_output(outputs, 0, x.dtype, std::move(p.out));
  return ok_status();
}

// Opsets <= 17 (ReduceSum <= 12): axes is an attribute.
Status reduce_attr_infer(const ir::Node& node, std::span<const InferInput> inputs, std::vector<InferOutput>& outputs) {
  if (!node.has_attr("axes")) return finish_infer(node, inputs[0], nullptr, false, outputs);
  TENET_ASSIGN_OR_RETURN(const std::vector<int64_t> axes, node.attr_ints("axes"));
  return finish_infer(node, inputs[0], &axes, false, outputs);
}

// ReduceSum-13: axes is an optional input, which must be a constant.
Status reduce_input_infer(const ir::Node& node, std::span<const InferInput> inputs, std::vector<InferOutput>& outputs) {
  const InferInput* axes_in = opt_input(inputs, 1);
  if (axes_in == nullptr) return finish_infer(node, inputs[0], nullptr, true, outputs);
  TENET_ASSIGN_OR_RETURN(const std::vector<int64_t> axes, util::constant_ints(node, *axes_in, "axes"));
  return finish_infer(node, inputs[0], &axes, true, outputs);
}

template <ReduceKind K, typename T>
void reduce_kernel(const ConstTensorView& x, const ReduceParams& p, const TensorView& out) {
  using Acc = std::conditional_t<std::is_floating_point_v<T>, double, int64_t>;
  const int64_t out_count = out.numel();
  Acc init{};
  if constexpr (K == ReduceKind::kProd) init = Acc{1};
  if constexpr (K == ReduceKind::kMax) {
    init = std::is_floating_point_v<T> ? -std::numeric_limits<Acc>::infinity() : Acc{std::numeric_limits<T>::lowest()};
  }
  if constexpr (K == ReduceKind::kMin) {
    init = std::is_floating_point_v<T> ? std::numeric_limits<Acc>::infinity() : Acc{std::numeric_limits<T>::max()};
  }
  std::vector<Acc> acc(static_cast<size_t>(out_count), init);

  // Walk the input; each element lands on the output offset of its kept dims.
  Shape kept = x.shape;
  for (size_t d = 0; d < kept.size(); ++d) kept[d] = p.reduced[d] ? 1 : kept[d];
  std::vector<int64_t> strides = row_major_strides(kept);
  for (size_t d = 0; d < kept.size(); ++d) strides[d] = p.reduced[d] ? 0 : strides[d];
  const T* src = x.as<T>();
  int64_t reduce_count = 1;
  for (size_t d = 0; d < x.shape.size(); ++d) reduce_count *= p.reduced[d] ? x.shape[d] : 1;

  util::for_each_broadcast<1>(x.shape, {strides}, [&](int64_t i, const std::array<int64_t, 1>& off) {
    Acc& a = acc[static_cast<size_t>(off[0])];
    const Acc v = static_cast<Acc>(src[i]);
    if constexpr (K == ReduceKind::kSum || K == ReduceKind::kMean) {
      if constexpr (std::is_floating_point_v<Acc>) {
        a += v;
      } else {
        a = static_cast<Acc>(static_cast<uint64_t>(a) + static_cast<uint64_t>(v));
      }
    } else if constexpr (K == ReduceKind::kProd) {
      if constexpr (std::is_floating_point_v<Acc>) {
        a *= v;
      } else {
        a = static_cast<Acc>(static_cast<uint64_t>(a) * static_cast<uint64_t>(v));
      }
    } else if constexpr (K == ReduceKind::kMax) {
      if (v > a || (std::is_floating_point_v<Acc> && std::isnan(static_cast<double>(v)))) a = v;
    } else {
      if (v < a || (std::is_floating_point_v<Acc> && std::isnan(static_cast<double>(v)))) a = v;
    }
  });

  T* dst = out.as<T>();
  for (int64_t i = 0; i < out_count; ++i) {
    Acc a = acc[static_cast<size_t>(i)];
    if constexpr (K == ReduceKind::kMean) {
      if constexpr (std::is_floating_point_v<Acc>) {
        a = a / static_cast<double>(reduce_count);  // NaN for an empty reduction
      } else {
        a = reduce_count == 0 ? 0 : a / reduce_count;
      }
    }
    dst[i] = static_cast<T>(a);  // integer results wrap to the dtype
  }
}

template <ReduceKind K, bool kAxesInput>
Status reduce_reference(const ir::Node& node, std::span<const ConstTensorView> inputs, std::span<TensorView> outputs) {
  TENET_RETURN_IF_ERROR(util::check_views(node, inputs, outputs, 1, 1));
  const ConstTensorView& x = inputs[0];
  std::vector<int64_t> axes;
  bool has_axes = false;
  if constexpr (kAxesInput) {
    if (const ConstTensorView* axes_in = opt_input(inputs, 1)) {
      TENET_ASSIGN_OR_RETURN(axes, util::read_ints(node, *axes_in, "axes"));
      has_axes = true;
    }
  } else if (node.has_attr("axes")) {
    TENET_ASSIGN_OR_RETURN(axes, node.attr_ints("axes"));
    has_axes = true;
  }
  TENET_ASSIGN_OR_RETURN(const ReduceParams p, reduce_params(node, x.shape, has_axes ? &axes : nullptr, kAxesInput));
  TENET_RETURN_IF_ERROR(util::expect_output(node, outputs[0], 0, x.dtype, p.out));
  if (p.identity) {
    if (outputs[0].size_bytes() > 0) std::memcpy(outputs[0].data, x.data, outputs[0].size_bytes());
    return ok_status();
  }
  const bool done = util::visit_dtype<float, int32_t, int64_t>(x.dtype, [&]<typename T>() { reduce_kernel<K, T>(x, p, outputs[0]); });
  if (!done) return util::unsupported_dtype(node, "input", x.dtype);
  return ok_status();
}

constexpr OpSchema kReduceOps[] = {
    {"ReduceMean", 11, 17, reduce_attr_infer, reduce_reference<ReduceKind::kMean, false>},
    {"ReduceSum", 11, 12, reduce_attr_infer, reduce_reference<ReduceKind::kSum, false>},
    {"ReduceSum", 13, 17, reduce_input_infer, reduce_reference<ReduceKind::kSum, true>},
    {"ReduceMax", 11, 17, reduce_attr_infer, reduce_reference<ReduceKind::kMax, false>},
    {"ReduceMin", 11, 17, reduce_attr_infer, reduce_reference<ReduceKind::kMin, false>},
    {"ReduceProd", 11, 17, reduce_attr_infer, reduce_reference<ReduceKind::kProd, false>},
};

}  // namespace

std::span<const OpSchema> reduce_ops() { return kReduceOps; }

}  // namespace tenet::ops
