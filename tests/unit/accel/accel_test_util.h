// Helpers shared by the accelerator tests: random specs and field-element inputs that hit the
// edges of the arithmetic (p-1, 0, byte boundaries), and an "equals the reference" check.
#pragma once

#include <random>
#include <vector>

#include <gtest/gtest.h>

#include "accel/accelerator.h"

namespace tenet::accel::testing {

inline LinearSpec conv(Shape w, std::array<int64_t, 2> strides = {1, 1}, std::array<int64_t, 4> pads = {0, 0, 0, 0},
                       int64_t group = 1, std::array<int64_t, 2> dilations = {1, 1}) {
  LinearSpec s;
  s.kind = LinearSpec::Kind::kConv2d;
  s.weight_shape = std::move(w);
  s.strides = strides;
  s.pads = pads;
  s.group = group;
  s.dilations = dilations;
  return s;
}

inline LinearSpec matmul(int64_t n_out, int64_t k) {
  LinearSpec s;
  s.kind = LinearSpec::Kind::kMatMul;
  s.weight_shape = {n_out, k};
  return s;
}

// Weights: uniform in [-127, 127], a quarter of them ±127.
inline void fill_weights(LinearSpec& s, std::mt19937_64& rng) {
  s.weights.resize(static_cast<size_t>(numel(s.weight_shape)));
  std::uniform_int_distribution<int> w(-127, 127), pick(0, 7);
  for (int8_t& v : s.weights) {
    const int k = pick(rng);
    v = static_cast<int8_t>(k == 0 ? 127 : k == 1 ? -127 : w(rng));
  }
}

// Field elements: uniform in [0, p), with edge values mixed in.
inline std::vector<uint32_t> random_field(int64_t count, std::mt19937_64& rng) {
  static constexpr uint32_t kEdges[] = {0, 1, 255, 256, 65535, 65536, (1u << 24) - 1, 1u << 24, (1u << 30),
                                        kFieldPrime - 2, kFieldPrime - 1};
  std::uniform_int_distribution<uint32_t> u(0, kFieldPrime - 1);
  std::uniform_int_distribution<int> pick(0, 5);
  std::uniform_int_distribution<size_t> edge(0, std::size(kEdges) - 1);
  std::vector<uint32_t> x(static_cast<size_t>(count));
  for (uint32_t& v : x) v = pick(rng) == 0 ? kEdges[edge(rng)] : u(rng);
  return x;
}

// Runs `spec` on `acc` and on the reference and asserts bit-identical results.
inline void expect_matches_reference(Accelerator& acc, const LinearSpec& spec, const Shape& input_shape,
                                     const std::vector<uint32_t>& x) {
  auto out = output_shape(spec, input_shape);
  ASSERT_TRUE(out.ok()) << out.status().to_string();
  std::vector<uint32_t> want(static_cast<size_t>(numel(*out))), got(want.size(), 0xDEADBEEFu);
  ASSERT_TRUE(reference_linear(spec, input_shape, x, want).ok());
  auto id = acc.add_layer(spec);
  ASSERT_TRUE(id.ok()) << id.status().to_string();
  Status s = acc.run(*id, input_shape, x, got);
  ASSERT_TRUE(s.ok()) << s.to_string();
  size_t mismatches = 0, first = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    if (want[i] != got[i] && mismatches++ == 0) first = i;
  }
  EXPECT_EQ(mismatches, 0u) << acc.name() << " on " << shape_to_string(spec.weight_shape) << " x "
                            << shape_to_string(input_shape) << ": first mismatch at " << first << ": " << got[first]
                            << " vs reference " << want[first];
}

// The shapes every backend is checked on: ResNet-like convolutions (7x7/2, 3x3/2, 1x1, grouped,
// depthwise, dilated, asymmetric), the largest ResNet reduction at maximal values, and matmuls.
struct Case {
  const char* name;
  LinearSpec spec;
  Shape input_shape;
};

inline std::vector<Case> standard_cases() {
  return {
      {"conv7x7s2p3", conv({8, 3, 7, 7}, {2, 2}, {3, 3, 3, 3}), {2, 3, 20, 20}},
      {"conv3x3s2p1", conv({16, 8, 3, 3}, {2, 2}, {1, 1, 1, 1}), {2, 8, 9, 9}},
      {"conv3x3s1p1", conv({24, 16, 3, 3}, {1, 1}, {1, 1, 1, 1}), {3, 16, 8, 8}},
      {"conv1x1", conv({32, 16, 1, 1}), {3, 16, 7, 7}},
      {"conv1x1s2", conv({32, 16, 1, 1}, {2, 2}), {1, 16, 8, 8}},
      {"grouped", conv({12, 2, 3, 3}, {1, 1}, {1, 1, 1, 1}, 4), {2, 8, 6, 6}},
      {"depthwise", conv({8, 1, 3, 3}, {2, 2}, {1, 1, 1, 1}, 8), {2, 8, 7, 7}},
      {"dilated", conv({4, 3, 3, 3}, {1, 1}, {2, 2, 2, 2}, 1, {2, 2}), {1, 3, 9, 9}},
      {"asymmetric", conv({5, 2, 2, 3}, {2, 3}, {1, 0, 0, 2}), {2, 2, 9, 11}},
      {"k4608", conv({4, 512, 3, 3}, {1, 1}, {1, 1, 1, 1}), {1, 512, 4, 4}},
      {"chunked_batch", conv({4, 2, 3, 3}, {1, 1}, {1, 1, 1, 1}), {5, 2, 64, 64}},
      {"matmul", matmul(10, 33), {5, 33}},
      {"matmul_fc", matmul(100, 2048), {3, 2048}},
      {"matmul_chunked", matmul(3, 4), {20000, 4}},
      {"matmul_kmax", matmul(3, kMaxReductionCount), {2, kMaxReductionCount}},
  };
}

}  // namespace tenet::accel::testing
