// Unit tests of hybrid mode's building blocks: Z_p arithmetic, quantization, the pad PRG, the
// exact loops (against accel::reference_linear, the accelerator's oracle), Freivalds checks and
// the mask vault's refusals.
#include <gtest/gtest.h>
#include <openssl/evp.h>

#include <cfloat>
#include <cmath>
#include <random>
#include <set>

#include "crypto/crypto.h"
#include "hybrid/field.h"
#include "hybrid/freivalds.h"
#include "hybrid/host_mask_store.h"
#include "hybrid/mask_vault.h"
#include "hybrid/pad_prg.h"
#include "hybrid/trusted_linear.h"

namespace tenet::hybrid {
namespace {

TEST(HybridField, ReduceAndMultiplyMatchWideArithmetic) {
  std::mt19937_64 rng(7);
  for (int i = 0; i < 100000; ++i) {
    const uint64_t x = rng();
    EXPECT_EQ(reduce64(x), x % kP);
    const uint32_t a = static_cast<uint32_t>(rng() % kP), b = static_cast<uint32_t>(rng() % kP);
    EXPECT_EQ(mul_mod(a, b), static_cast<uint32_t>((static_cast<unsigned __int128>(a) * b) % kP));
    EXPECT_EQ(add_mod(a, b), static_cast<uint32_t>((uint64_t{a} + b) % kP));
    EXPECT_EQ(sub_mod(a, b), static_cast<uint32_t>((uint64_t{a} + kP - b) % kP));
  }
  const uint32_t edges[] = {0u, 1u, 2u, kP / 2, kP / 2 + 1, kP - 2, kP - 1};
  for (uint32_t a : edges) {
    for (uint32_t b : edges) {
      EXPECT_EQ(add_mod(a, b), static_cast<uint32_t>((uint64_t{a} + b) % kP)) << a << " + " << b;
      EXPECT_EQ(sub_mod(a, b), static_cast<uint32_t>((uint64_t{a} + kP - b) % kP)) << a << " - " << b;
    }
  }
  EXPECT_EQ(reduce64(~uint64_t{0}), static_cast<uint32_t>(~uint64_t{0} % kP));
  EXPECT_EQ(reduce64(kP), 0u);
  EXPECT_EQ(mul_mod(kP - 1, kP - 1), 1u);  // (-1)^2
}

TEST(HybridField, DotAndCentredLift) {
  std::mt19937_64 rng(8);
  std::vector<uint32_t> a(1001), b(1001);
  unsigned __int128 want = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    a[i] = static_cast<uint32_t>(rng() % kP);
    b[i] = static_cast<uint32_t>(rng() % kP);
    want += static_cast<unsigned __int128>(a[i]) * b[i];
  }
  const uint32_t* rows[] = {a.data()};
  uint32_t got = 0;
  dot_mod_many(rows, b.data(), a.size(), &got);
  EXPECT_EQ(got, static_cast<uint32_t>(want % kP));
  for (int64_t v : {int64_t{0}, int64_t{1}, int64_t{-1}, int64_t{123456789}, int64_t{-987654321}, kMaxExactReduction * 127 * 127,
                    -kMaxExactReduction * 127 * 127}) {
    EXPECT_EQ(lift_centred(from_signed(v)), v) << v;
  }
  // The exactness bound: K·127² stays below p/2, one more term would not.
  EXPECT_LT(kMaxExactReduction * 127 * 127, int64_t{kP} / 2);
  EXPECT_GE((kMaxExactReduction + 1) * 127 * 127, int64_t{kP} / 2);
}

// The request path's vectorized loops against the textbook arithmetic, element by element: random
// values and the edges (0, ±0.5 steps, ±127 and beyond, -0, p - 1, the centred lift's turning
// point), every tail length around a vector, each epilogue.
TEST(HybridField, RequestLoopsMatchScalarArithmetic) {
  const auto quantized = [](float scaled) {  // clamp, then round half away from zero
    const float v = scaled < -127.f ? -127.f : (scaled > 127.f ? 127.f : scaled);
    return static_cast<int32_t>(v >= 0.f ? std::floor(v + 0.5f) : -std::floor(-v + 0.5f));
  };
  const auto as_field = [](int64_t v) { return static_cast<uint32_t>(((v % kP) + kP) % kP); };
  std::mt19937_64 rng(21);
  std::uniform_real_distribution<float> uni(-140.f, 140.f);
  const float edges[] = {0.f, -0.f, 0.5f, -0.5f, 0.49999997f, -0.49999997f, 1.5f, -1.5f, 126.5f, -126.5f,
                         127.f, -127.f, 127.4f, -127.6f, 1e30f, -1e30f, 1e-40f, -1e-40f};
  for (int64_t n : {int64_t{0}, int64_t{1}, int64_t{7}, int64_t{16}, int64_t{17}, int64_t{33}, int64_t{1000}}) {
    std::vector<float> x(static_cast<size_t>(n)), residual(static_cast<size_t>(n));
    std::vector<uint32_t> pad(static_cast<size_t>(n)), y(static_cast<size_t>(n)), u(static_cast<size_t>(n));
    for (size_t i = 0; i < x.size(); ++i) {
      x[i] = i < std::size(edges) ? edges[i] : uni(rng);
      residual[i] = uni(rng);
      pad[i] = i % 5 == 0 ? kP - 1 : static_cast<uint32_t>(rng() % kP);
      y[i] = i % 7 == 0 ? kP - 1 : static_cast<uint32_t>(rng() % kP);
      u[i] = i % 3 == 0 ? (i % 2 == 0 ? kP / 2 : y[i]) : static_cast<uint32_t>(rng() % kP);
    }
    // quantize_blind with scale 1 (x is the scaled value) and with 0.5.
    for (float inv_scale : {1.f, 0.5f}) {
      std::vector<uint32_t> got(x.size());
      quantize_blind(x.data(), n, inv_scale, pad.data(), got.data());
      for (size_t i = 0; i < x.size(); ++i) {
        const int32_t q = quantized(x[i] * inv_scale);
        EXPECT_EQ(quantize_value(x[i] * inv_scale), q) << x[i];
        EXPECT_EQ(got[i], as_field(int64_t{q} + pad[i])) << "n " << n << " x " << x[i];
      }
    }
    const float scale = 0.001f, bias = -0.25f;
    for (bool sum : {false, true}) {
      for (bool relu : {false, true}) {
        std::vector<float> got(x.size());
        unblind_dequantize(y.data(), u.data(), n, scale, bias, sum ? residual.data() : nullptr, relu, got.data());
        for (size_t i = 0; i < x.size(); ++i) {
          const int64_t d = (int64_t{y[i]} - u[i] + kP) % kP;
          const int64_t centred = d > kP / 2 ? d - kP : d;
          float want = static_cast<float>(centred) * scale + bias;
          if (sum) want += residual[i];
          if (relu) want = want > 0.f ? want : 0.f;
          EXPECT_EQ(got[i], want) << "n " << n << " i " << i << " sum " << sum << " relu " << relu;
        }
      }
    }
  }
}

// Several dot products against one vector in one pass: exact against 128-bit arithmetic for every
// count of rows the SIMD path specializes (and one beyond), every tail length, random and maximal
// (p - 1) operands.
TEST(HybridField, DotManyMatchesExactSums) {
  std::mt19937_64 rng(9);
  // 32,768 and beyond: the IFMA path folds its accumulators every 2,048 steps of 16.
  for (size_t n : {size_t{0}, size_t{1}, size_t{15}, size_t{16}, size_t{17}, size_t{1000}, size_t{4099}, size_t{32768},
                   size_t{70001}}) {
    for (size_t rows = 1; rows <= kMaxDots + 1; ++rows) {
      for (bool maximal : {false, true}) {
        std::vector<std::vector<uint32_t>> a(rows, std::vector<uint32_t>(n));
        std::vector<uint32_t> b(n);
        for (size_t i = 0; i < n; ++i) b[i] = maximal ? kP - 1 : static_cast<uint32_t>(rng() % kP);
        std::vector<const uint32_t*> ptrs;
        for (auto& r : a) {
          for (uint32_t& v : r) v = maximal ? kP - 1 : static_cast<uint32_t>(rng() % kP);
          ptrs.push_back(r.data());
        }
        std::vector<uint32_t> got(rows, 12345);
        dot_mod_many(ptrs, b.data(), n, got.data());
        // The same sums with the largest b on the side, and that largest b.
        std::vector<uint32_t> got_max(rows, 12345);
        uint32_t b_max = 7;
        dot_mod_many(ptrs, b.data(), n, got_max.data(), &b_max);
        EXPECT_EQ(got_max, got);
        EXPECT_EQ(b_max, std::max<uint32_t>(7, n == 0 ? 0 : *std::max_element(b.begin(), b.end())));
        if (n > 0) {
          std::vector<uint32_t> hostile = b;
          hostile[n - 1 - n / 3] = 0xFFFFFFF0u;
          uint32_t hostile_max = 0;
          dot_mod_many(ptrs, hostile.data(), n, got_max.data(), &hostile_max);
          EXPECT_EQ(hostile_max, 0xFFFFFFF0u) << "n " << n << " rows " << rows;
        }
        for (size_t r = 0; r < rows; ++r) {
          unsigned __int128 want = 0;
          for (size_t i = 0; i < n; ++i) want += static_cast<unsigned __int128>(a[r][i]) * b[i];
          EXPECT_EQ(got[r], static_cast<uint32_t>(want % kP)) << "n " << n << " rows " << rows << " row " << r;
        }
      }
    }
  }
}

TEST(HybridField, AllFieldElements) {
  std::vector<uint32_t> y(100, kP - 1);
  EXPECT_TRUE(accel::all_field_elements(y));
  EXPECT_TRUE(accel::all_field_elements(std::span(y).first(0)));
  for (uint32_t bad : {kP, kP + 1, uint32_t{1} << 31, ~uint32_t{0}}) {
    for (size_t at : {size_t{0}, size_t{37}, size_t{99}}) {
      std::vector<uint32_t> z = y;
      z[at] = bad;
      EXPECT_FALSE(accel::all_field_elements(z)) << bad << " at " << at;
    }
  }
}

TEST(HybridField, Quantization) {
  const std::vector<float> x = {0.f, 1.f, -2.f, 0.5f, 1.99f};
  const float s = quantization_scale(x);
  EXPECT_FLOAT_EQ(s, 2.f / 127.f);
  std::vector<int8_t> q(x.size());
  quantize(x, s, q);
  EXPECT_EQ(q, (std::vector<int8_t>{0, 64, -127, 32, 126}));  // 63.5 rounds away from zero
  EXPECT_EQ(quantize_value(-63.5f), -64);
  EXPECT_EQ(quantize_value(-0.49f), 0);
  EXPECT_EQ(quantize_value(1e30f), 127);
  EXPECT_EQ(quantize_value(-1e30f), -127);
  EXPECT_FLOAT_EQ(quantization_scale(std::vector<float>(4, 0.f)), 1.f);
  // Subnormal magnitudes (activations, and weight rows through quantization_scale) get a scale
  // whose inverse is finite.
  EXPECT_EQ(scale_for_max(1e-42f), FLT_MIN);
  EXPECT_EQ(quantization_scale(std::vector<float>{0.f, -1e-42f}), FLT_MIN);
  EXPECT_TRUE(std::isfinite(1.f / scale_for_max(1e-44f)));
  EXPECT_EQ(scale_for_max(127.f), 1.f);
  EXPECT_EQ(scale_for_max(0.f), 1.f);
  QuantizedWeights w = quantize_rows(std::vector<float>{1.f, -0.5f, 0.f, 0.f, 4.f, 2.f}, 3, 2);
  EXPECT_EQ(w.values, (std::vector<int8_t>{127, -64, 0, 0, 127, 64}));
  EXPECT_FLOAT_EQ(w.scales[0], 1.f / 127.f);
  EXPECT_FLOAT_EQ(w.scales[1], 1.f);
  EXPECT_FLOAT_EQ(w.scales[2], 4.f / 127.f);
}

TEST(HybridField, RepetitionsForBits) {
  EXPECT_EQ(repetitions_for_bits(0), 0);
  EXPECT_EQ(repetitions_for_bits(1), 1);
  EXPECT_EQ(repetitions_for_bits(29), 1);
  EXPECT_EQ(repetitions_for_bits(30), 2);  // one repetition gives 29.9999... bits, not 30
  EXPECT_EQ(repetitions_for_bits(40), 2);
  EXPECT_EQ(repetitions_for_bits(59), 2);
  EXPECT_EQ(repetitions_for_bits(60), 3);
  EXPECT_EQ(repetitions_for_bits(128), 5);
}

TEST(HybridPadPrg, DeterministicDistinctAndInField) {
  std::array<uint8_t, 32> key{};
  key[0] = 1;
  PadPrg prg(key);
  std::vector<uint32_t> a(4096), b(4096), c(4096), d(4096);
  ASSERT_TRUE(prg.generate(3, 10, a).ok());
  ASSERT_TRUE(prg.generate(3, 10, b).ok());
  ASSERT_TRUE(prg.generate(3, 11, c).ok());
  ASSERT_TRUE(prg.generate(4, 10, d).ok());
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
  EXPECT_NE(a, d);
  double mean = 0;
  for (uint32_t v : a) {
    EXPECT_LT(v, kP);
    mean += static_cast<double>(v) / a.size();
  }
  // Uniform on [0, p): mean p/2, standard error p/sqrt(12·4096) ~ 0.0045 p.
  EXPECT_NEAR(mean / kP, 0.5, 0.03);
  std::array<uint8_t, 32> other = key;
  other[1] = 1;
  PadPrg prg2(other);
  ASSERT_TRUE(prg2.generate(3, 10, b).ok());
  EXPECT_NE(a, b);
}

// The pad is AES-256-CTR of zeros under the key, IV layer || counter || 0, masked to 31 bits:
// exactly OpenSSL's key stream, whichever AES implementation the CPU gets (a pad computed here
// for W·r must equal the one the request draws, and stay the same across tenet builds).
TEST(HybridPadPrg, IsTheAesCtrStreamMaskedTo31Bits) {
  std::array<uint8_t, 32> key{};
  for (size_t i = 0; i < key.size(); ++i) key[i] = static_cast<uint8_t>(7 * i + 3);
  PadPrg prg(key);
  for (size_t words : {size_t{1}, size_t{5}, size_t{4096}, size_t{4096 * 4 + 3}, size_t{100000}}) {
    std::vector<uint32_t> pad(words);
    ASSERT_TRUE(prg.generate(0x01020304u, 0x1122334455667788ull, pad).ok());
    const uint8_t iv[16] = {1, 2, 3, 4, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0, 0, 0, 0};
    std::vector<uint32_t> want(words);
    EVP_CIPHER_CTX* ctx = EVP_CIPHER_CTX_new();
    int len = 0;
    const std::vector<uint8_t> zeros(words * 4, 0);
    ASSERT_EQ(EVP_EncryptInit_ex(ctx, EVP_aes_256_ctr(), nullptr, key.data(), iv), 1);
    ASSERT_EQ(EVP_EncryptUpdate(ctx, reinterpret_cast<uint8_t*>(want.data()), &len, zeros.data(), static_cast<int>(zeros.size())), 1);
    EVP_CIPHER_CTX_free(ctx);
    for (uint32_t& v : want) v &= kP;
    EXPECT_EQ(pad, want) << words << " words";
  }
}

// A range of the pad, from any word on, is the same words as the whole pad (where no word is p),
// with tenet's VAES AES-CTR and with OpenSSL's; a range holding a word equal to p says so.
TEST(HybridPadPrg, RangesAreSlicesOfThePad) {
  std::array<uint8_t, 32> key{};
  for (size_t i = 0; i < key.size(); ++i) key[i] = static_cast<uint8_t>(5 * i + 1);
  PadPrg prg(key);
  for (bool openssl : {false, true}) {
    PadPrg::force_openssl_for_testing(openssl);
    std::vector<uint32_t> pad(20000);
    ASSERT_TRUE(prg.generate(9, 77, pad).ok());
    for (size_t first : {size_t{0}, size_t{1}, size_t{2}, size_t{3}, size_t{4}, size_t{5}, size_t{4097}, size_t{19990}}) {
      for (size_t n : {size_t{1}, size_t{2}, size_t{3}, size_t{4}, size_t{7}, size_t{4096 + 1}}) {
        if (first + n > pad.size()) continue;
        std::vector<uint32_t> range(n, 0xFFFFFFFFu);
        auto any_p = prg.generate_range(9, 77, first, range);
        ASSERT_TRUE(any_p.ok()) << any_p.status().to_string();
        EXPECT_FALSE(*any_p);
        EXPECT_TRUE(std::equal(range.begin(), range.end(), pad.begin() + static_cast<std::ptrdiff_t>(first)))
            << (openssl ? "openssl" : "vaes") << " first " << first << " n " << n;
      }
    }
  }
  PadPrg::force_openssl_for_testing(false);
}

accel::LinearSpec random_conv(int64_t cout, int64_t cin, int64_t k, int64_t group, int64_t stride, int64_t pad, int64_t dil,
                              uint32_t seed) {
  accel::LinearSpec s;
  s.kind = accel::LinearSpec::Kind::kConv2d;
  s.weight_shape = {cout, cin / group, k, k};
  s.group = group;
  s.strides = {stride, stride};
  s.dilations = {dil, dil};
  s.pads = {pad, pad, pad + 1, pad};
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> w(-127, 127);
  s.weights.resize(static_cast<size_t>(numel(s.weight_shape)));
  for (int8_t& v : s.weights) v = static_cast<int8_t>(w(rng));
  return s;
}

std::vector<uint32_t> random_field(size_t n, uint32_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<uint32_t> v(n);
  for (uint32_t& x : v) x = static_cast<uint32_t>(rng() % kP);
  return v;
}

TEST(HybridExactLinear, MatchesTheAcceleratorsReference) {
  struct Case {
    accel::LinearSpec spec;
    Shape x;
  };
  std::vector<Case> cases;
  cases.push_back({random_conv(6, 4, 3, 1, 1, 1, 1, 1), {2, 4, 7, 9}});
  cases.push_back({random_conv(8, 8, 3, 2, 2, 1, 1, 2), {1, 8, 9, 8}});
  cases.push_back({random_conv(4, 4, 3, 4, 1, 2, 2, 3), {1, 4, 6, 6}});   // depthwise, dilated
  cases.push_back({random_conv(5, 3, 1, 1, 2, 0, 1, 4), {3, 3, 5, 5}});   // 1x1 strided
  // Pointwise (1x1, stride 1, no padding): Freivalds keeps s^T W per input channel, not Z.
  for (int64_t group : {1, 2}) {
    accel::LinearSpec pw = random_conv(6, 4, 1, group, 1, 0, 1, 5);
    pw.pads = {0, 0, 0, 0};
    cases.push_back({pw, {2, 4, 5, 7}});
    cases.push_back({pw, {2, 4, 9, 9}});  // 81 positions: per-row dots (the others: small planes)
  }
  cases.push_back({random_conv(6, 4, 3, 1, 1, 1, 1, 6), {1, 4, 10, 10}});  // 3x3, 110 positions
  accel::LinearSpec mm;
  mm.kind = accel::LinearSpec::Kind::kMatMul;
  mm.weight_shape = {7, 13};
  mm.weights.resize(91);
  for (size_t i = 0; i < mm.weights.size(); ++i) mm.weights[i] = static_cast<int8_t>(static_cast<int>(i * 37 % 255) - 127);
  cases.push_back({mm, {5, 13}});
  for (const Case& c : cases) {
    auto out = linear_output_shape(c.spec, c.x);
    ASSERT_TRUE(out.ok()) << out.status().to_string();
    auto ref_shape = accel::output_shape(c.spec, c.x);
    ASSERT_TRUE(ref_shape.ok()) << ref_shape.status().to_string();
    EXPECT_EQ(*out, *ref_shape);
    const std::vector<uint32_t> x = random_field(static_cast<size_t>(numel(c.x)), 9);
    std::vector<uint32_t> mine(static_cast<size_t>(numel(*out))), ref(mine.size());
    ASSERT_TRUE(exact_linear(c.spec, c.x, x, mine).ok());
    ASSERT_TRUE(accel::reference_linear(c.spec, c.x, x, ref).ok());
    EXPECT_EQ(mine, ref) << shape_to_string(c.x);

    // Freivalds: the true product passes; any single change is caught.
    auto check = FreivaldsCheck::create(c.spec, c.x, 2);
    ASSERT_TRUE(check.ok()) << check.status().to_string();
    EXPECT_EQ(check->first_failure(x, mine), -1);
    for (size_t pos : {size_t{0}, mine.size() / 2, mine.size() - 1}) {
      std::vector<uint32_t> bad = mine;
      bad[pos] = add_mod(bad[pos], 1);
      EXPECT_EQ(check->first_failure(x, bad), 0) << pos;
    }
    std::vector<uint32_t> zero(mine.size(), 0);
    EXPECT_GE(check->first_failure(x, zero), 0);
    // Values that are no field elements, among them one congruent to the true value (+p, which
    // the dot products mod p cannot see), are refused as such, wherever they are.
    for (size_t pos : {size_t{0}, mine.size() / 2, mine.size() - 1}) {
      for (uint32_t v : {mine[pos] + kP, kP, ~uint32_t{0}}) {
        std::vector<uint32_t> bad = mine;
        bad[pos] = v;
        EXPECT_EQ(check->first_failure(x, bad), FreivaldsCheck::kOutsideField) << pos << " " << v;
      }
    }
    // A different input does not match this output either.
    std::vector<uint32_t> x2 = x;
    x2[x2.size() / 3] = add_mod(x2[x2.size() / 3], 5);
    EXPECT_GE(check->first_failure(x2, mine), 0);
    // A partial batch: the first image (conv) / row (matmul) alone, checked with the prefix of
    // the same vectors; a change in it is caught; sizes that are no prefix are refused.
    const size_t x1 = x.size() / static_cast<size_t>(c.x[0]), y1 = mine.size() / static_cast<size_t>(c.x[0]);
    const std::span<const uint32_t> xs(x), ys(mine);
    EXPECT_EQ(check->first_failure(xs.first(x1), ys.first(y1)), -1);
    std::vector<uint32_t> bad1(mine.begin(), mine.begin() + static_cast<std::ptrdiff_t>(y1));
    bad1[y1 / 2] = add_mod(bad1[y1 / 2], 1);
    EXPECT_EQ(check->first_failure(xs.first(x1), bad1), 0);
    EXPECT_EQ(check->first_failure(xs.first(x1), ys.first(y1 - 1)), 0);
    EXPECT_EQ(check->first_failure(xs.first(x1 - 1), ys.first(y1)), 0);
    EXPECT_EQ(check->first_failure(xs.first(0), ys.first(0)), 0);
  }
}

TEST(HybridMaskVault, ConsumesOnceAndRefusesMissingTamperedReplayed) {
  std::array<uint8_t, 32> key{}, model{}, other_model{};
  key[5] = 9;
  model[0] = 1;
  other_model[0] = 2;
  HostMaskStore store;
  MaskVault vault(key, model, &store);
  std::vector<uint32_t> term = random_field(100, 3), out(100);
  for (int i = 0; i < 4; ++i) {
    const uint64_t c = vault.new_counter(0);
    EXPECT_EQ(c, static_cast<uint64_t>(i));
    std::vector<uint32_t> t = term;
    t[0] = static_cast<uint32_t>(i);
    ASSERT_TRUE(vault.deposit(0, c, t).ok());
  }
  EXPECT_EQ(vault.ready_count(0), 4u);
  EXPECT_EQ(store.blob_count(), 4u);
  ASSERT_EQ(vault.take_ready(0), std::optional<uint64_t>(0));
  const std::vector<uint8_t> blob0 = *store.peek(0, 0);
  ASSERT_TRUE(vault.consume(0, 0, out).ok());
  EXPECT_EQ(out[0], 0u);
  EXPECT_EQ(std::vector<uint32_t>(out.begin() + 1, out.end()), std::vector<uint32_t>(term.begin() + 1, term.end()));
  EXPECT_EQ(store.blob_count(), 3u);

  // Reused: the host puts the consumed blob back; the vault still refuses the counter.
  store.put(0, 0, blob0);
  Status s = vault.consume(0, 0, out);
  EXPECT_EQ(s.code(), StatusCode::kDataLoss);
  EXPECT_NE(s.message().find("already consumed"), std::string::npos) << s.to_string();

  // Replayed under another counter: AAD binds the counter.
  store.overwrite(0, 1, blob0);
  s = vault.consume(0, 1, out);
  EXPECT_EQ(s.code(), StatusCode::kDataLoss);
  EXPECT_NE(s.message().find("does not authenticate"), std::string::npos) << s.to_string();

  // Tampered.
  std::vector<uint8_t> b2 = *store.peek(0, 2);
  b2[10] ^= 0x40;
  store.overwrite(0, 2, b2);
  s = vault.consume(0, 2, out);
  EXPECT_EQ(s.code(), StatusCode::kDataLoss);

  // Missing.
  store.erase(0, 3);
  s = vault.consume(0, 3, out);
  EXPECT_EQ(s.code(), StatusCode::kDataLoss);
  EXPECT_NE(s.message().find("missing"), std::string::npos) << s.to_string();

  // Never issued; truncated; another model's vault cannot open this one's blobs.
  EXPECT_EQ(vault.consume(0, 99, out).code(), StatusCode::kDataLoss);
  const uint64_t c = vault.new_counter(0);
  ASSERT_TRUE(vault.deposit(0, c, term).ok());
  std::vector<uint8_t> blob = *store.peek(0, c);
  MaskVault other(key, other_model, &store);
  for (uint64_t i = 0; i <= c; ++i) (void)other.new_counter(0);
  EXPECT_EQ(other.consume(0, c, out).code(), StatusCode::kDataLoss);
  store.put(0, c, std::vector<uint8_t>(blob.begin(), blob.end() - 1));
  EXPECT_EQ(vault.consume(0, c, out).code(), StatusCode::kDataLoss);
  // Retire refuses a consumed counter too.
  EXPECT_EQ(vault.retire(0, 0).code(), StatusCode::kDataLoss);
}

// consume_pieces hands out the same term as consume(), in order, in pieces of the size asked for
// (with OpenSSL's AES-GCM too), and refuses what consume() refuses: a reused counter, a tampered
// or replayed blob (known at the end, after the pieces), a missing one, a bad piece size.
TEST(HybridMaskVault, ConsumesInPieces) {
  std::array<uint8_t, 32> key{}, model{};
  key[7] = 3;
  HostMaskStore store;
  MaskVault vault(key, model, &store);
  const std::vector<uint32_t> term = random_field(1000, 4);  // not a multiple of the pieces
  for (const char* backend : {"vaes-avx512", "openssl"}) {
    if (!crypto::set_aes_gcm_backend(backend).ok()) continue;  // no VAES on this CPU
    for (size_t piece : {size_t{16}, size_t{64}, size_t{4096}}) {
      const uint64_t c = vault.new_counter(0);
      ASSERT_TRUE(vault.deposit(0, c, term).ok());
      std::vector<uint32_t> got;
      size_t pieces = 0;
      ASSERT_TRUE(vault
                      .consume_pieces(0, c, term.size(), piece,
                                      [&](size_t offset, std::span<const uint32_t> u) {
                                        EXPECT_EQ(offset, got.size());
                                        EXPECT_LE(u.size(), piece);
                                        got.insert(got.end(), u.begin(), u.end());
                                        ++pieces;
                                      })
                      .ok())
          << backend;
      EXPECT_EQ(got, term) << backend << " pieces of " << piece;
      EXPECT_EQ(pieces, (term.size() + piece - 1) / piece);
      // Reused.
      EXPECT_EQ(vault.consume_pieces(0, c, term.size(), piece, [](size_t, std::span<const uint32_t>) {}).code(),
                StatusCode::kDataLoss);
    }
    const auto noop = [](size_t, std::span<const uint32_t>) {};
    // Tampered: the pieces come out, the tag fails at the end.
    uint64_t c = vault.new_counter(0);
    ASSERT_TRUE(vault.deposit(0, c, term).ok());
    std::vector<uint8_t> blob = *store.peek(0, c);
    blob[blob.size() - 100] ^= 2;
    store.overwrite(0, c, blob);
    Status s = vault.consume_pieces(0, c, term.size(), 64, noop);
    EXPECT_EQ(s.code(), StatusCode::kDataLoss);
    EXPECT_NE(s.message().find("does not authenticate"), std::string::npos) << s.to_string();
    // Replayed under another counter.
    c = vault.new_counter(0);
    ASSERT_TRUE(vault.deposit(0, c, term).ok());
    const uint64_t c2 = vault.new_counter(0);
    ASSERT_TRUE(vault.deposit(0, c2, term).ok());
    store.overwrite(0, c2, *store.peek(0, c));
    EXPECT_EQ(vault.consume_pieces(0, c2, term.size(), 64, noop).code(), StatusCode::kDataLoss);
    // Missing; a piece size that is not a multiple of 16 words.
    store.erase(0, c);
    s = vault.consume_pieces(0, c, term.size(), 64, noop);
    EXPECT_NE(s.message().find("missing"), std::string::npos) << s.to_string();
    EXPECT_EQ(vault.consume_pieces(0, vault.new_counter(0), term.size(), 24, noop).code(), StatusCode::kInvalidArgument);
  }
  ASSERT_TRUE(crypto::set_aes_gcm_backend("auto").ok());
}

}  // namespace
}  // namespace tenet::hybrid
