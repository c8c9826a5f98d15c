// Elementwise operators: unary math, binary arithmetic and comparisons with numpy broadcasting,
// Where, Min/Max, Identity, Dropout (inference) and Cast.
//
// Integer arithmetic wraps (two's complement) instead of invoking undefined behaviour; integer
// division by zero is an error at run time. Float -> integer casts saturate (NaN -> 0).
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
using util::unsupported;
using util::unsupported_dtype;

// ---- unary --------------------------------------------------------------------------------------

// Each unary op: make() validates the attributes, apply() maps one element. kIntegers says whether
// int32/int64 inputs are accepted besides float32.
struct ReluOp {
  static constexpr bool kIntegers = true;
  static Result<ReluOp> make(const ir::Node&) { return ReluOp{}; }
  template <typename T> T apply(T x) const { return x > T(0) ? x : T(0); }
};
struct NegOp {
  static constexpr bool kIntegers = true;
  static Result<NegOp> make(const ir::Node&) { return NegOp{}; }
  template <typename T> T apply(T x) const {
    if constexpr (std::is_integral_v<T>) {
      return static_cast<T>(-static_cast<std::make_unsigned_t<T>>(x));  // wraps for the minimum
    } else {
      return -x;
    }
  }
};
struct AbsOp {
  static constexpr bool kIntegers = true;
  static Result<AbsOp> make(const ir::Node&) { return AbsOp{}; }
  template <typename T> T apply(T x) const { return x < T(0) ? NegOp{}.apply(x) : x; }
};
struct SigmoidOp {
  static constexpr bool kIntegers = false;
  static Result<SigmoidOp> make(const ir::Node&) { return SigmoidOp{}; }
  float apply(float x) const { return 1.f / (1.f + std::exp(-x)); }
};
struct HardSigmoidOp {
  static constexpr bool kIntegers = false;
  float alpha = 0.2f;
  float beta = 0.5f;
  static Result<HardSigmoidOp> make(const ir::Node& node) {
    HardSigmoidOp op;
    TENET_ASSIGN_OR_RETURN(op.alpha, node.attr_float("alpha", 0.2f));
    TENET_ASSIGN_OR_RETURN(op.beta, node.attr_float("beta", 0.5f));
    return op;
  }
  float apply(float x) const { return std::max(0.f, std::min(1.f, alpha * x + beta)); }
};
struct HardSwishOp {
  static constexpr bool kIntegers = false;
  static Result<HardSwishOp> make(const ir::Node&) { return HardSwishOp{}; }
  float apply(float x) const { return x * std::max(0.f, std::min(1.f, x / 6.f + 0.5f)); }
};
struct TanhOp {
  static constexpr bool kIntegers = false;
  static Result<TanhOp> make(const ir::Node&) { return TanhOp{}; }
  float apply(float x) const { return std::tanh(x); }
};
struct ErfOp {
  static constexpr bool kIntegers = false;
  static Result<ErfOp> make(const ir::Node&) { return ErfOp{}; }
  float apply(float x) const { return std::erf(x); }
};
struct SqrtOp {
  static constexpr bool kIntegers = false;
  static Result<SqrtOp> make(const ir::Node&) { return SqrtOp{}; }
  float apply(float x) const { return std::sqrt(x); }
};
struct ExpOp {
  static constexpr bool kIntegers = false;
  static Result<ExpOp> make(const ir::Node&) { return ExpOp{}; }
  float apply(float x) const { return std::exp(x); }
};
struct ReciprocalOp {
  static constexpr bool kIntegers = false;
  static Result<ReciprocalOp> make(const ir::Node&) { return ReciprocalOp{}; }
  float apply(float x) const { return 1.f / x; }
};

template <typename Op>
bool unary_accepts(DType t) {
  return t == DType::kFloat32 || (Op::kIntegers && (t == DType::kInt32 || t == DType::kInt64));
}

template <typename Op>
Status unary_infer(const ir::Node& node, std::span<const InferInput> inputs, std::vector<InferOutput>& outputs) {
  TENET_RETURN_IF_ERROR(Op::make(node).status());
  const InferInput& x = inputs[0];
  if (!unary_accepts<Op>(x.dtype)) return unsupported_dtype(node, "input", x.dtype);
  set_output(outputs, 0, x.dtype, *x.shape);
  return ok_status();
}

template <typename Op>
Status unary_reference(const ir::Node& node, std::span<const ConstTensorView> inputs, std::span<TensorView> outputs) {
  TENET_RETURN_IF_ERROR(util::check_views(node, inputs, outputs, 1, 1));
  TENET_ASSIGN_OR_RETURN(const Op op, Op::make(node));
  const ConstTensorView& x = inputs[0];
  if (!unary_accepts<Op>(x.dtype)) return unsupported_dtype(node, "input", x.dtype);
  TENET_RETURN_IF_ERROR(util::expect_output(node, outputs[0], 0, x.dtype, x.shape));
  const int64_t n = x.numel();
  const bool done = util::visit_dtype<float, int32_t, int64_t>(x.dtype, [&]<typename T>() {
    if constexpr (std::is_same_v<T, float> || Op::kIntegers) {
      const T* src = x.as<T>();
      T* dst = outputs[0].as<T>();
      for (int64_t i = 0; i < n; ++i) dst[i] = static_cast<T>(op.apply(src[i]));
    }
  });
  if (!done) return unsupported_dtype(node, "input", x.dtype);
  return ok_status();
}

// ---- Clip (opset 11+: min and max as optional inputs) -------------------------------------------

Status check_clip_bound(const ir::Node& node, const InferInput* bound, DType dtype, const char* what) {
  if (bound == nullptr) return ok_status();
  if (bound->constant == nullptr) return unsupported(node, "'{}' must be a constant", what);
  if (bound->dtype != dtype) {
    return bad_node(node, "'{}' has dtype {}, the input {}", what, dtype_name(bound->dtype), dtype_name(dtype));
  }
  if (numel(*bound->shape) != 1) return bad_node(node, "'{}' must be a scalar, got shape {}", what, shape_to_string(*bound->shape));
  return ok_status();
}

Status clip_infer(const ir::Node& node, std::span<const InferInput> inputs, std::vector<InferOutput>& outputs) {
  const InferInput& x = inputs[0];
  if (x.dtype != DType::kFloat32 && x.dtype != DType::kInt32 && x.dtype != DType::kInt64) {
    return unsupported_dtype(node, "input", x.dtype);
  }
  TENET_RETURN_IF_ERROR(check_clip_bound(node, opt_input(inputs, 1), x.dtype, "min"));
  TENET_RETURN_IF_ERROR(check_clip_bound(node, opt_input(inputs, 2), x.dtype, "max"));
  set_output(outputs, 0, x.dtype, *x.shape);
  return ok_status();
}

Status clip_reference(const ir::Node& node, std::span<const ConstTensorView> inputs, std::span<TensorView> outputs) {
  TENET_RETURN_IF_ERROR(util::check_views(node, inputs, outputs, 1, 1));
  const ConstTensorView& x = inputs[0];
  TENET_RETURN_IF_ERROR(util::expect_output(node, outputs[0], 0, x.dtype, x.shape));
  const ConstTensorView* lo_view = opt_input(inputs, 1);
  const ConstTensorView* hi_view = opt_input(inputs, 2);
  for (const ConstTensorView* b : {lo_view, hi_view}) {
    if (b != nullptr && (b->dtype != x.dtype || b->numel() != 1)) return util::kernel_contract(node, "bad clip bound");
  }
  const bool done = util::visit_dtype<float, int32_t, int64_t>(x.dtype, [&]<typename T>() {
    const T lo = lo_view ? lo_view->as<T>()[0] : std::numeric_limits<T>::lowest();
    const T hi = hi_view ? hi_view->as<T>()[0] : std::numeric_limits<T>::max();
    const T* src = x.as<T>();
    T* dst = outputs[0].as<T>();
    for (int64_t i = 0; i < x.numel(); ++i) dst[i] = std::min(std::max(src[i], lo), hi);
  });
  if (!done) return unsupported_dtype(node, "input", x.dtype);
  return ok_status();
}

// ---- binary with broadcasting -------------------------------------------------------------------

enum class BinaryKind { kArithmetic, kComparison };

template <typename T>
using Unsigned = std::make_unsigned_t<T>;

struct AddOp {
  static constexpr BinaryKind kKind = BinaryKind::kArithmetic;
  template <typename T> static bool apply(T a, T b, T* out) {
    if constexpr (std::is_integral_v<T>) {
      *out = static_cast<T>(static_cast<Unsigned<T>>(a) + static_cast<Unsigned<T>>(b));
    } else {
      *out = a + b;
    }
    return true;
  }
};
struct SubOp {
  static constexpr BinaryKind kKind = BinaryKind::kArithmetic;
  template <typename T> static bool apply(T a, T b, T* out) {
    if constexpr (std::is_integral_v<T>) {
      *out = static_cast<T>(static_cast<Unsigned<T>>(a) - static_cast<Unsigned<T>>(b));
    } else {
      *out = a - b;
    }
    return true;
  }
};
struct MulOp {
  static constexpr BinaryKind kKind = BinaryKind::kArithmetic;
  template <typename T> static bool apply(T a, T b, T* out) {
    if constexpr (std::is_integral_v<T>) {
      *out = static_cast<T>(static_cast<Unsigned<T>>(a) * static_cast<Unsigned<T>>(b));
    } else {
      *out = a * b;
    }
    return true;
  }
};
struct DivOp {
  static constexpr BinaryKind kKind = BinaryKind::kArithmetic;
  // Integer division truncates (as ONNX Runtime does); false on division by zero.
  template <typename T> static bool apply(T a, T b, T* out) {
    if constexpr (std::is_integral_v<T>) {
      if (b == 0) return false;
      *out = (a == std::numeric_limits<T>::min() && b == -1) ? a : static_cast<T>(a / b);
    } else {
      *out = a / b;
    }
    return true;
  }
};
struct MinOp {
  template <typename T> static bool apply(T a, T b, T* out) {
    if constexpr (std::is_floating_point_v<T>) {
      if (std::isnan(a) || std::isnan(b)) {
        *out = std::numeric_limits<T>::quiet_NaN();
        return true;
      }
    }
    *out = b < a ? b : a;
    return true;
  }
};
struct MaxOp {
  template <typename T> static bool apply(T a, T b, T* out) {
    if constexpr (std::is_floating_point_v<T>) {
      if (std::isnan(a) || std::isnan(b)) {
        *out = std::numeric_limits<T>::quiet_NaN();
        return true;
      }
    }
    *out = a < b ? b : a;
    return true;
  }
};
struct EqualOp {
  static constexpr BinaryKind kKind = BinaryKind::kComparison;
  template <typename T> static bool apply(T a, T b, uint8_t* out) {
    *out = a == b;
    return true;
  }
};
struct LessOp {
  static constexpr BinaryKind kKind = BinaryKind::kComparison;
  template <typename T> static bool apply(T a, T b, uint8_t* out) {
    *out = a < b;
    return true;
  }
};
struct GreaterOp {
  static constexpr BinaryKind kKind = BinaryKind::kComparison;
  template <typename T> static bool apply(T a, T b, uint8_t* out) {
    *out = a > b;
    return true;
  }
};

bool is_numeric(DType t) { return t == DType::kFloat32 || t == DType::kInt32 || t == DType::kInt64; }

Status broadcast_infer(const ir::Node& node, std::span<const InferInput> inputs, Shape* out) {
  Shape shape = *inputs[0].shape;
  for (size_t i = 1; i < inputs.size(); ++i) {
    const InferInput* in = opt_input(inputs, i);
    if (in == nullptr) return bad_node(node, "input {} is absent", i);
    if (!util::broadcast_shapes(shape, *in->shape, &shape)) {
      return bad_node(node, "input shapes {} and {} cannot be broadcast (input {})", shape_to_string(*inputs[0].shape),
                      shape_to_string(*in->shape), i);
    }
  }
  TENET_RETURN_IF_ERROR(util::checked_count(node, shape, "broadcast output").status());
  *out = std::move(shape);
  return ok_status();
}

template <typename Op>
Status binary_infer(const ir::Node& node, std::span<const InferInput> inputs, std::vector<InferOutput>& outputs) {
  const InferInput& a = inputs[0];
  const InferInput& b = inputs[1];
  if (a.dtype != b.dtype) {
    return bad_node(node, "inputs have different dtypes ({} and {})", dtype_name(a.dtype), dtype_name(b.dtype));
  }
  const bool bool_ok = std::is_same_v<Op, EqualOp> && a.dtype == DType::kBool;
  if (!is_numeric(a.dtype) && !bool_ok) return unsupported_dtype(node, "input", a.dtype);
  Shape shape;
  TENET_RETURN_IF_ERROR(broadcast_infer(node, inputs.first(2), &shape));
  set_output(outputs, 0, Op::kKind == BinaryKind::kComparison ? DType::kBool : a.dtype, std::move(shape));
  return ok_status();
}

template <typename Op, typename T>
Status binary_kernel(const ir::Node& node, const ConstTensorView& a, const ConstTensorView& b, const TensorView& out) {
  using Out = std::conditional_t<Op::kKind == BinaryKind::kComparison, uint8_t, T>;
  const T* pa = a.as<T>();
  const T* pb = b.as<T>();
  Out* dst = out.as<Out>();
  bool ok = true;
  util::for_each_broadcast<2>(out.shape, {util::broadcast_strides(a.shape, out.shape), util::broadcast_strides(b.shape, out.shape)},
                              [&](int64_t i, const std::array<int64_t, 2>& off) {
                                if (!Op::apply(pa[off[0]], pb[off[1]], &dst[i])) {
                                  dst[i] = Out{};
                                  ok = false;
                                }
                              });
  if (!ok) return bad_node(node, "integer division by zero");
  return ok_status();
}

template <typename Op>
Status binary_reference(const ir::Node& node, std::span<const ConstTensorView> inputs, std::span<TensorView> outputs) {
  TENET_RETURN_IF_ERROR(util::check_views(node, inputs, outputs, 2, 1));
  const ConstTensorView& a = inputs[0];
  const ConstTensorView& b = inputs[1];
  Shape shape;
  if (a.dtype != b.dtype || !util::broadcast_shapes(a.shape, b.shape, &shape)) {
    return util::kernel_contract(node, "inputs do not broadcast");
  }
  const DType out_dtype = Op::kKind == BinaryKind::kComparison ? DType::kBool : a.dtype;
  TENET_RETURN_IF_ERROR(util::expect_output(node, outputs[0], 0, out_dtype, shape));
  Status status = unsupported_dtype(node, "input", a.dtype);
  util::visit_dtype<float, int32_t, int64_t>(a.dtype, [&]<typename T>() { status = binary_kernel<Op, T>(node, a, b, outputs[0]); });
  if constexpr (std::is_same_v<Op, EqualOp>) {
    if (a.dtype == DType::kBool) status = binary_kernel<Op, uint8_t>(node, a, b, outputs[0]);
  }
  TENET_RETURN_IF_ERROR(status);
  if (outputs[0].dtype == DType::kFloat32) TENET_RETURN_IF_ERROR(util::apply_node_post_ops(node, inputs, outputs[0]));
  return ok_status();
}

// Pow: float32 base, float32 / int32 / int64 exponent; the output has the base's dtype.
Status pow_infer(const ir::Node& node, std::span<const InferInput> inputs, std::vector<InferOutput>& outputs) {
  if (inputs[0].dtype != DType::kFloat32) return unsupported_dtype(node, "base", inputs[0].dtype);
  if (!is_numeric(inputs[1].dtype)) return unsupported_dtype(node, "exponent", inputs[1].dtype);
  Shape shape;
  TENET_RETURN_IF_ERROR(broadcast_infer(node, inputs.first(2), &shape));
  set_output(outputs, 0, DType::kFloat32, std::move(shape));
  return ok_status();
}

Status pow_reference(const ir::Node& node, std::span<const ConstTensorView> inputs, std::span<TensorView> outputs) {
  TENET_RETURN_IF_ERROR(util::check_views(node, inputs, outputs, 2, 1));
  const ConstTensorView& a = inputs[0];
  const ConstTensorView& b = inputs[1];
  Shape shape;
  if (a.dtype != DType::kFloat32 || !util::broadcast_shapes(a.shape, b.shape, &shape)) {
    return util::kernel_contract(node, "inputs do not broadcast");
  }
  TENET_RETURN_IF_ERROR(util::expect_output(node, outputs[0], 0, DType::kFloat32, shape));
  const float* base = a.as<float>();
  float* dst = outputs[0].as<float>();
  const bool done = util::visit_dtype<float, int32_t, int64_t>(b.dtype, [&]<typename E>() {
    const E* exponent = b.as<E>();
    util::for_each_broadcast<2>(shape, {util::broadcast_strides(a.shape, shape), util::broadcast_strides(b.shape, shape)},
                                [&](int64_t i, const std::array<int64_t, 2>& off) {
                                  dst[i] = static_cast<float>(std::pow(static_cast<double>(base[off[0]]),
                                                                       static_cast<double>(exponent[off[1]])));
                                });
  });
  if (!done) return unsupported_dtype(node, "exponent", b.dtype);
  return ok_status();
}

// ---- variadic Min / Max -------------------------------------------------------------------------

Status variadic_infer(const ir::Node& node, std::span<const InferInput> inputs, std::vector<InferOutput>& outputs) {
  for (size_t i = 0; i < inputs.size(); ++i) {
    if (!inputs[i].present()) return bad_node(node, "input {} is absent", i);
    if (inputs[i].dtype != inputs[0].dtype) {
      return bad_node(node, "input {} has dtype {}, input 0 {}", i, dtype_name(inputs[i].dtype), dtype_name(inputs[0].dtype));
    }
  }
  if (!is_numeric(inputs[0].dtype)) return unsupported_dtype(node, "input", inputs[0].dtype);
  Shape shape;
  TENET_RETURN_IF_ERROR(broadcast_infer(node, inputs, &shape));
  set_output(outputs, 0, inputs[0].dtype, std::move(shape));
  return ok_status();
}

template <typename Op>
Status variadic_reference(const ir::Node& node, std::span<const ConstTensorView> inputs, std::span<TensorView> outputs) {
  TENET_RETURN_IF_ERROR(util::check_views(node, inputs, outputs, 1, 1));
  Shape shape = inputs[0].shape;
  for (const ConstTensorView& in : inputs) {
    if (in.dtype != inputs[0].dtype || !util::broadcast_shapes(shape, in.shape, &shape)) {
      return util::kernel_contract(node, "inputs do not broadcast");
    }
  }
  const TensorView& out = outputs[0];
  TENET_RETURN_IF_ERROR(util::expect_output(node, out, 0, inputs[0].dtype, shape));
  const std::vector<int64_t> identity = row_major_strides(shape);
  const bool done = util::visit_dtype<float, int32_t, int64_t>(out.dtype, [&]<typename T>() {
    T* dst = out.as<T>();
    const T* first = inputs[0].as<T>();
    util::for_each_broadcast<1>(shape, {util::broadcast_strides(inputs[0].shape, shape)},
                                [&](int64_t i, const std::array<int64_t, 1>& off) { dst[i] = first[off[0]]; });
    for (size_t k = 1; k < inputs.size(); ++k) {
      const T* src = inputs[k].as<T>();
      util::for_each_broadcast<1>(shape, {util::broadcast_strides(inputs[k].shape, shape)},
                                  [&](int64_t i, const std::array<int64_t, 1>& off) { Op::apply(dst[i], src[off[0]], &dst[i]); });
    }
  });
  if (!done) return unsupported_dtype(node, "input", out.dtype);
  return ok_status();
}

// ---- Not, Where ---------------------------------------------------------------------------------

Status not_infer(const ir::Node& node, std::span<const InferInput> inputs, std::vector<InferOutput>& outputs) {
  if (inputs[0].dtype != DType::kBool) return unsupported_dtype(node, "input", inputs[0].dtype);
  set_output(outputs, 0, DType::kBool, *inputs[0].shape);
  return ok_status();
}

Status not_reference(const ir::Node& node, std::span<const ConstTensorView> inputs, std::span<TensorView> outputs) {
  TENET_RETURN_IF_ERROR(util::check_views(node, inputs, outputs, 1, 1));
  const ConstTensorView& x = inputs[0];
  if (x.dtype != DType::kBool) return unsupported_dtype(node, "input", x.dtype);
  TENET_RETURN_IF_ERROR(util::expect_output(node, outputs[0], 0, DType::kBool, x.shape));
  const uint8_t* src = x.as<uint8_t>();
  uint8_t* dst = outputs[0].as<uint8_t>();
  for (int64_t i = 0; i < x.numel(); ++i) dst[i] = src[i] == 0;
  return ok_status();
}

Status where_infer(const ir::Node& node, std::span<const InferInput> inputs, std::vector<InferOutput>& outputs) {
  if (inputs[0].dtype != DType::kBool) return bad_node(node, "condition must be bool, got {}", dtype_name(inputs[0].dtype));
  if (inputs[1].dtype != inputs[2].dtype) {
    return bad_node(node, "X and Y have different dtypes ({} and {})", dtype_name(inputs[1].dtype), dtype_name(inputs[2].dtype));
  }
  if (dtype_size(inputs[1].dtype) == 0) return unsupported_dtype(node, "X", inputs[1].dtype);
  Shape shape;
  TENET_RETURN_IF_ERROR(broadcast_infer(node, inputs.first(3), &shape));
  set_output(outputs, 0, inputs[1].dtype, std::move(shape));
  return ok_status();
}

Status where_reference(const ir::Node& node, std::span<const ConstTensorView> inputs, std::span<TensorView> outputs) {
  TENET_RETURN_IF_ERROR(util::check_views(node, inputs, outputs, 3, 1));
  const ConstTensorView& c = inputs[0];
  const ConstTensorView& x = inputs[1];
  const ConstTensorView& y = inputs[2];
  Shape shape;
  if (c.dtype != DType::kBool || x.dtype != y.dtype || !util::broadcast_shapes(c.shape, x.shape, &shape) ||
      !util::broadcast_shapes(shape, y.shape, &shape)) {
    return util::kernel_contract(node, "inputs do not broadcast");
  }
  TENET_RETURN_IF_ERROR(util::expect_output(node, outputs[0], 0, x.dtype, shape));
  const uint8_t* cond = c.as<uint8_t>();
  const bool done = util::visit_element_size(x.dtype, [&]<typename U>() {
    const U* px = x.as<U>();
    const U* py = y.as<U>();
    U* dst = outputs[0].as<U>();
    util::for_each_broadcast<3>(shape,
                                {util::broadcast_strides(c.shape, shape), util::broadcast_strides(x.shape, shape),
                                 util::broadcast_strides(y.shape, shape)},
                                [&](int64_t i, const std::array<int64_t, 3>& off) {
                                  dst[i] = cond[off[0]] != 0 ? px[off[1]] : py[off[2]];
                                });
  });
  if (!done) return unsupported_dtype(node, "X", x.dtype);
  return ok_status();
}

// ---- Identity, Dropout --------------------------------------------------------------------------

Status copy_input0(const ir::Node& node, std::span<const ConstTensorView> inputs, const TensorView& out) {
  TENET_RETURN_IF_ERROR(util::expect_output(node, out, 0, inputs[0].dtype, inputs[0].shape));
  if (out.size_bytes() > 0) std::memcpy(out.data, inputs[0].data, out.size_bytes());
  return ok_status();
}

Status identity_infer(const ir::Node& node, std::span<const InferInput> inputs, std::vector<InferOutput>& outputs) {
  if (dtype_size(inputs[0].dtype) == 0) return unsupported_dtype(node, "input", inputs[0].dtype);
  set_output(outputs, 0, inputs[0].dtype, *inputs[0].shape);
  return ok_status();
}

Status identity_reference(const ir::Node& node, std::span<const ConstTensorView> inputs, std::span<TensorView> outputs) {
  TENET_RETURN_IF_ERROR(util::check_views(node, inputs, outputs, 1, 1));
  return copy_input0(node, inputs, outputs[0]);
}

// Inference-mode Dropout: the identity, with an all-true mask when one is requested.
Status dropout_infer(const ir::Node& node, std::span<const InferInput> inputs, std::vector<InferOutput>& outputs) {
  TENET_RETURN_IF_ERROR(node.attr_float("ratio", 0.5f).status());
  if (const InferInput* training = opt_input(inputs, 2)) {
    if (training->constant == nullptr) return unsupported(node, "training_mode must be a constant");
    if (training->dtype != DType::kBool || training->constant->numel() != 1) {
      return bad_node(node, "training_mode must be a bool scalar");
    }
    if (training->constant->as<uint8_t>()[0] != 0) return unsupported(node, "training mode is not supported (inference only)");
  }
  if (dtype_size(inputs[0].dtype) == 0) return unsupported_dtype(node, "input", inputs[0].dtype);
  set_output(outputs, 0, inputs[0].dtype, *inputs[0].shape);
  if (outputs.size() > 1) set_output(outputs, 1, DType::kBool, *inputs[0].shape);
  return ok_status();
}

Status dropout_reference(const ir::Node& node, std::span<const ConstTensorView> inputs, std::span<TensorView> outputs) {
  TENET_RETURN_IF_ERROR(util::check_views(node, inputs, outputs, 1, 1));
  TENET_RETURN_IF_ERROR(copy_input0(node, inputs, outputs[0]));
  if (outputs.size() > 1) {
    TENET_RETURN_IF_ERROR(util::expect_output(node, outputs[1], 1, DType::kBool, inputs[0].shape));
    if (outputs[1].numel() > 0) std::memset(outputs[1].data, 1, static_cast<size_t>(outputs[1].numel()));
  }
  return ok_status();
}

// ---- Cast ---------------------------------------------------------------------------------------

bool castable(DType t) { return t != DType::kUndefined && t != DType::kFloat16; }

template <typename To, typename From>
To convert(From v) {
  if constexpr (std::is_floating_point_v<From> && std::is_integral_v<To>) {
    if (std::isnan(v)) return To{0};
    if (v <= static_cast<From>(std::numeric_limits<To>::lowest())) return std::numeric_limits<To>::lowest();
    if (v >= static_cast<From>(std::numeric_limits<To>::max())) return std::numeric_limits<To>::max();
  }
  return static_cast<To>(v);
}

Result<DType> cast_target(const ir::Node& node) {
  TENET_ASSIGN_OR_RETURN(const int64_t to, node.attr_int("to"));
  const DType dtype = to < INT32_MIN || to > INT32_MAX ? DType::kUndefined : dtype_from_onnx(static_cast<int32_t>(to));
  if (!castable(dtype)) return unsupported(node, "cast to ONNX element type {} is not supported", to);
  return dtype;
}

Status cast_infer(const ir::Node& node, std::span<const InferInput> inputs, std::vector<InferOutput>& outputs) {
  TENET_ASSIGN_OR_RETURN(const DType to, cast_target(node));
  if (!castable(inputs[0].dtype)) return unsupported_dtype(node, "input", inputs[0].dtype);
  set_output(outputs, 0, to, *inputs[0].shape);
  return ok_status();
}

Status cast_reference(const ir::Node& node, std::span<const ConstTensorView> inputs, std::span<TensorView> outputs) {
  TENET_RETURN_IF_ERROR(util::check_views(node, inputs, outputs, 1, 1));
  TENET_ASSIGN_OR_RETURN(const DType to, cast_target(node));
  const ConstTensorView& x = inputs[0];
  const TensorView& out = outputs[0];
  TENET_RETURN_IF_ERROR(util::expect_output(node, out, 0, to, x.shape));
  const int64_t n = x.numel();
  // bool is stored as one byte; read it as uint8_t != 0 and write 0 / 1.
  const auto visit_numeric = [](DType t, auto&& f) {
    return util::visit_dtype<float, double, int8_t, uint8_t, int16_t, int32_t, int64_t>(t, f);
  };
  bool done = false;
  if (x.dtype == DType::kBool) {
    const uint8_t* src = x.as<uint8_t>();
    if (to == DType::kBool) {
      for (int64_t i = 0; i < n; ++i) out.as<uint8_t>()[i] = src[i] != 0;
      done = true;
    } else {
      done = visit_numeric(to, [&]<typename To>() {
        for (int64_t i = 0; i < n; ++i) out.as<To>()[i] = static_cast<To>(src[i] != 0 ? 1 : 0);
      });
    }
  } else {
    done = visit_numeric(x.dtype, [&]<typename From>() {
      const From* src = x.as<From>();
      if (to == DType::kBool) {
        for (int64_t i = 0; i < n; ++i) out.as<uint8_t>()[i] = src[i] != From{0};
        return;
      }
      visit_numeric(to, [&]<typename To>() {
        for (int64_t i = 0; i < n; ++i) out.as<To>()[i] = convert<To>(src[i]);
      });
    });
  }
  if (!done) return unsupported(node, "cast from {} to {} is not supported", dtype_name(x.dtype), dtype_name(to));
  return ok_status();
}

constexpr OpSchema kElementwiseOps[] = {
    {"Relu", 11, 17, unary_infer<ReluOp>, unary_reference<ReluOp>, true},
    {"Sigmoid", 11, 17, unary_infer<SigmoidOp>, unary_reference<SigmoidOp>, true},
    {"HardSigmoid", 11, 17, unary_infer<HardSigmoidOp>, unary_reference<HardSigmoidOp>, true},
    {"HardSwish", 14, 17, unary_infer<HardSwishOp>, unary_reference<HardSwishOp>, true},
    {"Tanh", 11, 17, unary_infer<TanhOp>, unary_reference<TanhOp>, true},
    {"Erf", 11, 17, unary_infer<ErfOp>, unary_reference<ErfOp>, true},
    {"Sqrt", 11, 17, unary_infer<SqrtOp>, unary_reference<SqrtOp>, true},
    {"Exp", 11, 17, unary_infer<ExpOp>, unary_reference<ExpOp>, true},
    {"Neg", 11, 17, unary_infer<NegOp>, unary_reference<NegOp>, true},
    {"Reciprocal", 11, 17, unary_infer<ReciprocalOp>, unary_reference<ReciprocalOp>, true},
    {"Abs", 11, 17, unary_infer<AbsOp>, unary_reference<AbsOp>, true},
    {"Clip", 11, 17, clip_infer, clip_reference, true},
    {"Add", 11, 17, binary_infer<AddOp>, binary_reference<AddOp>},
    {"Sub", 11, 17, binary_infer<SubOp>, binary_reference<SubOp>},
    {"Mul", 11, 17, binary_infer<MulOp>, binary_reference<MulOp>},
    {"Div", 11, 17, binary_infer<DivOp>, binary_reference<DivOp>},
    {"Pow", 11, 17, pow_infer, pow_reference},
    {"Min", 11, 17, variadic_infer, variadic_reference<MinOp>},
    {"Max", 11, 17, variadic_infer, variadic_reference<MaxOp>},
    {"Equal", 11, 17, binary_infer<EqualOp>, binary_reference<EqualOp>},
    {"Less", 11, 17, binary_infer<LessOp>, binary_reference<LessOp>},
    {"Greater", 11, 17, binary_infer<GreaterOp>, binary_reference<GreaterOp>},
    {"Not", 11, 17, not_infer, not_reference, true},
    {"Where", 11, 17, where_infer, where_reference},
    {"Identity", 11, 17, identity_infer, identity_reference, true},
    {"Dropout", 11, 17, dropout_infer, dropout_reference},
    {"Cast", 11, 17, cast_infer, cast_reference},
};

}  // namespace

std::span<const OpSchema> elementwise_ops() { return kElementwiseOps; }

}  // namespace tenet::ops
