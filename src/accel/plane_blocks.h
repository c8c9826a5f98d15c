// The AVX-512 blocks of the CPU accelerator's byte planes (cpu_accelerator.cc, amx_conv.cc):
// splitting field elements into planes and combining the planes' int32 sums back into field
// elements, 16 pixels by 16 channels at a time, transposed in registers between NCHW and NHWC.
// Internal to src/accel; callers check for AVX-512 before calling.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>

#include <immintrin.h>

#include "accel/accelerator.h"

namespace tenet::accel::plane_blocks {

// The AVX-512 kernels of the plane split and combine, on 16x16 blocks of 32-bit lanes: 16 pixels
// by 16 channels, transposed in registers between the NCHW and NHWC layouts.
inline constexpr int64_t kBlock = 16;

// permutex2var indices of the transpose stages d = 8, 4, 2, 1: row r (bit d clear) keeps its
// columns with bit d clear and takes row r+d's there; row r+d the converse. Stage d swaps bit d
// of the row and column indices, so the four stages transpose.
alignas(64) inline constexpr std::array<std::array<std::array<int32_t, 16>, 2>, 4> kTransposeIndex = [] {
  std::array<std::array<std::array<int32_t, 16>, 2>, 4> t{};
  for (int stage = 0; stage < 4; ++stage) {
    const int d = 8 >> stage;
    for (int c = 0; c < 16; ++c) {
      t[stage][0][c] = (c & d) ? 16 + c - d : c;
      t[stage][1][c] = (c & d) ? 16 + c : c + d;
    }
  }
  return t;
}();

// Σ_i 2^30·2^{bits·i} mod p: the bias the AVX-512 combine adds to make every plane non-negative.
template <int kBits>
constexpr uint32_t combine_bias() {
  uint64_t sum = 0;
  for (int i = 0; i < (31 + kBits - 1) / kBits; ++i) sum += uint64_t{1} << ((30 + kBits * i) % 31);
  return static_cast<uint32_t>(sum % kFieldPrime);
}

// (GCC 12 warns inside its own AVX-512 headers, on _mm512_undefined_epi32: a false positive.)
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
__attribute__((target("avx512f"), always_inline)) inline void transpose_16x16(__m512i rows[16]) {
  for (int stage = 0; stage < 4; ++stage) {
    const int d = 8 >> stage;
    const __m512i lo = _mm512_load_si512(kTransposeIndex[stage][0].data());
    const __m512i hi = _mm512_load_si512(kTransposeIndex[stage][1].data());
    for (int r = 0; r < 16; ++r) {
      if (r & d) continue;
      const __m512i a = rows[r], b = rows[r + d];
      rows[r] = _mm512_permutex2var_epi32(a, lo, b);
      rows[r + d] = _mm512_permutex2var_epi32(a, hi, b);
    }
  }
}

// combine_planes for a block: acc rows are 16 pixels (stride acc_stride), 16 channels each; y
// rows are 16 channels (stride y_stride), 16 pixels each. Each plane gets 2^30 added instead of
// the sign fix (|acc| < 2^30, so acc + 2^30 is in [0, p)), and the bias is taken back at the end.
template <int kBits>
__attribute__((target("avx512f"), always_inline)) inline void combine_rows_avx512(const int32_t* acc, int64_t acc_stride,
                                                                               size_t plane_stride, __m512i rows[16],
                                                                               bool prefetch_next = true) {
  constexpr int kCount = (31 + kBits - 1) / kBits;
  const __m512i p = _mm512_set1_epi32(static_cast<int>(kFieldPrime));
  const __m512i half = _mm512_set1_epi32(1 << 30);
  const __m512i unbias = _mm512_set1_epi32(static_cast<int>(kFieldPrime - combine_bias<kBits>()));
  for (int k = 0; k < 16; ++k) {
    __m512i sum = _mm512_setzero_si512();
    for (int i = 0; i < kCount; ++i) {
      const int32_t* src = acc + k * acc_stride + static_cast<size_t>(i) * plane_stride;
      // The same channels of the next pixel tile: the loads are too many streams for the
      // hardware prefetchers.
      if (prefetch_next) _mm_prefetch(reinterpret_cast<const char*>(src + kBlock * acc_stride), _MM_HINT_T0);
      __m512i v = _mm512_add_epi32(_mm512_loadu_si512(src), half);  // [0, p)
      const int s = kBits * i;
      if (s == 0) {
        sum = v;
        continue;
      }
      // (v << s | v >> (31 - s)) & p: v·2^s mod p, still < p.
      v = _mm512_ternarylogic_epi32(_mm512_slli_epi32(v, s), _mm512_srli_epi32(v, 31 - s), p, 0xA8);
      sum = _mm512_add_epi32(sum, v);                                                // < 2p < 2^32
      sum = _mm512_add_epi32(_mm512_and_si512(sum, p), _mm512_srli_epi32(sum, 31));  // ≤ p
    }
    sum = _mm512_add_epi32(sum, unbias);
    sum = _mm512_add_epi32(_mm512_and_si512(sum, p), _mm512_srli_epi32(sum, 31));
    rows[k] = _mm512_min_epu32(sum, _mm512_sub_epi32(sum, p));  // p → 0
  }
  transpose_16x16(rows);
}

template <int kBits>
__attribute__((target("avx512f"))) inline void combine_block_avx512(const int32_t* acc, int64_t acc_stride,
                                                                     size_t plane_stride, uint32_t* y, int64_t y_stride) {
  __m512i rows[16];
  combine_rows_avx512<kBits>(acc, acc_stride, plane_stride, rows);
  for (int c = 0; c < 16; ++c) _mm512_storeu_si512(y + c * y_stride, rows[c]);
}

// The plane split for a block: x rows are 16 channels (stride x_stride), `len` <= 16 pixels each
// (the rest is not read); plane p goes to planes + p·plane_stride, rows of pixels (stride
// row_stride), 16 channel bytes each, for the first `len` pixels.
__attribute__((target("avx512f"))) inline void split_block_avx512(const uint32_t* x, int64_t x_stride, int bits,
                                                                   int plane_count, uint8_t* planes, size_t plane_stride,
                                                                   int64_t row_stride, int len = 16) {
  const __m512i mask = _mm512_set1_epi32(static_cast<int>((1u << bits) - 1));
  __m512i rows[16];
  if (len == 16) {
    for (int c = 0; c < 16; ++c) rows[c] = _mm512_loadu_si512(x + c * x_stride);
  } else {
    const __mmask16 lanes = static_cast<__mmask16>((1u << len) - 1);
    for (int c = 0; c < 16; ++c) rows[c] = _mm512_maskz_loadu_epi32(lanes, x + c * x_stride);
  }
  transpose_16x16(rows);
  for (int p = 0; p < plane_count; ++p) {
    uint8_t* dst = planes + static_cast<size_t>(p) * plane_stride;
    const __m128i shift = _mm_cvtsi32_si128(bits * p);
    for (int k = 0; k < len; ++k) {
      const __m512i v = _mm512_and_si512(_mm512_srl_epi32(rows[k], shift), mask);
      _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + k * row_stride), _mm512_cvtepi32_epi8(v));
    }
  }
}
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

}  // namespace tenet::accel::plane_blocks
