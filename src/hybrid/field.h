// Arithmetic of hybrid mode (trusted, enclave side): the prime field Z_p with p = 2^31 - 1 in
// which the accelerator computes (see accel/accelerator.h for why this p), and the 8-bit
// quantization that maps the engine's float activations and weights onto it (Slalom §4).
//
//   * Field elements are uint32_t in [0, p). A product of two is < 2^62 and is reduced with the
//     Mersenne fold x mod p = (x & p) + (x >> 31) (twice, then one conditional subtraction), so
//     nothing here divides.
//   * Activations are quantized per tensor (scale = max|x| / 127, round to nearest, clamp to
//     [-127, 127]); weights per output channel (scale_c = max|W_c| / 127). Both are signed and
//     symmetric, so the integer product W_q·x_q over a reduction of K terms is bounded by
//     K·127·127, which is < p/2 for K < 66,572: the centred representative of the field result
//     (lift_centred) is then the exact signed integer product.
#pragma once

#include <cmath>
#include <cstdint>
#include <span>
#include <vector>

#include "accel/accelerator.h"

namespace tenet::hybrid {

inline constexpr uint32_t kP = accel::kFieldPrime;
inline constexpr int kQuantMax = 127;
// Largest reduction length for which |W_q·x_q| <= K·127·127 < p/2 (exact centred lift).
inline constexpr int64_t kMaxExactReduction = (int64_t{kP} / 2) / (int64_t{kQuantMax} * kQuantMax);

// x mod p for any x < 2^64.
inline uint32_t reduce64(uint64_t x) {
  x = (x & kP) + (x >> 31);  // < 2^33 + 2^31
  x = (x & kP) + (x >> 31);  // < 2^31 + 4
  return static_cast<uint32_t>(x >= kP ? x - kP : x);
}
// Both branch-free as an unsigned minimum (vpminud in the vectorized loops): for a, b < p,
// a + b - p wraps above a + b exactly when a + b < p; a - b wraps above a - b + p exactly when
// a >= b.
inline uint32_t add_mod(uint32_t a, uint32_t b) {
  const uint32_t s = a + b;  // < 2^32: no wrap since a, b < 2^31
  const uint32_t t = s - kP;
  return t < s ? t : s;
}
inline uint32_t sub_mod(uint32_t a, uint32_t b) {
  const uint32_t d = a - b;
  const uint32_t e = d + kP;
  return e < d ? e : d;
}
inline uint32_t mul_mod(uint32_t a, uint32_t b) { return reduce64(uint64_t{a} * b); }
// A signed integer as a field element.
inline uint32_t from_signed(int64_t v) {
  const int64_t m = v % static_cast<int64_t>(kP);
  return static_cast<uint32_t>(m < 0 ? m + kP : m);
}
// The representative of a in (-p/2, p/2).
inline int64_t lift_centred(uint32_t a) { return a > kP / 2 ? static_cast<int64_t>(a) - kP : static_cast<int64_t>(a); }

// out[r] = Σ_i a[r][i]·b[i] mod p for r < a.size() (at most kMaxDots), b read once: several
// Freivalds repetitions over one result or input in one pass. n < 2^32; AVX-512 where the CPU has it.
// The a[r][i] must be field elements; the b[i] may be any 32-bit values (nothing overflows, though
// the sums mean nothing then). With `b_max`, *b_max becomes max(*b_max, every b[i]) in the same
// pass: whether an untrusted b holds only field elements, without reading it again.
inline constexpr size_t kMaxDots = 8;
void dot_mod_many(std::span<const uint32_t* const> a, const uint32_t* b, size_t n, uint32_t* out, uint32_t* b_max = nullptr);

// One value already divided by its scale: clamped to [-127, 127], rounded half away from zero
// (branch-free, so the activation loops vectorize). Finite input only.
inline int32_t quantize_value(float scaled) {
  // Two selects, then ±0.5 by v's sign bit (for v = -0 that is -0.5, which truncates to 0 as +0.5
  // would) instead of a third select on v >= 0.
  const float lo = scaled < -127.f ? -127.f : scaled;
  const float v = lo > 127.f ? 127.f : lo;
  return static_cast<int32_t>(v + std::copysign(0.5f, v));
}

// The request-path loops of an outsourced layer, branch-free and compiled for AVX2 too:
//   max_abs_bits: the largest |x| as IEEE bits (>= 0x7f800000: some x is Inf or NaN);
//   quantize_blind: dst_i = quantize_value(x_i · inv_scale) as a field element, + pad_i mod p;
//   unblind_dequantize: dst_i = lift_centred(y_i - u_i mod p) · scale + bias (then, fused, the
//   post-ops Sum and Relu).
uint32_t max_abs_bits(const float* x, int64_t count);
void quantize_blind(const float* x, int64_t count, float inv_scale, const uint32_t* pad, uint32_t* dst);
// With `residual`, dst_i += residual_i after dequantizing; with `relu`, then max(dst_i, 0): a
// node's Sum and Relu post-ops in the same pass, rounded as ops::apply_post_ops would.
void unblind_dequantize(const uint32_t* y, const uint32_t* u, int64_t count, float scale, float bias, const float* residual, bool relu,
                        float* dst);

// Per-tensor symmetric 8-bit quantization: q = quantize_value(x / scale) with
// scale = scale_for_max(max|x|). Non-finite inputs are rejected by the caller.
float quantization_scale(std::span<const float> x);
// max_abs / 127, at least FLT_MIN (for subnormal values max_abs / 127 would make 1 / scale
// infinite, and a zero times it NaN; they all quantize to 0 then, as they would round there
// anyway); 1 when max_abs is 0.
float scale_for_max(float max_abs);
void quantize(std::span<const float> x, float scale, std::span<int8_t> q);

// Per-output-channel quantization of a weight matrix of `rows` rows (output channels) of
// `row_count` values each: int8 weights and one scale per row.
struct QuantizedWeights {
  std::vector<int8_t> values;
  std::vector<float> scales;
};
QuantizedWeights quantize_rows(std::span<const float> w, int64_t rows, int64_t row_count);

}  // namespace tenet::hybrid
