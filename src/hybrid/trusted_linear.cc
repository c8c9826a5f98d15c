// Exact int64 loops for W·x mod p (see trusted_linear.h).
#include "hybrid/trusted_linear.h"

#include <algorithm>

#include "core/safe_math.h"
#include "hybrid/field.h"

namespace tenet::hybrid {

using accel::LinearSpec;

int64_t reduction_length(const LinearSpec& spec) {
  const Shape& w = spec.weight_shape;
  if (spec.kind == LinearSpec::Kind::kMatMul) return w.size() == 2 ? w[1] : 0;
  return w.size() == 4 ? w[1] * w[2] * w[3] : 0;
}

Result<Shape> linear_output_shape(const LinearSpec& spec, const Shape& x) {
  const Shape& w = spec.weight_shape;
  for (int64_t d : w) {
    if (d <= 0) return invalid_argument("hybrid: weight shape {} has an empty dim", shape_to_string(w));
  }
  if (static_cast<int64_t>(spec.weights.size()) != numel(w)) {
    return invalid_argument("hybrid: {} weights for shape {}", spec.weights.size(), shape_to_string(w));
  }
  if (spec.kind == LinearSpec::Kind::kMatMul) {
    if (w.size() != 2 || x.size() != 2 || x[1] != w[1]) {
      return invalid_argument("hybrid: matmul input {} does not fit weights {}", shape_to_string(x), shape_to_string(w));
    }
    return Shape{x[0], w[0]};
  }
  if (w.size() != 4 || x.size() != 4 || spec.group <= 0 || w[0] % spec.group != 0 || x[1] != w[1] * spec.group) {
    return invalid_argument("hybrid: conv input {} does not fit weights {} (group {})", shape_to_string(x), shape_to_string(w),
                            spec.group);
  }
  Shape y{x[0], w[0], 0, 0};
  for (int d = 0; d < 2; ++d) {
    const int64_t s = spec.strides[static_cast<size_t>(d)], dil = spec.dilations[static_cast<size_t>(d)];
    if (s <= 0 || dil <= 0 || spec.pads[static_cast<size_t>(d)] < 0 || spec.pads[static_cast<size_t>(d + 2)] < 0) {
      return invalid_argument("hybrid: bad conv strides/dilations/pads");
    }
    const int64_t extent = (w[2 + static_cast<size_t>(d)] - 1) * dil + 1;
    const int64_t span = x[2 + static_cast<size_t>(d)] + spec.pads[static_cast<size_t>(d)] + spec.pads[static_cast<size_t>(d + 2)] - extent;
    if (span < 0) return invalid_argument("hybrid: conv window larger than the padded input");
    y[2 + static_cast<size_t>(d)] = span / s + 1;
  }
  return y;
}

Status exact_linear(const LinearSpec& spec, const Shape& input_shape, std::span<const uint32_t> x, std::span<uint32_t> y) {
  TENET_ASSIGN_OR_RETURN(const Shape out, linear_output_shape(spec, input_shape));
  if (static_cast<int64_t>(x.size()) != numel(input_shape) || static_cast<int64_t>(y.size()) != numel(out)) {
    return invalid_argument("hybrid: exact_linear buffers of {} and {} elements for {} -> {}", x.size(), y.size(),
                            shape_to_string(input_shape), shape_to_string(out));
  }
  const Shape& w = spec.weight_shape;
  const int8_t* wd = spec.weights.data();
  if (spec.kind == LinearSpec::Kind::kMatMul) {
    const int64_t rows = input_shape[0], k = w[1], nout = w[0];
#pragma omp parallel for collapse(2) schedule(static)
    for (int64_t m = 0; m < rows; ++m) {
      for (int64_t o = 0; o < nout; ++o) {
        const uint32_t* xr = x.data() + m * k;
        const int8_t* wr = wd + o * k;
        int64_t acc = 0;
        for (int64_t i = 0; i < k; ++i) acc += static_cast<int64_t>(wr[i]) * xr[i];
        y[static_cast<size_t>(m * nout + o)] = from_signed(acc);
      }
    }
    return ok_status();
  }
  const int64_t n_count = input_shape[0], cin = input_shape[1], ih = input_shape[2], iw = input_shape[3];
  const int64_t cout = w[0], cin_g = w[1], kh = w[2], kw = w[3];
  const int64_t oh = out[2], ow = out[3];
  const int64_t cout_g = cout / spec.group;
  const int64_t sh = spec.strides[0], sw = spec.strides[1], dh = spec.dilations[0], dw = spec.dilations[1];
  const int64_t pt = spec.pads[0], pl = spec.pads[1];
#pragma omp parallel
  {
    std::vector<int64_t> acc(static_cast<size_t>(oh * ow));
#pragma omp for collapse(2) schedule(dynamic)
    for (int64_t n = 0; n < n_count; ++n) {
      for (int64_t co = 0; co < cout; ++co) {
        std::fill(acc.begin(), acc.end(), 0);
        const int64_t g = co / cout_g;
        for (int64_t cil = 0; cil < cin_g; ++cil) {
          const uint32_t* plane = x.data() + (n * cin + g * cin_g + cil) * ih * iw;
          for (int64_t a = 0; a < kh; ++a) {
            for (int64_t b = 0; b < kw; ++b) {
              const int64_t wv = wd[((co * cin_g + cil) * kh + a) * kw + b];
              if (wv == 0) continue;
              for (int64_t r = 0; r < oh; ++r) {
                const int64_t yy = r * sh - pt + a * dh;
                if (yy < 0 || yy >= ih) continue;
                const uint32_t* row = plane + yy * iw;
                int64_t* arow = acc.data() + r * ow;
                // Columns whose input lies inside the image.
                const int64_t off = b * dw - pl;
                int64_t c0 = off >= 0 ? 0 : (-off + sw - 1) / sw;
                int64_t c1 = iw - 1 - off < 0 ? -1 : std::min(ow - 1, (iw - 1 - off) / sw);
                for (int64_t c = c0; c <= c1; ++c) arow[c] += wv * row[c * sw + off];
              }
            }
          }
        }
        uint32_t* dst = y.data() + (n * cout + co) * oh * ow;
        for (int64_t i = 0; i < oh * ow; ++i) dst[i] = from_signed(acc[static_cast<size_t>(i)]);
      }
    }
  }
  return ok_status();
}

Result<int32_t> ExactLinear::add_layer(const LinearSpec& spec) {
  if (reduction_length(spec) <= 0 || reduction_length(spec) > kMaxExactReduction) {
    return invalid_argument("hybrid: layer reduction length {} outside (0, {}]", reduction_length(spec), kMaxExactReduction);
  }
  for (int8_t v : spec.weights) {
    if (v < -kQuantMax) return invalid_argument("hybrid: weight -128 outside [-127, 127]");
  }
  std::lock_guard<std::mutex> lock(mu_);
  layers_.push_back(std::make_shared<const LinearSpec>(spec));
  return static_cast<int32_t>(layers_.size() - 1);
}

Status ExactLinear::run(int32_t layer, const Shape& input_shape, std::span<const uint32_t> x, std::span<uint32_t> y) {
  std::shared_ptr<const LinearSpec> spec;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (layer < 0 || static_cast<size_t>(layer) >= layers_.size()) return invalid_argument("hybrid: no layer {}", layer);
    spec = layers_[static_cast<size_t>(layer)];
  }
  return exact_linear(*spec, input_shape, x, y);
}

}  // namespace tenet::hybrid
