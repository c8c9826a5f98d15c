#include "crypto/gcm_vaes.h"

#include <cpuid.h>
#include <strings.h>

#include <cstring>

#include "core/x86_intrinsics.h"

// Only the functions below use AVX-512; the rest of tenet is built for the baseline ISA and calls in
// here after supported() said yes.
#define TENET_VAES __attribute__((target("avx512f,avx512bw,avx512vl,vaes,vpclmulqdq,aes,pclmul,ssse3,sse4.1")))

namespace tenet::crypto::gcm_vaes {
namespace {

// Software prefetch of the input: a long message streams from DRAM, and the rounds of one step
// leave the load ports idle long enough that the hardware prefetcher alone falls behind. Lines are
// asked for L1 1 KiB ahead and for L2 4 KiB ahead (measured here, DRAM to L2 on 2 threads:
// 12.5 GB/s without, 16.5 at 2 KiB into L1 alone, 17.3 with both; prefetchnta: 10.5).
constexpr size_t kPrefetchAhead = 1024;
constexpr size_t kPrefetchL2 = 4096;

// GHASH works on bit-reflected field elements. Loading a block and reversing its 16 bytes gives a
// value whose carry-less products need only a one-bit shift before reduction (Gueron and Kounavis,
// "Intel Carry-Less Multiplication Instruction and its Usage for Computing the GCM Mode", 2014).
TENET_VAES inline __m128i bswap128(__m128i x) {
  return _mm_shuffle_epi8(x, _mm_set_epi8(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15));
}
TENET_VAES inline __m512i bswap512(__m512i x) {
  return _mm512_shuffle_epi8(x, _mm512_broadcast_i32x4(_mm_set_epi8(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15)));
}

// Reduces the 256-bit carry-less product hi:lo of two reflected elements modulo
// x^128 + x^7 + x^2 + x + 1. Linear over GF(2), so sums of products can be reduced once.
TENET_VAES inline __m128i reduce(__m128i lo, __m128i hi) {
  // hi:lo <<= 1
  __m128i c_lo = _mm_srli_epi32(lo, 31), c_hi = _mm_srli_epi32(hi, 31);
  lo = _mm_slli_epi32(lo, 1);
  hi = _mm_slli_epi32(hi, 1);
  const __m128i carry_across = _mm_srli_si128(c_lo, 12);
  c_hi = _mm_slli_si128(c_hi, 4);
  c_lo = _mm_slli_si128(c_lo, 4);
  lo = _mm_or_si128(lo, c_lo);
  hi = _mm_or_si128(_mm_or_si128(hi, c_hi), carry_across);
  // first phase
  __m128i a = _mm_xor_si128(_mm_xor_si128(_mm_slli_epi32(lo, 31), _mm_slli_epi32(lo, 30)), _mm_slli_epi32(lo, 25));
  const __m128i a_hi = _mm_srli_si128(a, 4);
  lo = _mm_xor_si128(lo, _mm_slli_si128(a, 12));
  // second phase
  __m128i b = _mm_xor_si128(_mm_xor_si128(_mm_srli_epi32(lo, 1), _mm_srli_epi32(lo, 2)), _mm_srli_epi32(lo, 7));
  b = _mm_xor_si128(b, a_hi);
  return _mm_xor_si128(hi, _mm_xor_si128(lo, b));
}

TENET_VAES inline __m128i gfmul(__m128i a, __m128i b) {
  __m128i lo = _mm_clmulepi64_si128(a, b, 0x00);
  __m128i hi = _mm_clmulepi64_si128(a, b, 0x11);
  const __m128i mid = _mm_xor_si128(_mm_clmulepi64_si128(a, b, 0x10), _mm_clmulepi64_si128(a, b, 0x01));
  lo = _mm_xor_si128(lo, _mm_slli_si128(mid, 8));
  hi = _mm_xor_si128(hi, _mm_srli_si128(mid, 8));
  return reduce(lo, hi);
}

TENET_VAES inline __m128i xor_lanes(__m512i z) {
  const __m256i y = _mm256_xor_si256(_mm512_castsi512_si256(z), _mm512_extracti64x4_epi64(z, 1));
  return _mm_xor_si128(_mm256_castsi256_si128(y), _mm256_extracti128_si256(y, 1));
}

// AES key schedules with AESKEYGENASSIST (FIPS 197 §5.2): AES-256 (14 rounds, 15 round keys) and
// AES-128 (10 rounds, 11 round keys).
TENET_VAES inline __m128i expand_a(__m128i k, __m128i assist) {
  assist = _mm_shuffle_epi32(assist, 0xff);
  k = _mm_xor_si128(k, _mm_slli_si128(k, 4));
  k = _mm_xor_si128(k, _mm_slli_si128(k, 4));
  k = _mm_xor_si128(k, _mm_slli_si128(k, 4));
  return _mm_xor_si128(k, assist);
}
TENET_VAES inline __m128i expand_b(__m128i k_prev, __m128i k) {
  const __m128i assist = _mm_shuffle_epi32(_mm_aeskeygenassist_si128(k_prev, 0x00), 0xaa);
  k = _mm_xor_si128(k, _mm_slli_si128(k, 4));
  k = _mm_xor_si128(k, _mm_slli_si128(k, 4));
  k = _mm_xor_si128(k, _mm_slli_si128(k, 4));
  return _mm_xor_si128(k, assist);
}

TENET_VAES void expand_key256(const uint8_t key[32], __m128i rk[15]) {
  rk[0] = _mm_loadu_si128(reinterpret_cast<const __m128i*>(key));
  rk[1] = _mm_loadu_si128(reinterpret_cast<const __m128i*>(key + 16));
#define TENET_AES256_ROUND(i, rcon)                                                  \
  rk[i] = expand_a(rk[i - 2], _mm_aeskeygenassist_si128(rk[i - 1], rcon));           \
  if ((i) + 1 < 15) rk[(i) + 1] = expand_b(rk[i], rk[i - 1]);
  TENET_AES256_ROUND(2, 0x01)
  TENET_AES256_ROUND(4, 0x02)
  TENET_AES256_ROUND(6, 0x04)
  TENET_AES256_ROUND(8, 0x08)
  TENET_AES256_ROUND(10, 0x10)
  TENET_AES256_ROUND(12, 0x20)
  TENET_AES256_ROUND(14, 0x40)
#undef TENET_AES256_ROUND
}

TENET_VAES void expand_key128(const uint8_t key[16], __m128i rk[11]) {
  rk[0] = _mm_loadu_si128(reinterpret_cast<const __m128i*>(key));
#define TENET_AES128_ROUND(i, rcon) rk[i] = expand_a(rk[i - 1], _mm_aeskeygenassist_si128(rk[i - 1], rcon));
  TENET_AES128_ROUND(1, 0x01)
  TENET_AES128_ROUND(2, 0x02)
  TENET_AES128_ROUND(3, 0x04)
  TENET_AES128_ROUND(4, 0x08)
  TENET_AES128_ROUND(5, 0x10)
  TENET_AES128_ROUND(6, 0x20)
  TENET_AES128_ROUND(7, 0x40)
  TENET_AES128_ROUND(8, 0x80)
  TENET_AES128_ROUND(9, 0x1b)
  TENET_AES128_ROUND(10, 0x36)
#undef TENET_AES128_ROUND
}

TENET_VAES inline __m128i aes_block(const __m128i* rk, int rounds, __m128i x) {
  x = _mm_xor_si128(x, rk[0]);
  for (int r = 1; r < rounds; ++r) x = _mm_aesenc_si128(x, rk[r]);
  return _mm_aesenclast_si128(x, rk[rounds]);
}

// Absorbs `n` bytes into the GHASH value `y` one block at a time (the last one zero-padded).
TENET_VAES __m128i ghash_blocks(__m128i y, __m128i h, const uint8_t* p, size_t n) {
  for (; n >= 16; n -= 16, p += 16) y = gfmul(_mm_xor_si128(y, bswap128(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)))), h);
  if (n > 0) {
    alignas(16) uint8_t last[16] = {};
    std::memcpy(last, p, n);
    y = gfmul(_mm_xor_si128(y, bswap128(_mm_load_si128(reinterpret_cast<const __m128i*>(last)))), h);
  }
  return y;
}

// CPUID leaf 1 and 7 feature bits, and XCR0 for the OS saving the AVX-512 register state.
bool detect() {
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (__get_cpuid(1, &a, &b, &c, &d) == 0) return false;
  const bool aes = (c >> 25) & 1, pclmul = (c >> 1) & 1, osxsave = (c >> 27) & 1;
  if (!aes || !pclmul || !osxsave) return false;
  unsigned xcr0_lo = 0, xcr0_hi = 0;
  asm volatile("xgetbv" : "=a"(xcr0_lo), "=d"(xcr0_hi) : "c"(0));
  if ((xcr0_lo & 0xE6) != 0xE6) return false;  // SSE, AVX, opmask, ZMM_Hi256, Hi16_ZMM state
  if (__get_cpuid_count(7, 0, &a, &b, &c, &d) == 0) return false;
  const bool avx512f = (b >> 16) & 1, avx512bw = (b >> 30) & 1, avx512vl = (b >> 31) & 1;
  const bool vaes = (c >> 9) & 1, vpclmulqdq = (c >> 10) & 1;
  return avx512f && avx512bw && avx512vl && vaes && vpclmulqdq;
}

template <typename T>
TENET_VAES inline T* as(uint8_t* p) {
  return reinterpret_cast<T*>(p);
}
template <typename T>
TENET_VAES inline const T* as(const uint8_t* p) {
  return reinterpret_cast<const T*>(p);
}

TENET_VAES void start_impl(Context::State& st, const uint8_t* key, size_t key_bytes, const uint8_t iv[12], const uint8_t* aad,
                           size_t aad_len) {
  __m128i rk[15] = {};
  const int rounds = key_bytes == 16 ? 10 : 14;
  if (rounds == 10) {
    expand_key128(key, rk);
  } else {
    expand_key256(key, rk);
  }
  st.rounds = rounds;
  for (int r = 0; r < 15; ++r) _mm_store_si128(as<__m128i>(st.round_keys[r]), rk[r]);
  // H = E_K(0^128); powers H^1..H^16 by repeated field multiplication.
  const __m128i h = bswap128(aes_block(rk, rounds, _mm_setzero_si128()));
  __m128i power = h;
  for (int k = 1; k <= 16; ++k) {
    _mm_store_si128(as<__m128i>(st.h_powers[16 - k]), power);
    power = gfmul(power, h);
  }
  // J0 = IV || 0^31 || 1 (SP 800-38D §7.1, 96-bit IV): the tag is masked with E_K(J0) and the text
  // is encrypted from inc32(J0) on.
  alignas(16) uint8_t j0[16] = {};
  std::memcpy(j0, iv, 12);
  j0[15] = 1;
  const __m128i j0v = _mm_load_si128(as<__m128i>(j0));
  _mm_store_si128(as<__m128i>(st.tag_mask), aes_block(rk, rounds, j0v));
  _mm_store_si128(as<__m128i>(st.counter), _mm_add_epi32(bswap128(j0v), _mm_set_epi32(0, 0, 0, 1)));
  _mm_store_si128(as<__m128i>(st.ghash), ghash_blocks(_mm_setzero_si128(), h, aad, aad_len));
  st.aad_bytes = aad_len;
  st.text_bytes = 0;
  explicit_bzero(rk, sizeof(rk));
}

// GHASH of sixteen ciphertext blocks into `y`: (Y ^ C0)·H^16 ^ C1·H^15 ^ ... ^ C15·H, with the
// products summed unreduced and one reduction at the end.
TENET_VAES inline __m128i ghash16(__m128i y, const __m512i text[4], const __m512i hp[4]) {
  __m512i lo = _mm512_setzero_si512(), mid = lo, hi = lo;
  for (int j = 0; j < 4; ++j) {
    __m512i x = bswap512(text[j]);
    if (j == 0) x = _mm512_xor_si512(x, _mm512_zextsi128_si512(y));
    lo = _mm512_xor_si512(lo, _mm512_clmulepi64_epi128(x, hp[j], 0x00));
    hi = _mm512_xor_si512(hi, _mm512_clmulepi64_epi128(x, hp[j], 0x11));
    mid = _mm512_ternarylogic_epi64(mid, _mm512_clmulepi64_epi128(x, hp[j], 0x10), _mm512_clmulepi64_epi128(x, hp[j], 0x01), 0x96);
  }
  __m128i l = xor_lanes(lo), m = xor_lanes(mid), h = xor_lanes(hi);
  l = _mm_xor_si128(l, _mm_slli_si128(m, 8));
  h = _mm_xor_si128(h, _mm_srli_si128(m, 8));
  return reduce(l, h);
}

// Counter mode on sixteen blocks per step (GCM's and plain CTR's): counter blocks are kept
// byte-reflected, four per register, so that the big-endian 32-bit counter is dword 0 of each
// lane and inc32 is a 32-bit add that wraps mod 2^32 without touching the IV (SP 800-38D).
TENET_VAES inline __m512i counters4(__m128i first) {
  return _mm512_add_epi32(_mm512_broadcast_i32x4(first), _mm512_set_epi32(0, 0, 0, 3, 0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0, 0));
}
// The next sixteen counter blocks whitened with round key 0 into ks; ctr4 advances by sixteen.
TENET_VAES inline void whitened_counters16(__m512i& ctr4, const __m512i rk0, __m512i ks[4]) {
  const __m512i four = _mm512_broadcast_i32x4(_mm_set_epi32(0, 0, 0, 4));
  for (int j = 0; j < 4; ++j) {
    ks[j] = _mm512_xor_si512(bswap512(ctr4), rk0);
    ctr4 = _mm512_add_epi32(ctr4, four);
  }
}
// Rounds 1 .. kRounds-1 on sixteen blocks (the last round is the caller's, fused with its XOR).
template <int kRounds>
TENET_VAES inline void middle_rounds16(__m512i ks[4], const __m512i rk[15]) {
  for (int r = 1; r < kRounds; ++r)
    for (int j = 0; j < 4; ++j) ks[j] = _mm512_aesenc_epi128(ks[j], rk[r]);
}

// Where the text of a 256-byte step goes: stored (encrypt, decrypt), or consumed in registers
// (decrypt_dot_f32).
struct StoreText {
  uint8_t* out;
  TENET_VAES inline void step(const __m512i res[4]) {
    for (int j = 0; j < 4; ++j) _mm512_storeu_si512(out + 64 * j, res[j]);
    out += 256;
  }
  void tail(const uint8_t* block, size_t len) {
    std::memcpy(out, block, len);
    out += len;
  }
};
// A step is 64 floats of one row: lane j of the row's partial sums becomes fma(x[i + j], w[i + j],
// lane j), one rounding (the gemv kernel's order and roundings, bit for bit). After k/64 steps the
// next row's lanes start.
struct DotText {
  const float* x;
  size_t k;
  float* lanes;  // the current row's 64 partial sums, kept in L1 (a register for each would spill the rounds' keys)
  size_t i;
  TENET_VAES inline void step(const __m512i res[4]) {
    for (int j = 0; j < 4; ++j) {
      const __m512 sum = _mm512_fmadd_ps(_mm512_loadu_ps(x + i + 16 * j), _mm512_castsi512_ps(res[j]), _mm512_loadu_ps(lanes + 16 * j));
      _mm512_storeu_ps(lanes + 16 * j, sum);
    }
    i += 64;
    if (i == k) {
      lanes += 64;
      i = 0;
    }
  }
  void tail(const uint8_t*, size_t) {}  // never called: the text is whole steps (k is a multiple of 64)
};

// kRounds is a template parameter so that the round loop is fully unrolled with the round keys in
// registers (10 for AES-128, 14 for AES-256). The text goes to `sink`: step() for each 256-byte
// step, tail() for the last n mod 256 bytes, a block at a time.
template <bool kEncrypt, int kRounds, typename Sink>
TENET_VAES void crypt_impl(Context::State& st, const uint8_t* in, size_t n, Sink& sink) {
  st.text_bytes += n;
  __m512i rk[15];
  for (int r = 0; r < 15; ++r) rk[r] = _mm512_broadcast_i32x4(_mm_load_si128(as<__m128i>(st.round_keys[r])));
  const __m512i hp[4] = {_mm512_load_si512(st.h_powers[0]), _mm512_load_si512(st.h_powers[4]), _mm512_load_si512(st.h_powers[8]),
                         _mm512_load_si512(st.h_powers[12])};
  __m128i y = _mm_load_si128(as<__m128i>(st.ghash));
  __m512i ctr4 = counters4(_mm_load_si128(as<__m128i>(st.counter)));

  for (; n >= 256; n -= 256, in += 256) {
    __m512i text[4], ks[4];
    for (int j = 0; j < 4; ++j) _mm_prefetch(reinterpret_cast<const char*>(in + kPrefetchAhead + 64 * j), _MM_HINT_T0);
    for (int j = 0; j < 4; ++j) _mm_prefetch(reinterpret_cast<const char*>(in + kPrefetchL2 + 64 * j), _MM_HINT_T1);
    for (int j = 0; j < 4; ++j) {
      text[j] = _mm512_loadu_si512(in + 64 * j);
      // The register now holds the only copy the step uses: GHASH and the XOR below both read it,
      // so the compiler may not load `in` again (a rewrite of untrusted memory between the two
      // would otherwise authenticate one text and decrypt another). Spills go to the stack.
      asm("" : "+v"(text[j]));
    }
    whitened_counters16(ctr4, rk[0], ks);
    // Decrypting, GHASH reads the input and overlaps the AES rounds; encrypting, it reads the output.
    if constexpr (!kEncrypt) y = ghash16(y, text, hp);
    middle_rounds16<kRounds>(ks, rk);
    __m512i res[4];
    for (int j = 0; j < 4; ++j) res[j] = _mm512_xor_si512(_mm512_aesenclast_epi128(ks[j], rk[kRounds]), text[j]);
    sink.step(res);
    if constexpr (kEncrypt) y = ghash16(y, res, hp);
  }
  __m128i ctr = _mm512_castsi512_si128(ctr4);
  explicit_bzero(rk, sizeof(rk));

  // Remaining whole blocks, then at most one partial block (which ends the message).
  __m128i rk1[15];
  for (int r = 0; r < 15; ++r) rk1[r] = _mm_load_si128(as<__m128i>(st.round_keys[r]));
  const __m128i h1 = _mm_load_si128(as<__m128i>(st.h_powers[15]));
  while (n > 0) {
    const size_t len = n >= 16 ? 16 : n;
    const __m128i ks = aes_block(rk1, kRounds, bswap128(ctr));
    ctr = _mm_add_epi32(ctr, _mm_set_epi32(0, 0, 0, 1));
    alignas(16) uint8_t block[16] = {};
    std::memcpy(block, in, len);
    const __m128i input = _mm_load_si128(as<__m128i>(block));
    _mm_store_si128(as<__m128i>(block), _mm_xor_si128(input, ks));
    sink.tail(block, len);
    std::memset(block + len, 0, 16 - len);  // GHASH pads the last ciphertext block with zeros
    const __m128i cipher = kEncrypt ? _mm_load_si128(as<__m128i>(block)) : input;
    y = gfmul(_mm_xor_si128(y, bswap128(cipher)), h1);
    n -= len;
    in += len;
  }
  _mm_store_si128(as<__m128i>(st.ghash), y);
  _mm_store_si128(as<__m128i>(st.counter), ctr);
  explicit_bzero(rk1, sizeof(rk1));
}

TENET_VAES void dot_impl(Context::State& st, const uint8_t* in, size_t rows, size_t k, const float* x, float* lanes) {
  DotText sink;
  sink.x = x;
  sink.k = k;
  sink.lanes = lanes;
  sink.i = 0;
  std::memset(lanes, 0, rows * 64 * sizeof(float));
  if (st.rounds == 10) {
    crypt_impl<false, 10>(st, in, rows * k * sizeof(float), sink);
  } else {
    crypt_impl<false, 14>(st, in, rows * k * sizeof(float), sink);
  }
}

TENET_VAES void finish_impl(Context::State& st, uint8_t tag[16]) {
  const __m128i h1 = _mm_load_si128(as<__m128i>(st.h_powers[15]));
  __m128i y = _mm_load_si128(as<__m128i>(st.ghash));
  // len(A) || len(C) in bits, each a big-endian 64-bit integer; byte-reflected that is (len(C), len(A)).
  const __m128i lengths = _mm_set_epi64x(static_cast<long long>(st.aad_bytes * 8), static_cast<long long>(st.text_bytes * 8));
  y = bswap128(gfmul(_mm_xor_si128(y, lengths), h1));
  _mm_storeu_si128(reinterpret_cast<__m128i*>(tag), _mm_xor_si128(y, _mm_load_si128(as<__m128i>(st.tag_mask))));
}

TENET_VAES void ctr_impl(const uint8_t key[32], const uint8_t iv[16], uint64_t first_block, uint8_t* out, size_t n) {
  __m128i rk1[15];
  expand_key256(key, rk1);
  __m512i rk[15];
  for (int r = 0; r < 15; ++r) rk[r] = _mm512_broadcast_i32x4(rk1[r]);
  const __m128i start = _mm_add_epi32(bswap128(_mm_loadu_si128(reinterpret_cast<const __m128i*>(iv))),
                                      _mm_set_epi32(0, 0, 0, static_cast<int>(static_cast<uint32_t>(first_block))));
  __m512i ctr4 = counters4(start);
  for (; n >= 256; n -= 256, out += 256) {
    __m512i ks[4];
    whitened_counters16(ctr4, rk[0], ks);
    middle_rounds16<14>(ks, rk);
    for (int j = 0; j < 4; ++j) _mm512_storeu_si512(out + 64 * j, _mm512_aesenclast_epi128(ks[j], rk[14]));
  }
  __m128i ctr = _mm512_castsi512_si128(ctr4);
  while (n > 0) {
    const size_t len = n >= 16 ? 16 : n;
    alignas(16) uint8_t block[16];
    _mm_store_si128(reinterpret_cast<__m128i*>(block), aes_block(rk1, 14, bswap128(ctr)));
    ctr = _mm_add_epi32(ctr, _mm_set_epi32(0, 0, 0, 1));
    std::memcpy(out, block, len);
    explicit_bzero(block, sizeof(block));
    n -= len;
    out += len;
  }
  explicit_bzero(rk1, sizeof(rk1));
  explicit_bzero(rk, sizeof(rk));
}

}  // namespace

void ctr_keystream(const uint8_t key[32], const uint8_t iv[16], uint64_t first_block, uint8_t* out, size_t n) {
  ctr_impl(key, iv, first_block, out, n);
}

bool supported() {
  static const bool ok = detect();
  return ok;
}

void Context::start(const uint8_t* key, size_t key_bytes, const uint8_t iv[12], const uint8_t* aad, size_t aad_len) {
  start_impl(state_, key, key_bytes, iv, aad, aad_len);
}
void Context::encrypt(const uint8_t* in, uint8_t* out, size_t n) {
  StoreText sink{out};
  if (state_.rounds == 10) {
    crypt_impl<true, 10>(state_, in, n, sink);
  } else {
    crypt_impl<true, 14>(state_, in, n, sink);
  }
}
void Context::decrypt(const uint8_t* in, uint8_t* out, size_t n) {
  StoreText sink{out};
  if (state_.rounds == 10) {
    crypt_impl<false, 10>(state_, in, n, sink);
  } else {
    crypt_impl<false, 14>(state_, in, n, sink);
  }
}
void Context::decrypt_dot_f32(const uint8_t* in, size_t rows, size_t k, const float* x, float* lanes) {
  dot_impl(state_, in, rows, k, x, lanes);
}
void Context::finish(uint8_t tag[16]) { finish_impl(state_, tag); }
void Context::seek_counter(uint32_t next_counter) { std::memcpy(state_.counter, &next_counter, 4); }
void Context::wipe() { explicit_bzero(&state_, sizeof(state_)); }

}  // namespace tenet::crypto::gcm_vaes
