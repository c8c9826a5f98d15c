// Neural-network operators: Conv, BatchNormalization (inference), MaxPool, AveragePool,
// GlobalAveragePool, Gemm, MatMul, Softmax, LayerNormalization and Gelu, and the tenet-internal
// FusedMatMul the fusion passes create.
//
// Convolution and pooling are 2-D over NCHW; 1-D inputs (NCW) run as 2-D with H = 1. The window
// arithmetic (pads, auto_pad, dilations, ceil_mode) is shared and overflow-checked: attributes
// come from the model. Accumulation is in double, so the reference is at least as exact as any
// float32 kernel it judges.
#include <algorithm>
#include <cmath>
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


Status require_float(const ir::Node& node, DType dtype, std::string_view what) {
  if (dtype != DType::kFloat32) return unsupported_dtype(node, what, dtype);
  return ok_status();
}

// The bias of Conv / Gemm-like ops: input `index` when present among the regular inputs.
const ConstTensorView* regular_input(const ir::Node& node, std::span<const ConstTensorView> inputs, size_t index) {
  return index < util::regular_input_count(node, inputs.size()) ? opt_input(inputs, index) : nullptr;
}

// ---- window geometry (Conv, MaxPool, AveragePool) -----------------------------------------------

enum class WindowOp { kConv, kMaxPool, kAveragePool };

// Always two spatial dims (H, W); a 1-D op has H = 1 with a unit kernel and stride.
struct WindowGeometry {
  size_t spatial_rank = 2;
  int64_t in[2] = {1, 1};
  int64_t kernel[2] = {1, 1};
  int64_t stride[2] = {1, 1};
  int64_t dilation[2] = {1, 1};
  int64_t pad_begin[2] = {0, 0};
  int64_t pad_end[2] = {0, 0};
  int64_t out[2] = {1, 1};
};

Result<std::vector<int64_t>> spatial_attr(const ir::Node& node, const char* key, size_t count, int64_t fallback, int64_t min) {
  TENET_ASSIGN_OR_RETURN(const std::vector<int64_t> v, node.attr_ints(key, std::vector<int64_t>(count, fallback)));
  if (v.size() != count) return bad_node(node, "{} has {} values, expected {}", key, v.size(), count);
  for (int64_t x : v) {
    if (x < min) return bad_node(node, "{} {} has a value below {}", key, shape_to_string(v), min);
  }
  return v;
}

// x_shape is [N, C, spatial...]; kernel holds the spatial kernel dims.
Result<WindowGeometry> window_geometry(const ir::Node& node, std::span<const int64_t> x_shape, std::span<const int64_t> kernel,
                                       WindowOp op) {
  const size_t s = x_shape.size() - 2;
  if (s != 1 && s != 2) return unsupported(node, "only 1-D and 2-D windows are supported, got {} spatial dims", s);
  if (kernel.size() != s) return bad_node(node, "kernel has {} dims for {} spatial dims", kernel.size(), s);
  for (int64_t k : kernel) {
    if (k < 1) return bad_node(node, "kernel dims {} must be >= 1", shape_to_string(kernel));
  }
  TENET_ASSIGN_OR_RETURN(const std::vector<int64_t> strides, spatial_attr(node, "strides", s, 1, 1));
  TENET_ASSIGN_OR_RETURN(const std::vector<int64_t> dilations, spatial_attr(node, "dilations", s, 1, 1));
  if (op == WindowOp::kAveragePool && std::any_of(dilations.begin(), dilations.end(), [](int64_t d) { return d != 1; })) {
    return unsupported(node, "AveragePool dilations are not supported");
  }
  TENET_ASSIGN_OR_RETURN(const std::vector<int64_t> pads, spatial_attr(node, "pads", 2 * s, 0, 0));
  TENET_ASSIGN_OR_RETURN(const std::string auto_pad, node.attr_string("auto_pad", "NOTSET"));
  if (auto_pad != "NOTSET" && auto_pad != "VALID" && auto_pad != "SAME_UPPER" && auto_pad != "SAME_LOWER") {
    return bad_node(node, "auto_pad '{}' is not one of NOTSET, VALID, SAME_UPPER, SAME_LOWER", auto_pad);
  }
  if (auto_pad != "NOTSET" && std::any_of(pads.begin(), pads.end(), [](int64_t p) { return p != 0; })) {
    return bad_node(node, "explicit pads cannot be combined with auto_pad {}", auto_pad);
  }
  int64_t ceil_mode = 0;
  if (op != WindowOp::kConv) {
    TENET_ASSIGN_OR_RETURN(ceil_mode, node.attr_int("ceil_mode", 0));
    if (ceil_mode != 0 && ceil_mode != 1) return bad_node(node, "ceil_mode must be 0 or 1, got {}", ceil_mode);
  }

  WindowGeometry g;
  g.spatial_rank = s;
  const size_t first = 2 - s;  // 1-D ops fill the W slot
  for (size_t i = 0; i < s; ++i) {
    const size_t d = first + i;
    const int64_t in = x_shape[2 + i];
    const int64_t k = kernel[i];
    const int64_t st = strides[i];
    const int64_t dil = dilations[i];
    int64_t ek = 0;  // effective (dilated) kernel extent
    if (!checked_mul(dil, k - 1, &ek) || !checked_add(ek, 1, &ek)) return bad_node(node, "dilated kernel extent overflows");
    int64_t pb = pads[i];
    int64_t pe = pads[i + s];
    int64_t out = 0;
    if (auto_pad == "SAME_UPPER" || auto_pad == "SAME_LOWER") {
      out = in == 0 ? 0 : (in - 1) / st + 1;
      int64_t total = 0;
      if (out > 0 && (!checked_mul(out - 1, st, &total) || !checked_add(total, ek - in, &total))) {
        return bad_node(node, "padding for auto_pad {} overflows", auto_pad);
      }
      total = std::max<int64_t>(total, 0);
      pb = auto_pad == "SAME_UPPER" ? total / 2 : total - total / 2;
      pe = total - pb;
    } else {
      if (op != WindowOp::kConv && (pb >= ek || pe >= ek)) {
        return bad_node(node, "pads ({}, {}) on spatial axis {} must be smaller than the kernel extent {}", pb, pe, i, ek);
      }
      int64_t padded = 0;
      if (!checked_add(in, pb, &padded) || !checked_add(padded, pe, &padded)) return bad_node(node, "padded size overflows");
      if (padded < ek) {
        return bad_node(node, "kernel extent {} is larger than the padded input {} on spatial axis {}", ek, padded, i);
      }
      const int64_t span = padded - ek;
      out = span / st + 1;
      if (ceil_mode == 1 && span % st != 0) {
        ++out;
        // The last window must start inside the input or the left padding (as PyTorch and
        // ONNX Runtime do).
        int64_t last_start = 0;
        if (!checked_mul(out - 1, st, &last_start) || last_start >= in + pb) --out;
      }
    }
    g.in[d] = in;
    g.kernel[d] = k;
    g.stride[d] = st;
    g.dilation[d] = dil;
    g.pad_begin[d] = pb;
    g.pad_end[d] = pe;
    g.out[d] = out;
  }
  return g;
}

Shape window_output_shape(int64_t n, int64_t c, const WindowGeometry& g) {
  Shape out{n, c};
  if (g.spatial_rank == 2) out.push_back(g.out[0]);
  out.push_back(g.out[1]);
  return out;
}

// ---- Conv ---------------------------------------------------------------------------------------

struct ConvParams {
  int64_t n = 0, c = 0, m = 0, group = 1;
  WindowGeometry g;
  Shape out;
};

Result<ConvParams> conv_params(const ir::Node& node, const Shape& x, const Shape& w, const Shape* bias) {
  if (x.size() < 3) return bad_node(node, "input must be [N, C, spatial...], got {}", shape_to_string(x));
  if (w.size() != x.size()) return bad_node(node, "weight has rank {}, input rank {}", w.size(), x.size());
  ConvParams p;
  p.n = x[0];
  p.c = x[1];
  p.m = w[0];
  TENET_ASSIGN_OR_RETURN(p.group, node.attr_int("group", 1));
  if (p.group < 1) return bad_node(node, "group {} must be >= 1", p.group);
  if (p.c % p.group != 0 || p.m % p.group != 0) {
    return bad_node(node, "group {} does not divide the input channels {} and output channels {}", p.group, p.c, p.m);
  }
  if (w[1] != p.c / p.group) {
    return bad_node(node, "weight {} needs {} input channels per group (C {} / group {})", shape_to_string(w), p.c / p.group,
                    p.c, p.group);
  }
  const std::span<const int64_t> kernel = std::span(w).subspan(2);
  if (node.has_attr("kernel_shape")) {
    TENET_ASSIGN_OR_RETURN(const std::vector<int64_t> ks, node.attr_ints("kernel_shape"));
    if (!std::equal(ks.begin(), ks.end(), kernel.begin(), kernel.end())) {
      return bad_node(node, "kernel_shape {} disagrees with the weight {}", shape_to_string(ks), shape_to_string(w));
    }
  }
  if (bias != nullptr && (bias->size() != 1 || (*bias)[0] != p.m)) {
    return bad_node(node, "bias has shape {}, expected [{}]", shape_to_string(*bias), p.m);
  }
  TENET_ASSIGN_OR_RETURN(p.g, window_geometry(node, x, kernel, WindowOp::kConv));
  p.out = window_output_shape(p.n, p.m, p.g);
  TENET_RETURN_IF_ERROR(util::checked_count(node, p.out, "output").status());
  return p;
}

Status conv_infer(const ir::Node& node, std::span<const InferInput> inputs, std::vector<InferOutput>& outputs) {
  TENET_RETURN_IF_ERROR(require_float(node, inputs[0].dtype, "input"));
  TENET_RETURN_IF_ERROR(require_float(node, inputs[1].dtype, "weight"));
  const InferInput* bias = opt_input(inputs, 2);
  if (bias != nullptr) TENET_RETURN_IF_ERROR(require_float(node, bias->dtype, "bias"));
  TENET_ASSIGN_OR_RETURN(ConvParams p, conv_params(node, *inputs[0].shape, *inputs[1].shape, bias ? bias->shape : nullptr));
  set_output(outputs, 0, DType::kFloat32, std::move(p.out));
  return ok_status();
}

Status conv_reference(const ir::Node& node, std::span<const ConstTensorView> inputs, std::span<TensorView> outputs) {
  TENET_RETURN_IF_ERROR(util::check_views(node, inputs, outputs, 2, 1));
  const ConstTensorView& xv = inputs[0];
  const ConstTensorView& wv = inputs[1];
  const ConstTensorView* bv = regular_input(node, inputs, 2);
  for (const ConstTensorView* v : {&xv, &wv, bv}) {
    if (v != nullptr && v->dtype != DType::kFloat32) return unsupported_dtype(node, "input", v->dtype);
  }
  TENET_ASSIGN_OR_RETURN(const ConvParams p, conv_params(node, xv.shape, wv.shape, bv ? &bv->shape : nullptr));
  TENET_RETURN_IF_ERROR(util::expect_output(node, outputs[0], 0, DType::kFloat32, p.out));
  const WindowGeometry& g = p.g;
  const int64_t ih = g.in[0], iw = g.in[1], kh = g.kernel[0], kw = g.kernel[1], oh = g.out[0], ow = g.out[1];
  const int64_t cg = p.c / p.group;
  const int64_t mg = p.m / p.group;
  const float* x = xv.as<float>();
  const float* w = wv.as<float>();
  const float* bias = bv != nullptr ? bv->as<float>() : nullptr;
  float* y = outputs[0].as<float>();
  std::vector<double> acc(static_cast<size_t>(oh * ow));
  for (int64_t n = 0; n < p.n; ++n) {
    for (int64_t m = 0; m < p.m; ++m) {
      const int64_t c0 = (m / mg) * cg;
      std::fill(acc.begin(), acc.end(), bias != nullptr ? static_cast<double>(bias[m]) : 0.0);
      for (int64_t c = 0; c < cg; ++c) {
        const float* plane = x + ((n * p.c) + c0 + c) * ih * iw;
        for (int64_t ky = 0; ky < kh; ++ky) {
          for (int64_t kx = 0; kx < kw; ++kx) {
            const double wt = w[((m * cg + c) * kh + ky) * kw + kx];
            for (int64_t oy = 0; oy < oh; ++oy) {
              const int64_t iy = oy * g.stride[0] - g.pad_begin[0] + ky * g.dilation[0];
              if (iy < 0 || iy >= ih) continue;
              double* row = acc.data() + oy * ow;
              const float* src = plane + iy * iw;
              for (int64_t ox = 0; ox < ow; ++ox) {
                const int64_t ix = ox * g.stride[1] - g.pad_begin[1] + kx * g.dilation[1];
                if (ix >= 0 && ix < iw) row[ox] += wt * src[ix];
              }
            }
          }
        }
      }
      float* dst = y + (n * p.m + m) * oh * ow;
      for (int64_t i = 0; i < oh * ow; ++i) dst[i] = static_cast<float>(acc[static_cast<size_t>(i)]);
    }
  }
  return util::apply_node_post_ops(node, inputs, outputs[0]);
}

// ---- BatchNormalization (inference) -------------------------------------------------------------

Status batch_norm_check(const ir::Node& node, std::span<const DType> dtypes, std::span<const Shape* const> shapes) {
  TENET_RETURN_IF_ERROR(node.attr_float("epsilon", 1e-5f).status());
  TENET_ASSIGN_OR_RETURN(const int64_t training, node.attr_int("training_mode", 0));
  if (training != 0) return unsupported(node, "training_mode is not supported (inference only)");
  const Shape& x = *shapes[0];
  if (x.size() < 2) return bad_node(node, "input must have rank >= 2, got {}", shape_to_string(x));
  static constexpr const char* kNames[] = {"X", "scale", "B", "input_mean", "input_var"};
  for (size_t i = 0; i < 5; ++i) {
    TENET_RETURN_IF_ERROR(require_float(node, dtypes[i], kNames[i]));
    if (i > 0 && (shapes[i]->size() != 1 || (*shapes[i])[0] != x[1])) {
      return bad_node(node, "{} has shape {}, expected [{}]", kNames[i], shape_to_string(*shapes[i]), x[1]);
    }
  }
  return ok_status();
}

Status batch_norm_infer(const ir::Node& node, std::span<const InferInput> inputs, std::vector<InferOutput>& outputs) {
  std::vector<DType> dtypes;
  std::vector<const Shape*> shapes;
  for (size_t i = 0; i < 5; ++i) {
    dtypes.push_back(inputs[i].dtype);
    shapes.push_back(inputs[i].shape);
  }
  TENET_RETURN_IF_ERROR(batch_norm_check(node, dtypes, shapes));
  for (size_t i = 1; i < node.outputs.size(); ++i) {
    if (node.outputs[i] != ir::kNoValue) return unsupported(node, "training outputs (running mean/var) are not supported");
  }
  set_output(outputs, 0, DType::kFloat32, *inputs[0].shape);
  for (size_t i = 1; i < outputs.size(); ++i) set_output(outputs, i, DType::kFloat32, {(*inputs[0].shape)[1]});
  return ok_status();
}

Status batch_norm_reference(const ir::Node& node, std::span<const ConstTensorView> inputs, std::span<TensorView> outputs) {
  TENET_RETURN_IF_ERROR(util::check_views(node, inputs, outputs, 5, 1));
  std::vector<DType> dtypes;
  std::vector<const Shape*> shapes;
  for (size_t i = 0; i < 5; ++i) {
    dtypes.push_back(inputs[i].dtype);
    shapes.push_back(&inputs[i].shape);
  }
  TENET_RETURN_IF_ERROR(batch_norm_check(node, dtypes, shapes));
  TENET_RETURN_IF_ERROR(util::expect_output(node, outputs[0], 0, DType::kFloat32, inputs[0].shape));
  TENET_ASSIGN_OR_RETURN(const float epsilon, node.attr_float("epsilon", 1e-5f));
  const Shape& shape = inputs[0].shape;
  const int64_t n = shape[0], c = shape[1];
  const int64_t inner = numel(std::span(shape).subspan(2));
  const float* x = inputs[0].as<float>();
  float* y = outputs[0].as<float>();
  for (int64_t ch = 0; ch < c; ++ch) {
    const double a = static_cast<double>(inputs[1].as<float>()[ch]) /
                     std::sqrt(static_cast<double>(inputs[4].as<float>()[ch]) + static_cast<double>(epsilon));
    const double b = static_cast<double>(inputs[2].as<float>()[ch]) - a * static_cast<double>(inputs[3].as<float>()[ch]);
    for (int64_t i = 0; i < n; ++i) {
      const int64_t base = (i * c + ch) * inner;
      for (int64_t j = 0; j < inner; ++j) y[base + j] = static_cast<float>(a * x[base + j] + b);
    }
  }
  return util::apply_node_post_ops(node, inputs, outputs[0]);
}

// ---- MaxPool, AveragePool, GlobalAveragePool ----------------------------------------------------

Result<WindowGeometry> pool_geometry(const ir::Node& node, const Shape& x, WindowOp op) {
  if (x.size() < 3) return bad_node(node, "input must be [N, C, spatial...], got {}", shape_to_string(x));
  TENET_ASSIGN_OR_RETURN(const std::vector<int64_t> kernel, node.attr_ints("kernel_shape"));
  if (kernel.size() != x.size() - 2) {
    return bad_node(node, "kernel_shape has {} values for {} spatial dims", kernel.size(), x.size() - 2);
  }
  if (op == WindowOp::kMaxPool) {
    TENET_ASSIGN_OR_RETURN(const int64_t storage_order, node.attr_int("storage_order", 0));
    if (storage_order != 0) return unsupported(node, "storage_order {} is not supported (only 0)", storage_order);
  }
  if (op == WindowOp::kAveragePool) {
    TENET_ASSIGN_OR_RETURN(const int64_t include, node.attr_int("count_include_pad", 0));
    if (include != 0 && include != 1) return bad_node(node, "count_include_pad must be 0 or 1, got {}", include);
  }
  return window_geometry(node, x, kernel, op);
}

template <WindowOp kOp>
Status pool_infer(const ir::Node& node, std::span<const InferInput> inputs, std::vector<InferOutput>& outputs) {
  TENET_RETURN_IF_ERROR(require_float(node, inputs[0].dtype, "input"));
  const Shape& x = *inputs[0].shape;
  TENET_ASSIGN_OR_RETURN(const WindowGeometry g, pool_geometry(node, x, kOp));
  if (node.outputs.size() > 1 && node.outputs[1] != ir::kNoValue) {
    return unsupported(node, "the Indices output is not supported");
  }
  Shape out = window_output_shape(x[0], x[1], g);
  TENET_RETURN_IF_ERROR(util::checked_count(node, out, "output").status());
  if (outputs.size() > 1) set_output(outputs, 1, DType::kInt64, out);
  set_output(outputs, 0, DType::kFloat32, std::move(out));
  return ok_status();
}

template <WindowOp kOp>
Status pool_reference(const ir::Node& node, std::span<const ConstTensorView> inputs, std::span<TensorView> outputs) {
  TENET_RETURN_IF_ERROR(util::check_views(node, inputs, outputs, 1, 1));
  const ConstTensorView& xv = inputs[0];
  TENET_RETURN_IF_ERROR(require_float(node, xv.dtype, "input"));
  TENET_ASSIGN_OR_RETURN(const WindowGeometry g, pool_geometry(node, xv.shape, kOp));
  const Shape out_shape = window_output_shape(xv.shape[0], xv.shape[1], g);
  TENET_RETURN_IF_ERROR(util::expect_output(node, outputs[0], 0, DType::kFloat32, out_shape));
  TENET_ASSIGN_OR_RETURN(const int64_t include_pad, node.attr_int("count_include_pad", 0));
  const int64_t planes = xv.shape[0] * xv.shape[1];
  const int64_t ih = g.in[0], iw = g.in[1], oh = g.out[0], ow = g.out[1];
  const float* x = xv.as<float>();
  float* y = outputs[0].as<float>();
  for (int64_t pl = 0; pl < planes; ++pl) {
    const float* src = x + pl * ih * iw;
    for (int64_t oy = 0; oy < oh; ++oy) {
      for (int64_t ox = 0; ox < ow; ++ox) {
        const int64_t y0 = oy * g.stride[0] - g.pad_begin[0];
        const int64_t x0 = ox * g.stride[1] - g.pad_begin[1];
        double best = -std::numeric_limits<double>::infinity();
        double sum = 0;
        int64_t valid = 0;
        int64_t padded = 0;  // taps inside input + padding (count_include_pad)
        for (int64_t ky = 0; ky < g.kernel[0]; ++ky) {
          const int64_t iy = y0 + ky * g.dilation[0];
          for (int64_t kx = 0; kx < g.kernel[1]; ++kx) {
            const int64_t ix = x0 + kx * g.dilation[1];
            if (iy < ih + g.pad_end[0] && ix < iw + g.pad_end[1]) ++padded;
            if (iy < 0 || iy >= ih || ix < 0 || ix >= iw) continue;
            const double v = src[iy * iw + ix];
            if (v > best || std::isnan(v)) best = std::isnan(best) ? best : v;
            sum += v;
            ++valid;
          }
        }
        float result = 0.f;
        if constexpr (kOp == WindowOp::kMaxPool) {
          result = valid > 0 ? static_cast<float>(best) : std::numeric_limits<float>::lowest();
        } else {
          const int64_t divisor = include_pad == 1 ? padded : valid;
          result = divisor > 0 ? static_cast<float>(sum / static_cast<double>(divisor)) : 0.f;
        }
        y[(pl * oh + oy) * ow + ox] = result;
      }
    }
  }
  return ok_status();
}

Status global_average_pool_infer(const ir::Node& node, std::span<const InferInput> inputs, std::vector<InferOutput>& outputs) {
  TENET_RETURN_IF_ERROR(require_float(node, inputs[0].dtype, "input"));
  const Shape& x = *inputs[0].shape;
  if (x.size() < 3) return bad_node(node, "input must be [N, C, spatial...], got {}", shape_to_string(x));
  Shape out(x.size(), 1);
  out[0] = x[0];
  out[1] = x[1];
  set_output(outputs, 0, DType::kFloat32, std::move(out));
  return ok_status();
}

Status global_average_pool_reference(const ir::Node& node, std::span<const ConstTensorView> inputs, std::span<TensorView> outputs) {
  TENET_RETURN_IF_ERROR(util::check_views(node, inputs, outputs, 1, 1));
  const ConstTensorView& xv = inputs[0];
  TENET_RETURN_IF_ERROR(require_float(node, xv.dtype, "input"));
  if (xv.shape.size() < 3) return util::kernel_contract(node, "input rank < 3");
  Shape out(xv.shape.size(), 1);
  out[0] = xv.shape[0];
  out[1] = xv.shape[1];
  TENET_RETURN_IF_ERROR(util::expect_output(node, outputs[0], 0, DType::kFloat32, out));
  const int64_t planes = xv.shape[0] * xv.shape[1];
  const int64_t inner = numel(std::span(xv.shape).subspan(2));
  for (int64_t p = 0; p < planes; ++p) {
    double sum = 0;
    for (int64_t i = 0; i < inner; ++i) sum += xv.as<float>()[p * inner + i];
    outputs[0].as<float>()[p] = inner > 0 ? static_cast<float>(sum / static_cast<double>(inner)) : 0.f;
  }
  return ok_status();
}

// ---- Gemm ---------------------------------------------------------------------------------------

struct GemmParams {
  int64_t m = 0, k = 0, n = 0;
  bool trans_a = false, trans_b = false;
  float alpha = 1.f, beta = 1.f;
};

Result<GemmParams> gemm_params(const ir::Node& node, const Shape& a, const Shape& b, const Shape* c) {
  GemmParams p;
  TENET_ASSIGN_OR_RETURN(const int64_t ta, node.attr_int("transA", 0));
  TENET_ASSIGN_OR_RETURN(const int64_t tb, node.attr_int("transB", 0));
  if ((ta != 0 && ta != 1) || (tb != 0 && tb != 1)) return bad_node(node, "transA/transB must be 0 or 1");
  TENET_ASSIGN_OR_RETURN(p.alpha, node.attr_float("alpha", 1.f));
  TENET_ASSIGN_OR_RETURN(p.beta, node.attr_float("beta", 1.f));
  if (a.size() != 2 || b.size() != 2) {
    return bad_node(node, "A and B must be matrices, got {} and {}", shape_to_string(a), shape_to_string(b));
  }
  p.trans_a = ta == 1;
  p.trans_b = tb == 1;
  p.m = p.trans_a ? a[1] : a[0];
  p.k = p.trans_a ? a[0] : a[1];
  const int64_t kb = p.trans_b ? b[1] : b[0];
  p.n = p.trans_b ? b[0] : b[1];
  if (p.k != kb) return bad_node(node, "inner dimensions differ: A {} and B {} (transA {}, transB {})", shape_to_string(a),
                                 shape_to_string(b), ta, tb);
  if (c != nullptr) {
    const Shape mn{p.m, p.n};
    Shape bc;
    if (c->size() > 2 || !util::broadcast_shapes(*c, mn, &bc) || bc != mn) {
      return bad_node(node, "C of shape {} does not broadcast to [{}, {}]", shape_to_string(*c), p.m, p.n);
    }
  }
  return p;
}

Status gemm_infer(const ir::Node& node, std::span<const InferInput> inputs, std::vector<InferOutput>& outputs) {
  TENET_RETURN_IF_ERROR(require_float(node, inputs[0].dtype, "A"));
  TENET_RETURN_IF_ERROR(require_float(node, inputs[1].dtype, "B"));
  const InferInput* c = opt_input(inputs, 2);
  if (c != nullptr) TENET_RETURN_IF_ERROR(require_float(node, c->dtype, "C"));
  TENET_ASSIGN_OR_RETURN(const GemmParams p, gemm_params(node, *inputs[0].shape, *inputs[1].shape, c ? c->shape : nullptr));
  set_output(outputs, 0, DType::kFloat32, {p.m, p.n});
  return ok_status();
}

Status gemm_reference(const ir::Node& node, std::span<const ConstTensorView> inputs, std::span<TensorView> outputs) {
  TENET_RETURN_IF_ERROR(util::check_views(node, inputs, outputs, 2, 1));
  const ConstTensorView* cv = regular_input(node, inputs, 2);
  for (const ConstTensorView* v : {&inputs[0], &inputs[1], cv}) {
    if (v != nullptr) TENET_RETURN_IF_ERROR(require_float(node, v->dtype, "input"));
  }
  TENET_ASSIGN_OR_RETURN(const GemmParams p, gemm_params(node, inputs[0].shape, inputs[1].shape, cv ? &cv->shape : nullptr));
  const Shape mn{p.m, p.n};
  TENET_RETURN_IF_ERROR(util::expect_output(node, outputs[0], 0, DType::kFloat32, mn));
  const float* a = inputs[0].as<float>();
  const float* b = inputs[1].as<float>();
  float* y = outputs[0].as<float>();
  std::vector<double> row(static_cast<size_t>(p.n));
  for (int64_t i = 0; i < p.m; ++i) {
    std::fill(row.begin(), row.end(), 0.0);
    for (int64_t kk = 0; kk < p.k; ++kk) {
      const double av = p.trans_a ? a[kk * p.m + i] : a[i * p.k + kk];
      for (int64_t j = 0; j < p.n; ++j) row[static_cast<size_t>(j)] += av * (p.trans_b ? b[j * p.k + kk] : b[kk * p.n + j]);
    }
    for (int64_t j = 0; j < p.n; ++j) y[i * p.n + j] = static_cast<float>(p.alpha * row[static_cast<size_t>(j)]);
  }
  if (cv != nullptr) {
    const float* c = cv->as<float>();
    const double beta = p.beta;
    util::for_each_broadcast<1>(mn, {util::broadcast_strides(cv->shape, mn)}, [&](int64_t i, const std::array<int64_t, 1>& off) {
      y[i] = static_cast<float>(static_cast<double>(y[i]) + beta * c[off[0]]);
    });
  }
  return util::apply_node_post_ops(node, inputs, outputs[0]);
}

// ---- MatMul (numpy semantics) -------------------------------------------------------------------

struct MatMulParams {
  int64_t m = 0, k = 0, n = 0;
  Shape batch;    // broadcast batch dims
  Shape batch_a;  // A's batch dims (rank may be below batch's)
  Shape batch_b;
  Shape out;
};

Result<MatMulParams> matmul_params(const ir::Node& node, const Shape& a, const Shape& b) {
  if (a.empty() || b.empty()) return bad_node(node, "MatMul operands must have rank >= 1, got {} and {}", shape_to_string(a), shape_to_string(b));
  MatMulParams p;
  const Shape a2 = a.size() == 1 ? Shape{1, a[0]} : a;
  const Shape b2 = b.size() == 1 ? Shape{b[0], 1} : b;
  p.m = a2[a2.size() - 2];
  p.k = a2[a2.size() - 1];
  p.n = b2[b2.size() - 1];
  if (b2[b2.size() - 2] != p.k) {
    return bad_node(node, "inner dimensions differ: {} x {}", shape_to_string(a), shape_to_string(b));
  }
  p.batch_a.assign(a2.begin(), a2.end() - 2);
  p.batch_b.assign(b2.begin(), b2.end() - 2);
  if (!util::broadcast_shapes(p.batch_a, p.batch_b, &p.batch)) {
    return bad_node(node, "batch dimensions of {} and {} cannot be broadcast", shape_to_string(a), shape_to_string(b));
  }
  p.out = p.batch;
  if (a.size() > 1) p.out.push_back(p.m);
  if (b.size() > 1) p.out.push_back(p.n);
  TENET_RETURN_IF_ERROR(util::checked_count(node, p.out, "output").status());
  return p;
}

Status matmul_infer(const ir::Node& node, std::span<const InferInput> inputs, std::vector<InferOutput>& outputs) {
  TENET_RETURN_IF_ERROR(require_float(node, inputs[0].dtype, "A"));
  TENET_RETURN_IF_ERROR(require_float(node, inputs[1].dtype, "B"));
  TENET_ASSIGN_OR_RETURN(MatMulParams p, matmul_params(node, *inputs[0].shape, *inputs[1].shape));
  set_output(outputs, 0, DType::kFloat32, std::move(p.out));
  return ok_status();
}

// y = alpha * (a . b) over the broadcast batch, accumulated in double; y has p.out's shape.
void matmul_product(const MatMulParams& p, const float* a, const float* b, double alpha, float* y) {
  std::vector<int64_t> sa = util::broadcast_strides(p.batch_a, p.batch);
  std::vector<int64_t> sb = util::broadcast_strides(p.batch_b, p.batch);
  for (int64_t& s : sa) s *= p.m * p.k;
  for (int64_t& s : sb) s *= p.k * p.n;
  std::vector<double> row(static_cast<size_t>(p.n));
  util::for_each_broadcast<2>(p.batch, {sa, sb}, [&](int64_t bi, const std::array<int64_t, 2>& off) {
    const float* pa = a + off[0];
    const float* pb = b + off[1];
    float* py = y + bi * p.m * p.n;
    for (int64_t i = 0; i < p.m; ++i) {
      std::fill(row.begin(), row.end(), 0.0);
      for (int64_t kk = 0; kk < p.k; ++kk) {
        const double av = pa[i * p.k + kk];
        const float* brow = pb + kk * p.n;
        for (int64_t j = 0; j < p.n; ++j) row[static_cast<size_t>(j)] += av * brow[j];
      }
      for (int64_t j = 0; j < p.n; ++j) py[i * p.n + j] = static_cast<float>(alpha * row[static_cast<size_t>(j)]);
    }
  });
}

Status matmul_reference(const ir::Node& node, std::span<const ConstTensorView> inputs, std::span<TensorView> outputs) {
  TENET_RETURN_IF_ERROR(util::check_views(node, inputs, outputs, 2, 1));
  TENET_RETURN_IF_ERROR(require_float(node, inputs[0].dtype, "A"));
  TENET_RETURN_IF_ERROR(require_float(node, inputs[1].dtype, "B"));
  TENET_ASSIGN_OR_RETURN(const MatMulParams p, matmul_params(node, inputs[0].shape, inputs[1].shape));
  TENET_RETURN_IF_ERROR(util::expect_output(node, outputs[0], 0, DType::kFloat32, p.out));
  matmul_product(p, inputs[0].as<float>(), inputs[1].as<float>(), 1.0, outputs[0].as<float>());
  return util::apply_node_post_ops(node, inputs, outputs[0]);
}

// ---- FusedMatMul (tenet-internal) ---------------------------------------------------------------
//
// FusedMatMul(A, B[, bias]) = alpha * MatMul(A, B) + bias, then the node's post-ops: a MatMul with
// the scalar scale of one operand (attention's 1/sqrt(d)) and the bias Add that follow it folded
// in by passes::fuse_matmul_epilogue, so that one oneDNN matmul computes all of it. The bias
// broadcasts to the output without changing its shape.

Status fused_matmul_infer(const ir::Node& node, std::span<const InferInput> inputs, std::vector<InferOutput>& outputs) {
  TENET_RETURN_IF_ERROR(require_float(node, inputs[0].dtype, "A"));
  TENET_RETURN_IF_ERROR(require_float(node, inputs[1].dtype, "B"));
  TENET_RETURN_IF_ERROR(node.attr_float("alpha", 1.f).status());
  TENET_ASSIGN_OR_RETURN(MatMulParams p, matmul_params(node, *inputs[0].shape, *inputs[1].shape));
  if (const InferInput* bias = opt_input(inputs, 2)) {
    TENET_RETURN_IF_ERROR(require_float(node, bias->dtype, "bias"));
    Shape out;
    if (!util::broadcast_shapes(p.out, *bias->shape, &out) || out != p.out) {
      return bad_node(node, "bias {} does not broadcast to the output {}", shape_to_string(*bias->shape), shape_to_string(p.out));
    }
  }
  set_output(outputs, 0, DType::kFloat32, std::move(p.out));
  return ok_status();
}

Status fused_matmul_reference(const ir::Node& node, std::span<const ConstTensorView> inputs, std::span<TensorView> outputs) {
  TENET_RETURN_IF_ERROR(util::check_views(node, inputs, outputs, 2, 1));
  TENET_RETURN_IF_ERROR(require_float(node, inputs[0].dtype, "A"));
  TENET_RETURN_IF_ERROR(require_float(node, inputs[1].dtype, "B"));
  TENET_ASSIGN_OR_RETURN(const float alpha, node.attr_float("alpha", 1.f));
  TENET_ASSIGN_OR_RETURN(const MatMulParams p, matmul_params(node, inputs[0].shape, inputs[1].shape));
  TENET_RETURN_IF_ERROR(util::expect_output(node, outputs[0], 0, DType::kFloat32, p.out));
  float* y = outputs[0].as<float>();
  matmul_product(p, inputs[0].as<float>(), inputs[1].as<float>(), alpha, y);
  if (const ConstTensorView* bias = regular_input(node, inputs, 2)) {
    TENET_RETURN_IF_ERROR(require_float(node, bias->dtype, "bias"));
    Shape out;
    if (!util::broadcast_shapes(p.out, bias->shape, &out) || out != p.out) {
      return util::kernel_contract(node, "bias {} does not broadcast to the output {}", shape_to_string(bias->shape),
                                   shape_to_string(p.out));
    }
    const float* b = bias->as<float>();
    util::for_each_broadcast<1>(p.out, {util::broadcast_strides(bias->shape, p.out)},
                                [&](int64_t i, const std::array<int64_t, 1>& off) { y[i] += b[off[0]]; });
  }
  return util::apply_node_post_ops(node, inputs, outputs[0]);
}

// ---- Softmax ------------------------------------------------------------------------------------

// Softmax over `dim` elements spaced `inner` apart, for outer * inner independent groups.
struct SoftmaxLayout {
  int64_t outer = 1, dim = 1, inner = 1;
};

// Opset 13: axis default -1, normalized along that axis. Opsets 11-12: axis default 1, the input
// is flattened to 2-D [prod(shape[:axis]), prod(shape[axis:])] and normalized along the rows.
template <bool kFlatten>
Result<SoftmaxLayout> softmax_layout(const ir::Node& node, const Shape& x) {
  TENET_ASSIGN_OR_RETURN(const int64_t axis_attr, node.attr_int("axis", kFlatten ? 1 : -1));
  TENET_ASSIGN_OR_RETURN(const int64_t axis, util::normalize_axis(node, axis_attr, static_cast<int64_t>(x.size())));
  const auto a = static_cast<size_t>(axis);
  SoftmaxLayout l;
  l.outer = numel(std::span(x).first(a));
  if (kFlatten) {
    l.dim = numel(std::span(x).subspan(a));
  } else {
    l.dim = x[a];
    l.inner = numel(std::span(x).subspan(a + 1));
  }
  return l;
}

template <bool kFlatten>
Status softmax_infer(const ir::Node& node, std::span<const InferInput> inputs, std::vector<InferOutput>& outputs) {
  TENET_RETURN_IF_ERROR(require_float(node, inputs[0].dtype, "input"));
  TENET_RETURN_IF_ERROR(softmax_layout<kFlatten>(node, *inputs[0].shape).status());
  set_output(outputs, 0, DType::kFloat32, *inputs[0].shape);
  return ok_status();
}

template <bool kFlatten>
Status softmax_reference(const ir::Node& node, std::span<const ConstTensorView> inputs, std::span<TensorView> outputs) {
  TENET_RETURN_IF_ERROR(util::check_views(node, inputs, outputs, 1, 1));
  const ConstTensorView& xv = inputs[0];
  TENET_RETURN_IF_ERROR(require_float(node, xv.dtype, "input"));
  TENET_ASSIGN_OR_RETURN(const SoftmaxLayout l, softmax_layout<kFlatten>(node, xv.shape));
  TENET_RETURN_IF_ERROR(util::expect_output(node, outputs[0], 0, DType::kFloat32, xv.shape));
  const float* x = xv.as<float>();
  float* y = outputs[0].as<float>();
  for (int64_t o = 0; o < l.outer; ++o) {
    for (int64_t i = 0; i < l.inner; ++i) {
      const int64_t base = o * l.dim * l.inner + i;
      double max = -std::numeric_limits<double>::infinity();
      for (int64_t d = 0; d < l.dim; ++d) max = std::max<double>(max, x[base + d * l.inner]);
      double sum = 0;
      for (int64_t d = 0; d < l.dim; ++d) sum += std::exp(static_cast<double>(x[base + d * l.inner]) - max);
      for (int64_t d = 0; d < l.dim; ++d) {
        y[base + d * l.inner] = static_cast<float>(std::exp(static_cast<double>(x[base + d * l.inner]) - max) / sum);
      }
    }
  }
  return ok_status();
}

// ---- LayerNormalization (opset 17) --------------------------------------------------------------

Shape strip_leading_ones(std::span<const int64_t> s) {
  size_t i = 0;
  while (i < s.size() && s[i] == 1) ++i;
  return Shape(s.begin() + static_cast<std::ptrdiff_t>(i), s.end());
}

struct LayerNormLayout {
  int64_t outer = 1, norm = 1;
  float epsilon = 1e-5f;
};

Result<LayerNormLayout> layer_norm_layout(const ir::Node& node, const Shape& x, const Shape& scale, const Shape* bias) {
  TENET_ASSIGN_OR_RETURN(const int64_t axis_attr, node.attr_int("axis", -1));
  TENET_ASSIGN_OR_RETURN(const int64_t axis, util::normalize_axis(node, axis_attr, static_cast<int64_t>(x.size())));
  TENET_ASSIGN_OR_RETURN(const int64_t stash_type, node.attr_int("stash_type", 1));
  if (stash_type != 1) return unsupported(node, "stash_type {} is not supported (only 1, float32)", stash_type);
  LayerNormLayout l;
  TENET_ASSIGN_OR_RETURN(l.epsilon, node.attr_float("epsilon", 1e-5f));
  const auto normalized = std::span(x).subspan(static_cast<size_t>(axis));
  l.outer = numel(std::span(x).first(static_cast<size_t>(axis)));
  l.norm = numel(normalized);
  // Scale and B hold one value per normalized element (leading 1s aside); no real broadcasting.
  const Shape want = strip_leading_ones(normalized);
  for (const Shape* p : {&scale, bias}) {
    if (p != nullptr && (strip_leading_ones(*p) != want || numel(*p) != l.norm)) {
      return bad_node(node, "scale/bias of shape {} does not match the normalized shape {}", shape_to_string(*p),
                      shape_to_string(normalized));
    }
  }
  return l;
}

Status layer_norm_infer(const ir::Node& node, std::span<const InferInput> inputs, std::vector<InferOutput>& outputs) {
  TENET_RETURN_IF_ERROR(require_float(node, inputs[0].dtype, "X"));
  TENET_RETURN_IF_ERROR(require_float(node, inputs[1].dtype, "Scale"));
  const InferInput* bias = opt_input(inputs, 2);
  if (bias != nullptr) TENET_RETURN_IF_ERROR(require_float(node, bias->dtype, "B"));
  for (size_t i = 1; i < node.outputs.size(); ++i) {
    if (node.outputs[i] != ir::kNoValue) return unsupported(node, "the Mean and InvStdDev outputs are not supported");
  }
  const Shape& x = *inputs[0].shape;
  TENET_RETURN_IF_ERROR(layer_norm_layout(node, x, *inputs[1].shape, bias ? bias->shape : nullptr).status());
  set_output(outputs, 0, DType::kFloat32, x);
  // Unrequested statistics outputs: shape [outer dims, 1...] as ONNX defines them.
  TENET_ASSIGN_OR_RETURN(const int64_t axis_attr, node.attr_int("axis", -1));
  const int64_t axis = axis_attr < 0 ? axis_attr + static_cast<int64_t>(x.size()) : axis_attr;
  Shape stats = x;
  for (size_t d = static_cast<size_t>(axis); d < stats.size(); ++d) stats[d] = 1;
  for (size_t i = 1; i < outputs.size(); ++i) set_output(outputs, i, DType::kFloat32, stats);
  return ok_status();
}

Status layer_norm_reference(const ir::Node& node, std::span<const ConstTensorView> inputs, std::span<TensorView> outputs) {
  TENET_RETURN_IF_ERROR(util::check_views(node, inputs, outputs, 2, 1));
  const ConstTensorView& xv = inputs[0];
  const ConstTensorView* bv = opt_input(inputs, 2);
  for (const ConstTensorView* v : {&xv, &inputs[1], bv}) {
    if (v != nullptr) TENET_RETURN_IF_ERROR(require_float(node, v->dtype, "input"));
  }
  TENET_ASSIGN_OR_RETURN(const LayerNormLayout l, layer_norm_layout(node, xv.shape, inputs[1].shape, bv ? &bv->shape : nullptr));
  TENET_RETURN_IF_ERROR(util::expect_output(node, outputs[0], 0, DType::kFloat32, xv.shape));
  const float* x = xv.as<float>();
  const float* scale = inputs[1].as<float>();
  const float* bias = bv != nullptr ? bv->as<float>() : nullptr;
  float* y = outputs[0].as<float>();
  for (int64_t o = 0; o < l.outer; ++o) {
    const float* src = x + o * l.norm;
    double mean = 0;
    for (int64_t i = 0; i < l.norm; ++i) mean += src[i];
    mean /= static_cast<double>(l.norm);
    double var = 0;
    for (int64_t i = 0; i < l.norm; ++i) var += (src[i] - mean) * (src[i] - mean);
    var /= static_cast<double>(l.norm);
    const double inv_std = 1.0 / std::sqrt(var + static_cast<double>(l.epsilon));
    for (int64_t i = 0; i < l.norm; ++i) {
      const double v = (src[i] - mean) * inv_std * scale[i] + (bias != nullptr ? bias[i] : 0.0);
      y[o * l.norm + i] = static_cast<float>(v);
    }
  }
  return ok_status();
}

// ---- Gelu (tenet-internal, and ONNX-20's definition) --------------------------------------------

Result<bool> gelu_uses_tanh(const ir::Node& node) {
  const Result<std::string> approximate = node.attr_string("approximate", "none");
  if (!approximate.ok()) return approximate.status();
  if (*approximate != "none" && *approximate != "tanh") {
    return bad_node(node, "approximate must be 'none' or 'tanh', got '{}'", *approximate);
  }
  return *approximate == "tanh";
}

Status gelu_infer(const ir::Node& node, std::span<const InferInput> inputs, std::vector<InferOutput>& outputs) {
  TENET_RETURN_IF_ERROR(gelu_uses_tanh(node).status());
  TENET_RETURN_IF_ERROR(require_float(node, inputs[0].dtype, "input"));
  set_output(outputs, 0, DType::kFloat32, *inputs[0].shape);
  return ok_status();
}

Status gelu_reference(const ir::Node& node, std::span<const ConstTensorView> inputs, std::span<TensorView> outputs) {
  TENET_RETURN_IF_ERROR(util::check_views(node, inputs, outputs, 1, 1));
  TENET_ASSIGN_OR_RETURN(const bool use_tanh, gelu_uses_tanh(node));
  const ConstTensorView& xv = inputs[0];
  TENET_RETURN_IF_ERROR(require_float(node, xv.dtype, "input"));
  TENET_RETURN_IF_ERROR(util::expect_output(node, outputs[0], 0, DType::kFloat32, xv.shape));
  const float* x = xv.as<float>();
  float* y = outputs[0].as<float>();
  const double k = std::sqrt(2.0 / M_PI);
  for (int64_t i = 0; i < xv.numel(); ++i) {
    const double v = x[i];
    const double cdf = use_tanh ? 0.5 * (1.0 + std::tanh(k * (v + 0.044715 * v * v * v))) : 0.5 * (1.0 + std::erf(v * M_SQRT1_2));
    y[i] = static_cast<float>(v * cdf);
  }
  return ok_status();
}

constexpr OpSchema kNnOps[] = {
    {"Conv", 11, 17, conv_infer, conv_reference},
    {"BatchNormalization", 11, 17, batch_norm_infer, batch_norm_reference},
    {"MaxPool", 11, 17, pool_infer<WindowOp::kMaxPool>, pool_reference<WindowOp::kMaxPool>},
    {"AveragePool", 11, 17, pool_infer<WindowOp::kAveragePool>, pool_reference<WindowOp::kAveragePool>},
    {"GlobalAveragePool", 11, 17, global_average_pool_infer, global_average_pool_reference},
    {"Gemm", 11, 17, gemm_infer, gemm_reference},
    {"MatMul", 11, 17, matmul_infer, matmul_reference},
    {"FusedMatMul", 11, 17, fused_matmul_infer, fused_matmul_reference},
    {"Softmax", 11, 12, softmax_infer<true>, softmax_reference<true>},
    {"Softmax", 13, 17, softmax_infer<false>, softmax_reference<false>},
    {"LayerNormalization", 17, 17, layer_norm_infer, layer_norm_reference},
    {"Gelu", 11, 17, gelu_infer, gelu_reference, true},
};

}  // namespace

std::span<const OpSchema> nn_ops() { return kNnOps; }

}  // namespace tenet::ops
