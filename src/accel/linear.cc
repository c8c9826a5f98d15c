// Shape rules, spec validation and the exact reference of the accelerator's linear layers.
//
// Everything a spec or an input shape carries may come from a hostile peer (the remote protocol
// decodes specs and shapes from frames), so every size is computed with overflow checks and
// bounded by the limits in accelerator.h before anything is allocated or indexed.
// reference_linear is the oracle of every backend: plain int64 loops, reduced mod p at the end.
#include <algorithm>
#include <optional>

#include "accel/accelerator.h"
#include "core/conv_taps.h"
#include "core/safe_math.h"

namespace tenet::accel {
namespace {

// Bounds on the scalar attributes: far beyond any real layer, small enough that the arithmetic
// on them below cannot overflow.
constexpr int64_t kMaxStride = 1 << 16;
constexpr int64_t kMaxDilation = 1 << 16;
constexpr int64_t kMaxPad = 1 << 16;

const char* kind_name(LinearSpec::Kind kind) {
  return kind == LinearSpec::Kind::kConv2d ? "conv2d" : "matmul";
}

// The structural part of validate(): shapes and attributes, not the weights' values (O(1), so
// output_shape can afford it on every run).
Status check_structure(const LinearSpec& spec) {
  const Shape& w = spec.weight_shape;
  if (spec.kind != LinearSpec::Kind::kConv2d && spec.kind != LinearSpec::Kind::kMatMul) {
    return invalid_argument("linear spec: unknown kind {}", static_cast<int>(spec.kind));
  }
  const size_t rank = spec.kind == LinearSpec::Kind::kConv2d ? 4 : 2;
  if (w.size() != rank) {
    return invalid_argument("{} weights: shape {} has rank {}, expected {}", kind_name(spec.kind), shape_to_string(w),
                            w.size(), rank);
  }
  for (int64_t d : w) {
    if (d < 1) return invalid_argument("{} weights: shape {} has a dimension < 1", kind_name(spec.kind), shape_to_string(w));
  }
  int64_t count = 0;
  if (!checked_element_count(w, &count) || count > kMaxWeightCount) {
    return invalid_argument("{} weights: shape {} exceeds {} elements", kind_name(spec.kind), shape_to_string(w),
                            kMaxWeightCount);
  }
  int64_t reduction = w[1];
  if (spec.kind == LinearSpec::Kind::kConv2d) {
    if (spec.group < 1 || spec.group > w[0] || w[0] % spec.group != 0) {
      return invalid_argument("conv2d: group {} does not divide Cout {}", spec.group, w[0]);
    }
    for (int i = 0; i < 2; ++i) {
      if (spec.strides[i] < 1 || spec.strides[i] > kMaxStride) {
        return invalid_argument("conv2d: stride {} out of [1, {}]", spec.strides[i], kMaxStride);
      }
      if (spec.dilations[i] < 1 || spec.dilations[i] > kMaxDilation) {
        return invalid_argument("conv2d: dilation {} out of [1, {}]", spec.dilations[i], kMaxDilation);
      }
    }
    for (int64_t pad : spec.pads) {
      if (pad < 0 || pad > kMaxPad) return invalid_argument("conv2d: pad {} out of [0, {}]", pad, kMaxPad);
    }
    // w[1]·w[2]·w[3] ≤ count ≤ 2^28: no overflow.
    reduction = w[1] * w[2] * w[3];
  } else if (spec.group != 1) {
    return invalid_argument("matmul: group must be 1, got {}", spec.group);
  }
  if (reduction > kMaxReductionCount) {
    return invalid_argument("{}: reduction of {} terms exceeds {} (results would not be exact)", kind_name(spec.kind),
                            reduction, kMaxReductionCount);
  }
  return ok_status();
}

}  // namespace

Status validate(const LinearSpec& spec) {
  TENET_RETURN_IF_ERROR(check_structure(spec));
  const int64_t count = numel(spec.weight_shape);
  if (static_cast<int64_t>(spec.weights.size()) != count) {
    return invalid_argument("{} weights: {} values for shape {} ({} elements)", kind_name(spec.kind),
                            spec.weights.size(), shape_to_string(spec.weight_shape), count);
  }
  const auto bad = std::find(spec.weights.begin(), spec.weights.end(), int8_t{-128});
  if (bad != spec.weights.end()) {
    return invalid_argument("{} weights: value -128 at index {} (weights must be in [-127, 127])", kind_name(spec.kind),
                            bad - spec.weights.begin());
  }
  return ok_status();
}

Result<Shape> output_shape(const LinearSpec& spec, const Shape& input_shape) {
  TENET_RETURN_IF_ERROR(check_structure(spec));
  const Shape& w = spec.weight_shape;
  const size_t rank = spec.kind == LinearSpec::Kind::kConv2d ? 4 : 2;
  if (input_shape.size() != rank) {
    return invalid_argument("{}: input shape {} has rank {}, expected {}", kind_name(spec.kind),
                            shape_to_string(input_shape), input_shape.size(), rank);
  }
  int64_t in_count = 0;
  if (!checked_element_count(input_shape, &in_count) || in_count > kMaxRunCount) {
    return invalid_argument("{}: input shape {} exceeds {} elements", kind_name(spec.kind), shape_to_string(input_shape),
                            kMaxRunCount);
  }
  for (int64_t d : input_shape) {
    if (d < 1) return invalid_argument("{}: input shape {} has a dimension < 1", kind_name(spec.kind), shape_to_string(input_shape));
  }
  Shape out;
  if (spec.kind == LinearSpec::Kind::kMatMul) {
    if (input_shape[1] != w[1]) {
      return invalid_argument("matmul: input shape {} does not match weights {} (K {} vs {})", shape_to_string(input_shape),
                              shape_to_string(w), input_shape[1], w[1]);
    }
    out = {input_shape[0], w[0]};
  } else {
    if (input_shape[1] != w[1] * spec.group) {
      return invalid_argument("conv2d: input shape {} has {} channels, weights {} with group {} expect {}",
                              shape_to_string(input_shape), input_shape[1], shape_to_string(w), spec.group,
                              w[1] * spec.group);
    }
    out = {input_shape[0], w[0], 0, 0};
    for (int i = 0; i < 2; ++i) {
      // All terms are bounded (dims ≤ 2^28, pads and dilations ≤ 2^16): no overflow in int64.
      const int64_t padded = input_shape[2 + i] + spec.pads[i] + spec.pads[2 + i];
      const int64_t extent = spec.dilations[i] * (w[2 + i] - 1) + 1;
      if (padded < extent) {
        return invalid_argument("conv2d: input shape {} with pads is smaller than the dilated kernel ({} < {})",
                                shape_to_string(input_shape), padded, extent);
      }
      out[2 + i] = (padded - extent) / spec.strides[i] + 1;
    }
  }
  int64_t out_count = 0;
  if (!checked_element_count(out, &out_count) || out_count > kMaxRunCount) {
    return invalid_argument("{}: output shape {} exceeds {} elements", kind_name(spec.kind), shape_to_string(out),
                            kMaxRunCount);
  }
  return out;
}

std::optional<LinearSpec> crop_dead_taps(const LinearSpec& spec, const Shape& input_shape) {
  if (spec.kind != LinearSpec::Kind::kConv2d) return std::nullopt;
  const Result<Shape> out = output_shape(spec, input_shape);
  if (!out.ok()) return std::nullopt;
  std::optional<LiveTaps> taps[2];
  for (size_t d = 0; d < 2; ++d) {
    taps[d] = live_taps(input_shape[2 + d], spec.weight_shape[2 + d], spec.strides[d], spec.dilations[d], spec.pads[d],
                        (*out)[2 + d]);
    if (!taps[d]) return std::nullopt;
  }
  const int64_t cout = spec.weight_shape[0], cin_g = spec.weight_shape[1], kh = spec.weight_shape[2], kw = spec.weight_shape[3];
  if (!taps[0]->cropped(kh) && !taps[1]->cropped(kw)) return std::nullopt;
  LinearSpec c;
  c.kind = spec.kind;
  c.strides = spec.strides;
  c.dilations = spec.dilations;
  c.group = spec.group;
  c.pads = {taps[0]->pad_begin, taps[1]->pad_begin, taps[0]->pad_end, taps[1]->pad_end};
  const int64_t ch = taps[0]->last - taps[0]->first + 1, cw = taps[1]->last - taps[1]->first + 1;
  c.weight_shape = {cout, cin_g, ch, cw};
  c.weights.resize(static_cast<size_t>(cout * cin_g * ch * cw));
  size_t i = 0;
  for (int64_t oc = 0; oc < cout * cin_g; ++oc) {
    for (int64_t y = taps[0]->first; y <= taps[0]->last; ++y) {
      for (int64_t x = taps[1]->first; x <= taps[1]->last; ++x) c.weights[i++] = spec.weights[static_cast<size_t>((oc * kh + y) * kw + x)];
    }
  }
  const Result<Shape> same = output_shape(c, input_shape);
  if (!same.ok() || *same != *out) return std::nullopt;  // cannot happen; never run a layer of another shape
  return c;
}

namespace {

// The largest element (branch-free, so it vectorizes; unsigned 32-bit max needs SSE4.1 at least,
// hence the clones).
__attribute__((target_clones("avx512f", "avx2", "default"))) uint32_t max_element_u32(const uint32_t* x, size_t n) {
  uint32_t m = 0;
  for (size_t i = 0; i < n; ++i) m = std::max(m, x[i]);
  return m;
}

}  // namespace

bool all_field_elements(std::span<const uint32_t> v) { return max_element_u32(v.data(), v.size()) < kFieldPrime; }

Status check_run_arguments(const LinearSpec& spec, const Shape& input_shape, std::span<const uint32_t> x,
                           std::span<const uint32_t> y) {
  TENET_ASSIGN_OR_RETURN(Shape out, output_shape(spec, input_shape));
  if (static_cast<int64_t>(x.size()) != numel(input_shape)) {
    return invalid_argument("{}: input has {} elements, shape {} needs {}", kind_name(spec.kind), x.size(),
                            shape_to_string(input_shape), numel(input_shape));
  }
  if (static_cast<int64_t>(y.size()) != numel(out)) {
    return invalid_argument("{}: output buffer has {} elements, output shape {} needs {}", kind_name(spec.kind),
                            y.size(), shape_to_string(out), numel(out));
  }
  // Branch-free scan (vectorizes); the index is only searched for on failure.
  if (!all_field_elements(x)) {
    const auto bad = std::find_if(x.begin(), x.end(), [](uint32_t v) { return v >= kFieldPrime; });
    return invalid_argument("{}: input value {} at index {} is not a field element (>= 2^31-1)", kind_name(spec.kind),
                            *bad, bad - x.begin());
  }
  return ok_status();
}

namespace {

inline uint32_t reduce_mod_p(int64_t v) {
  int64_t r = v % static_cast<int64_t>(kFieldPrime);
  if (r < 0) r += kFieldPrime;
  return static_cast<uint32_t>(r);
}

}  // namespace

Status reference_linear(const LinearSpec& spec, const Shape& input_shape, std::span<const uint32_t> x,
                        std::span<uint32_t> y) {
  TENET_RETURN_IF_ERROR(validate(spec));
  TENET_RETURN_IF_ERROR(check_run_arguments(spec, input_shape, x, y));
  const Shape& w = spec.weight_shape;
  const int8_t* wt = spec.weights.data();
  if (spec.kind == LinearSpec::Kind::kMatMul) {
    const int64_t m_count = input_shape[0], k_count = w[1], n_count = w[0];
    for (int64_t m = 0; m < m_count; ++m) {
      for (int64_t n = 0; n < n_count; ++n) {
        int64_t acc = 0;  // |acc| ≤ K·127·2^31 < 2^53
        for (int64_t k = 0; k < k_count; ++k) acc += int64_t{wt[n * k_count + k]} * x[static_cast<size_t>(m * k_count + k)];
        y[static_cast<size_t>(m * n_count + n)] = reduce_mod_p(acc);
      }
    }
    return ok_status();
  }
  Shape out = output_shape(spec, input_shape).value();
  const int64_t batch = input_shape[0], cin = input_shape[1], h = input_shape[2], wd = input_shape[3];
  const int64_t cout = w[0], cin_g = w[1], kh = w[2], kw = w[3];
  const int64_t cout_g = cout / spec.group;
  const int64_t ho = out[2], wo = out[3];
  for (int64_t n = 0; n < batch; ++n) {
    for (int64_t co = 0; co < cout; ++co) {
      const int64_t g = co / cout_g;
      for (int64_t oy = 0; oy < ho; ++oy) {
        for (int64_t ox = 0; ox < wo; ++ox) {
          int64_t acc = 0;
          for (int64_t ci = 0; ci < cin_g; ++ci) {
            const int64_t c = g * cin_g + ci;
            for (int64_t ky = 0; ky < kh; ++ky) {
              const int64_t iy = oy * spec.strides[0] - spec.pads[0] + ky * spec.dilations[0];
              if (iy < 0 || iy >= h) continue;
              for (int64_t kx = 0; kx < kw; ++kx) {
                const int64_t ix = ox * spec.strides[1] - spec.pads[1] + kx * spec.dilations[1];
                if (ix < 0 || ix >= wd) continue;
                acc += int64_t{wt[((co * cin_g + ci) * kh + ky) * kw + kx]} *
                       x[static_cast<size_t>(((n * cin + c) * h + iy) * wd + ix)];
              }
            }
          }
          y[static_cast<size_t>(((n * cout + co) * ho + oy) * wo + ox)] = reduce_mod_p(acc);
        }
      }
    }
  }
  return ok_status();
}

}  // namespace tenet::accel
