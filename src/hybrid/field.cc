// Z_p arithmetic and 8-bit quantization for hybrid mode; the contract is in field.h.
#include "hybrid/field.h"

#include <algorithm>
#include <cmath>
#include <cstring>

namespace tenet::hybrid {

// Each product p < 2^62 is folded once to (p & kP) + (p >> 31) ≡ p (mod p), which is < 2^32, so
// a uint64 sum of up to 2^32 folded terms cannot overflow. The loop body is branch-free and
// vectorizes (vpmuludq on AVX2; the default clone for older CPUs).
__attribute__((target_clones("avx2", "default"))) uint32_t dot_mod(std::span<const uint32_t> a, std::span<const uint32_t> b) {
  const size_t n = std::min(a.size(), b.size());
  const uint32_t* pa = a.data();
  const uint32_t* pb = b.data();
  uint64_t acc = 0;
  for (size_t i = 0; i < n; ++i) {
    const uint64_t p = uint64_t{pa[i]} * pb[i];
    acc += (p & kP) + (p >> 31);
  }
  return reduce64(acc);
}

__attribute__((target_clones("avx2", "default"))) uint32_t max_abs_bits(const float* x, int64_t count) {
  // For non-negative IEEE floats the integer order is the float order; Inf and NaN (exponent
  // all ones) compare above every finite value.
  uint32_t m = 0;
  for (int64_t i = 0; i < count; ++i) {
    uint32_t b;
    std::memcpy(&b, x + i, sizeof(b));
    m = std::max(m, b & 0x7fffffffu);
  }
  return m;
}

__attribute__((target_clones("avx2", "default"))) void quantize_blind(const float* x, int64_t count, float inv_scale,
                                                                      const uint32_t* pad, uint32_t* dst) {
  for (int64_t i = 0; i < count; ++i) {
    const int32_t q = quantize_value(x[i] * inv_scale);
    // q as a field element (p + q for q < 0: the uint32 sum wraps to exactly that), plus the pad.
    dst[i] = add_mod(static_cast<uint32_t>(q) + (q < 0 ? kP : 0u), pad[i]);
  }
}

__attribute__((target_clones("avx2", "default"))) void unblind_dequantize(const uint32_t* y, const uint32_t* u, int64_t count,
                                                                          float scale, float bias, float* dst) {
  for (int64_t i = 0; i < count; ++i) {
    const uint32_t v = sub_mod(y[i], u[i]);
    // Centred lift: v > p/2 stands for v - p.
    const int32_t s = v > kP / 2 ? static_cast<int32_t>(v - kP) : static_cast<int32_t>(v);
    dst[i] = static_cast<float>(s) * scale + bias;
  }
}

float quantization_scale(std::span<const float> x) {
  float m = 0.f;
  for (float v : x) m = std::max(m, std::fabs(v));
  return m > 0.f ? m / static_cast<float>(kQuantMax) : 1.f;
}

void quantize(std::span<const float> x, float scale, std::span<int8_t> q) {
  const float inv = 1.f / scale;
  for (size_t i = 0; i < x.size(); ++i) q[i] = static_cast<int8_t>(quantize_value(x[i] * inv));
}

QuantizedWeights quantize_rows(std::span<const float> w, int64_t rows, int64_t row_count) {
  QuantizedWeights out;
  out.values.resize(w.size());
  out.scales.resize(static_cast<size_t>(rows));
  for (int64_t r = 0; r < rows; ++r) {
    auto row = w.subspan(static_cast<size_t>(r * row_count), static_cast<size_t>(row_count));
    const float s = quantization_scale(row);
    out.scales[static_cast<size_t>(r)] = s;
    quantize(row, s, std::span(out.values).subspan(static_cast<size_t>(r * row_count), static_cast<size_t>(row_count)));
  }
  return out;
}

}  // namespace tenet::hybrid
