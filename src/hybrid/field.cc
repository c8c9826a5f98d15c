// Z_p arithmetic and 8-bit quantization for hybrid mode; the contract is in field.h.
#include "hybrid/field.h"

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstring>
#include <utility>

#include "core/x86_intrinsics.h"

namespace tenet::hybrid {

namespace {

// One accumulator per row of `a`: each product p < 2^62 is folded once to
// (p & kP) + (p >> 31) ≡ p (mod p), which is < 2^32, so a uint64 sum of up to 2^32 folded terms
// cannot overflow.
void dot_mod_many_portable(std::span<const uint32_t* const> a, const uint32_t* b, size_t n, uint32_t* out, uint32_t* b_max) {
  uint64_t acc[kMaxDots] = {};
  if (b_max != nullptr) {
    for (size_t i = 0; i < n; ++i) *b_max = std::max(*b_max, b[i]);
  }
  for (size_t i = 0; i < n; ++i) {
    for (size_t r = 0; r < a.size(); ++r) {
      const uint64_t p = uint64_t{a[r][i]} * b[i];
      acc[r] += (p & kP) + (p >> 31);
    }
  }
  for (size_t r = 0; r < a.size(); ++r) out[r] = reduce64(acc[r]);
}

// Sixteen elements per step: vpmuludq multiplies the even 32-bit lanes (and, after a 32-bit
// shift, the odd ones) into 64-bit products, folded as above and summed per 64-bit lane. A lane
// gains less than 2^33 per step, and n < 2^32 is under 2^28 steps: below 2^61.
template <size_t R>
__attribute__((target("avx512f"))) void dot_mod_many_avx512(std::span<const uint32_t* const> a, const uint32_t* b, size_t n,
                                                            uint32_t* out, uint32_t* b_max) {
  const __m512i mask = _mm512_set1_epi64(kP);
  __m512i acc[R];
  for (size_t r = 0; r < R; ++r) acc[r] = _mm512_setzero_si512();
  __m512i vmax = _mm512_setzero_si512();
  size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m512i vb = _mm512_loadu_si512(b + i);
    vmax = _mm512_max_epu32(vmax, vb);
    const __m512i vb_odd = _mm512_srli_epi64(vb, 32);
    for (size_t r = 0; r < R; ++r) {
      const __m512i va = _mm512_loadu_si512(a[r] + i);
      const __m512i even = _mm512_mul_epu32(va, vb);
      const __m512i odd = _mm512_mul_epu32(_mm512_srli_epi64(va, 32), vb_odd);
      acc[r] = _mm512_add_epi64(acc[r], _mm512_add_epi64(_mm512_and_si512(even, mask), _mm512_srli_epi64(even, 31)));
      acc[r] = _mm512_add_epi64(acc[r], _mm512_add_epi64(_mm512_and_si512(odd, mask), _mm512_srli_epi64(odd, 31)));
    }
  }
  for (size_t r = 0; r < R; ++r) {
    alignas(64) uint64_t lanes[8];
    _mm512_store_si512(lanes, acc[r]);
    uint64_t sum = 0;
    for (uint64_t l : lanes) sum = reduce64(sum) + reduce64(l);  // each < 2^31: no overflow
    for (size_t t = i; t < n; ++t) {
      const uint64_t p = uint64_t{a[r][t]} * b[t];
      sum += (p & kP) + (p >> 31);
    }
    out[r] = reduce64(sum);
  }
  if (b_max != nullptr) {
    uint32_t m = std::max(*b_max, _mm512_reduce_max_epu32(vmax));
    for (size_t t = i; t < n; ++t) m = std::max(m, b[t]);
    *b_max = m;
  }
}

// The same with AVX-512 IFMA, eight elements (zero-extended to 64-bit lanes) per step and two
// steps per iteration: vpmadd52luq adds the low 52 bits of each 62-bit product to one
// accumulator and vpmadd52huq its bits 52..61 to another, two instructions per eight products
// instead of two multiplies and six folding operations per sixteen. 2^52 ≡ 2^21 (mod p). A low
// accumulator gains < 2^52 per step, so it is folded into the running sum every kFoldSteps
// steps (< 2^64); a high one < 2^10.
template <size_t R>
__attribute__((target("avx512f,avx512ifma"))) void dot_mod_many_ifma(std::span<const uint32_t* const> a, const uint32_t* b,
                                                                     size_t n, uint32_t* out, uint32_t* b_max) {
  constexpr size_t kFoldSteps = 2048;  // per accumulator: 2048 · 2^52 = 2^63
  uint64_t sum[R] = {};
  const auto fold = [&sum](const __m512i* lo, const __m512i* hi) __attribute__((target("avx512f"))) {
    for (size_t r = 0; r < R; ++r) {
      alignas(64) uint64_t l[8], h[8];
      _mm512_store_si512(l, lo[r]);
      _mm512_store_si512(h, hi[r]);
      for (int k = 0; k < 8; ++k) sum[r] += reduce64(l[k]) + reduce64(h[k] << 21);  // h < 2^21: h·2^21 < 2^42
    }
  };
  __m512i vmax = _mm512_setzero_si512();
  size_t i = 0;
  while (i + 16 <= n) {
    __m512i lo0[R], hi0[R], lo1[R], hi1[R];
    for (size_t r = 0; r < R; ++r) lo0[r] = hi0[r] = lo1[r] = hi1[r] = _mm512_setzero_si512();
    const size_t end = i + std::min((n - i) / 16, kFoldSteps) * 16;
    for (; i < end; i += 16) {
      if (b_max != nullptr) vmax = _mm512_max_epu32(vmax, _mm512_loadu_si512(b + i));
      const __m512i b0 = _mm512_cvtepu32_epi64(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + i)));
      const __m512i b1 = _mm512_cvtepu32_epi64(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + i + 8)));
      for (size_t r = 0; r < R; ++r) {
        const __m512i a0 = _mm512_cvtepu32_epi64(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(a[r] + i)));
        const __m512i a1 = _mm512_cvtepu32_epi64(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(a[r] + i + 8)));
        lo0[r] = _mm512_madd52lo_epu64(lo0[r], a0, b0);
        hi0[r] = _mm512_madd52hi_epu64(hi0[r], a0, b0);
        lo1[r] = _mm512_madd52lo_epu64(lo1[r], a1, b1);
        hi1[r] = _mm512_madd52hi_epu64(hi1[r], a1, b1);
      }
    }
    fold(lo0, hi0);
    fold(lo1, hi1);
  }
  for (size_t r = 0; r < R; ++r) {
    for (size_t t = i; t < n; ++t) {
      const uint64_t p = uint64_t{a[r][t]} * b[t];
      sum[r] += (p & kP) + (p >> 31);
    }
    out[r] = reduce64(sum[r]);
  }
  if (b_max != nullptr) {
    uint32_t m = std::max(*b_max, _mm512_reduce_max_epu32(vmax));
    for (size_t t = i; t < n; ++t) m = std::max(m, b[t]);
    *b_max = m;
  }
}

using DotManyFn = void (*)(std::span<const uint32_t* const>, const uint32_t*, size_t, uint32_t*, uint32_t*);

template <size_t... R>
DotManyFn pick_avx512(size_t count, bool ifma, std::index_sequence<R...>) {
  DotManyFn f = nullptr;
  ((f = (count == R + 1 ? (ifma ? &dot_mod_many_ifma<R + 1> : &dot_mod_many_avx512<R + 1>) : f)), ...);
  return f;
}

}  // namespace

void dot_mod_many(std::span<const uint32_t* const> a, const uint32_t* b, size_t n, uint32_t* out, uint32_t* b_max) {
  static const bool avx512 = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") != 0;
  }();
  static const bool ifma = avx512 && __builtin_cpu_supports("avx512ifma") != 0;
  if (a.empty()) {
    if (b_max != nullptr) *b_max = std::max(*b_max, n == 0 ? 0u : *std::max_element(b, b + n));
    return;
  }
  if (avx512 && a.size() <= kMaxDots) {
    return pick_avx512(a.size(), ifma, std::make_index_sequence<kMaxDots>())(a, b, n, out, b_max);
  }
  for (size_t first = 0; first < a.size(); first += kMaxDots) {
    const size_t count = std::min(kMaxDots, a.size() - first);
    dot_mod_many_portable(a.subspan(first, count), b, n, out + first, first == 0 ? b_max : nullptr);
  }
}

__attribute__((target_clones("avx512f", "avx2", "default"))) uint32_t max_abs_bits(const float* x, int64_t count) {
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

__attribute__((target_clones("avx512f", "avx2", "default"))) void quantize_blind(const float* x, int64_t count, float inv_scale,
                                                                      const uint32_t* pad, uint32_t* dst) {
  for (int64_t i = 0; i < count; ++i) {
    const int32_t q = quantize_value(x[i] * inv_scale);
    // q as a field element (p + q for q < 0: the uint32 sum wraps to exactly that; q >> 31 is all
    // ones then), plus the pad.
    dst[i] = add_mod(static_cast<uint32_t>(q) + (static_cast<uint32_t>(q >> 31) & kP), pad[i]);
  }
}

namespace {

// One loop per epilogue, so that each vectorizes without a branch inside. Each step rounds as the
// unfused sequence does (dequantize, store, add the residual, then Relu); the clones have no FMA,
// so nothing is contracted.
template <bool kSum, bool kRelu>
inline void unblind_loop(const uint32_t* y, const uint32_t* u, int64_t count, float scale, float bias, const float* residual,
                         float* dst) {
  for (int64_t i = 0; i < count; ++i) {
    const uint32_t v = sub_mod(y[i], u[i]);
    // Centred lift: v > p/2 stands for v - p.
    const int32_t s = v > kP / 2 ? static_cast<int32_t>(v - kP) : static_cast<int32_t>(v);
    float d = static_cast<float>(s) * scale + bias;
    if constexpr (kSum) d += residual[i];
    if constexpr (kRelu) d = d > 0.f ? d : 0.f;
    dst[i] = d;
  }
}

}  // namespace

__attribute__((target_clones("avx2", "default"))) void unblind_dequantize(const uint32_t* y, const uint32_t* u, int64_t count,
                                                                          float scale, float bias, const float* residual, bool relu,
                                                                          float* dst) {
  if (residual != nullptr) {
    relu ? unblind_loop<true, true>(y, u, count, scale, bias, residual, dst)
         : unblind_loop<true, false>(y, u, count, scale, bias, residual, dst);
  } else {
    relu ? unblind_loop<false, true>(y, u, count, scale, bias, residual, dst)
         : unblind_loop<false, false>(y, u, count, scale, bias, residual, dst);
  }
}

float quantization_scale(std::span<const float> x) {
  float m = 0.f;
  for (float v : x) m = std::max(m, std::fabs(v));
  return scale_for_max(m);
}

float scale_for_max(float max_abs) {
  return max_abs > 0.f ? std::max(max_abs / static_cast<float>(kQuantMax), FLT_MIN) : 1.f;
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
