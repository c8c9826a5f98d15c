// Shape rules, validation and the exact reference (accel/linear.cc), with hand-computed cases.
#include <random>

#include <gtest/gtest.h>

#include "accel/accelerator.h"

namespace tenet::accel {
namespace {

constexpr uint32_t kP = kFieldPrime;

LinearSpec conv_spec(Shape w, int64_t stride, int64_t pad, int64_t group = 1, int64_t dilation = 1) {
  LinearSpec s;
  s.kind = LinearSpec::Kind::kConv2d;
  s.weight_shape = std::move(w);
  s.strides = {stride, stride};
  s.dilations = {dilation, dilation};
  s.pads = {pad, pad, pad, pad};
  s.group = group;
  s.weights.assign(static_cast<size_t>(numel(s.weight_shape)), 1);
  return s;
}

LinearSpec matmul_spec(int64_t n_out, int64_t k) {
  LinearSpec s;
  s.kind = LinearSpec::Kind::kMatMul;
  s.weight_shape = {n_out, k};
  s.weights.assign(static_cast<size_t>(n_out * k), 1);
  return s;
}

TEST(AccelShape, ResNetConvShapes) {
  EXPECT_EQ(output_shape(conv_spec({64, 3, 7, 7}, 2, 3), {2, 3, 224, 224}).value(), (Shape{2, 64, 112, 112}));
  EXPECT_EQ(output_shape(conv_spec({128, 64, 3, 3}, 2, 1), {1, 64, 56, 56}).value(), (Shape{1, 128, 28, 28}));
  EXPECT_EQ(output_shape(conv_spec({256, 64, 1, 1}, 1, 0), {1, 64, 56, 56}).value(), (Shape{1, 256, 56, 56}));
  EXPECT_EQ(output_shape(conv_spec({32, 1, 3, 3}, 1, 1, 32), {1, 32, 10, 10}).value(), (Shape{1, 32, 10, 10}));
  EXPECT_EQ(output_shape(conv_spec({8, 4, 3, 3}, 1, 2, 1, 2), {1, 4, 9, 9}).value(), (Shape{1, 8, 9, 9}));
  LinearSpec asym = conv_spec({1, 1, 2, 3}, 1, 0);
  asym.strides = {2, 3};
  asym.pads = {1, 0, 0, 2};
  // H: (5+1+0-2)/2+1 = 3; W: (7+0+2-3)/3+1 = 3.
  EXPECT_EQ(output_shape(asym, {1, 1, 5, 7}).value(), (Shape{1, 1, 3, 3}));
  EXPECT_EQ(output_shape(matmul_spec(1000, 2048), {4, 2048}).value(), (Shape{4, 1000}));
}

TEST(AccelShape, RejectsInputsThatDoNotFit) {
  EXPECT_EQ(output_shape(conv_spec({8, 4, 3, 3}, 1, 0), {1, 5, 9, 9}).status().code(), StatusCode::kInvalidArgument);
  EXPECT_FALSE(output_shape(conv_spec({8, 4, 3, 3}, 1, 0), {1, 4, 2, 9}).ok());  // smaller than the kernel
  EXPECT_FALSE(output_shape(conv_spec({8, 4, 3, 3}, 1, 0), {4, 9, 9}).ok());
  EXPECT_FALSE(output_shape(conv_spec({8, 4, 3, 3}, 1, 0), {0, 4, 9, 9}).ok());
  EXPECT_FALSE(output_shape(conv_spec({8, 4, 3, 3}, 1, 0), {-1, 4, 9, 9}).ok());
  EXPECT_FALSE(output_shape(conv_spec({8, 4, 1, 1}, 1, 0), {int64_t{1} << 40, 4, 1 << 20, 1 << 20}).ok());
  EXPECT_FALSE(output_shape(conv_spec({8, 4, 1, 1}, 1, 0), {1 << 20, 4, 1 << 10, 1 << 10}).ok());  // > kMaxRunCount
  EXPECT_FALSE(output_shape(matmul_spec(10, 20), {3, 21}).ok());
  EXPECT_FALSE(output_shape(matmul_spec(10, 20), {3, 4, 20}).ok());
}

TEST(AccelValidate, AcceptsAndRejectsSpecs) {
  EXPECT_TRUE(validate(conv_spec({64, 3, 7, 7}, 2, 3)).ok());
  EXPECT_TRUE(validate(matmul_spec(10, kMaxReductionCount)).ok());
  EXPECT_FALSE(validate(matmul_spec(10, kMaxReductionCount + 1)).ok());
  EXPECT_FALSE(validate(conv_spec({8, 4096, 3, 3}, 1, 1)).ok());  // K = 36,864
  EXPECT_FALSE(validate(conv_spec({6, 1, 3, 3}, 1, 1, 4)).ok());  // group does not divide Cout
  EXPECT_FALSE(validate(conv_spec({6, 1, 3, 3}, 0, 1)).ok());     // stride 0
  EXPECT_FALSE(validate(conv_spec({6, 1, 3, 3}, 1, -1)).ok());
  EXPECT_FALSE(validate(conv_spec({6, 1, 3, 3}, 1, 1, 1, 0)).ok());
  EXPECT_FALSE(validate(conv_spec({6, 0, 3, 3}, 1, 1)).ok());
  LinearSpec bad_rank = conv_spec({6, 1, 3, 3}, 1, 1);
  bad_rank.weight_shape = {6, 9};
  EXPECT_FALSE(validate(bad_rank).ok());
  LinearSpec bad_kind = matmul_spec(2, 2);
  bad_kind.kind = static_cast<LinearSpec::Kind>(7);
  EXPECT_FALSE(validate(bad_kind).ok());
  LinearSpec mm_group = matmul_spec(2, 2);
  mm_group.group = 2;
  EXPECT_FALSE(validate(mm_group).ok());
  LinearSpec short_weights = matmul_spec(3, 4);
  short_weights.weights.pop_back();
  EXPECT_FALSE(validate(short_weights).ok());
  LinearSpec minus128 = matmul_spec(3, 4);
  minus128.weights[5] = -128;
  Status s = validate(minus128);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("index 5"), std::string::npos) << s.message();
  LinearSpec huge = matmul_spec(1, 1);
  huge.weight_shape = {int64_t{1} << 20, int64_t{1} << 20};
  EXPECT_FALSE(validate(huge).ok());
}

TEST(AccelReference, MatMulHandComputed) {
  LinearSpec s = matmul_spec(2, 3);
  s.weights = {1, -2, 127, -127, 0, 3};
  const std::vector<uint32_t> x = {5, 7, kP - 1, 1, 2, 3};
  std::vector<uint32_t> y(4);
  ASSERT_TRUE(reference_linear(s, {2, 3}, x, y).ok());
  // Row 0: 5 - 14 + 127(p-1) ≡ -9 - 127 = -136; -127·5 + 3(p-1) ≡ -635 - 3 = -638.
  EXPECT_EQ(y[0], kP - 136);
  EXPECT_EQ(y[1], kP - 638);
  // Row 1: 1 - 4 + 381 = 378; -127 + 9 = -118.
  EXPECT_EQ(y[2], 378u);
  EXPECT_EQ(y[3], kP - 118);
}

TEST(AccelReference, ConvHandComputedWithPadStrideGroup) {
  // Two groups of one channel each, 2x2 kernels, stride 2, pad 1, on a 3x3 input.
  LinearSpec s = conv_spec({2, 1, 2, 2}, 2, 1, 2);
  s.weights = {1, 2, 3, 4, -1, 0, 0, 1};
  std::vector<uint32_t> x(18);
  for (uint32_t i = 0; i < 9; ++i) x[i] = i + 1;           // channel 0: 1..9
  for (uint32_t i = 0; i < 9; ++i) x[9 + i] = kP - 1 - i;  // channel 1: -1..-9 mod p
  const Shape out = output_shape(s, {1, 2, 3, 3}).value();
  ASSERT_EQ(out, (Shape{1, 2, 2, 2}));
  std::vector<uint32_t> y(8);
  ASSERT_TRUE(reference_linear(s, {1, 2, 3, 3}, x, y).ok());
  // Channel 0, output (0,0) sees only input (0,0) under weight 4: 4.
  // (0,1): inputs (0,1),(0,2) under weights 3,4: 2·3+3·4 = 18. (1,0): (1,0),(2,0) under 2,4: 4·2+7·4 = 36.
  // (1,1): 5·1+6·2+8·3+9·4 = 77.
  EXPECT_EQ(std::vector<uint32_t>(y.begin(), y.begin() + 4), (std::vector<uint32_t>{4, 18, 36, 77}));
  // Channel 1 = -x' under weights -1,0,0,1: (0,0): 1·(-1) = -1; (0,1): -1·0... = w[3]·x(0,2) = -3;
  // (1,0): w[1]·x(1,0)+w[3]·x(2,0) = -7; (1,1): -1·(-5) + 1·(-9) = -4.
  EXPECT_EQ(std::vector<uint32_t>(y.begin() + 4, y.end()), (std::vector<uint32_t>{kP - 1, kP - 3, kP - 7, kP - 4}));
}

// crop_dead_taps: on small inputs the cropped layer gives the reference's output exactly, and
// only the taps that meet padding alone are dropped.
TEST(AccelCropDeadTaps, CentreTapOfThreeByThreeOnOnePixel) {
  LinearSpec s = conv_spec({2, 3, 3, 3}, 1, 1);
  for (size_t i = 0; i < s.weights.size(); ++i) s.weights[i] = static_cast<int8_t>(static_cast<int>(i % 19) - 9);
  auto c = crop_dead_taps(s, {4, 3, 1, 1});
  ASSERT_TRUE(c.has_value());
  EXPECT_EQ(c->weight_shape, (Shape{2, 3, 1, 1}));
  EXPECT_EQ(c->pads, (std::array<int64_t, 4>{0, 0, 0, 0}));
  for (int64_t o = 0; o < 2; ++o) {
    for (int64_t i = 0; i < 3; ++i) EXPECT_EQ(c->weights[static_cast<size_t>(o * 3 + i)], s.weights[static_cast<size_t>((o * 3 + i) * 9 + 4)]);
  }
  // Every tap is live on larger inputs; matmuls are never cropped.
  EXPECT_FALSE(crop_dead_taps(s, {1, 3, 2, 2}).has_value());
  EXPECT_FALSE(crop_dead_taps(s, {1, 3, 7, 7}).has_value());
  EXPECT_FALSE(crop_dead_taps(matmul_spec(2, 3), {1, 3}).has_value());
  EXPECT_FALSE(crop_dead_taps(s, {1, 4, 1, 1}).has_value());  // wrong channel count: invalid, not cropped
}

TEST(AccelCropDeadTaps, RandomSmallInputsMatchTheReference) {
  std::mt19937_64 rng(11);
  auto r = [&rng](int64_t lo, int64_t hi) { return std::uniform_int_distribution<int64_t>(lo, hi)(rng); };
  std::uniform_int_distribution<uint32_t> field(0, kP - 1);
  std::uniform_int_distribution<int> weight(-127, 127);
  int cropped = 0;
  for (int iter = 0; iter < 3000; ++iter) {
    const int64_t group = r(0, 3) == 0 ? 2 : 1, kh = r(1, 5), kw = r(1, 5);
    LinearSpec s;
    s.kind = LinearSpec::Kind::kConv2d;
    s.weight_shape = {r(1, 3) * group, r(1, 2), kh, kw};
    s.strides = {r(1, 3), r(1, 3)};
    s.dilations = {r(1, 2), r(1, 2)};
    s.pads = {r(0, kh), r(0, kw), r(0, kh), r(0, kw)};
    s.group = group;
    s.weights.resize(static_cast<size_t>(numel(s.weight_shape)));
    for (int8_t& w : s.weights) w = static_cast<int8_t>(weight(rng));
    const Shape in = {r(1, 2), s.weight_shape[1] * group, r(1, 4), r(1, 4)};
    auto out = output_shape(s, in);
    if (!out.ok()) continue;
    std::vector<uint32_t> x(static_cast<size_t>(numel(in)));
    for (uint32_t& v : x) v = field(rng);
    std::vector<uint32_t> want(static_cast<size_t>(numel(*out))), got(want.size(), 0xDEADBEEFu);
    ASSERT_TRUE(reference_linear(s, in, x, want).ok());
    auto c = crop_dead_taps(s, in);
    if (!c) continue;
    ++cropped;
    SCOPED_TRACE(::testing::Message() << "iter " << iter << " weights " << shape_to_string(s.weight_shape) << " input "
                                      << shape_to_string(in));
    ASSERT_TRUE(validate(*c).ok());
    EXPECT_LT(numel(c->weight_shape), numel(s.weight_shape));
    for (int64_t p : c->pads) EXPECT_GE(p, 0);
    ASSERT_TRUE(reference_linear(*c, in, x, got).ok());
    ASSERT_EQ(got, want);
  }
  EXPECT_GT(cropped, 300);  // the generator does reach the case
}

TEST(AccelReference, RejectsBadArguments) {
  LinearSpec s = matmul_spec(2, 3);
  std::vector<uint32_t> x(6, 1), y(4);
  EXPECT_TRUE(reference_linear(s, {2, 3}, x, y).ok());
  x[4] = kP;
  Status bad_value = reference_linear(s, {2, 3}, x, y);
  EXPECT_EQ(bad_value.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(bad_value.message().find("index 4"), std::string::npos) << bad_value.message();
  x[4] = 0xFFFFFFFFu;
  EXPECT_FALSE(reference_linear(s, {2, 3}, x, y).ok());
  x[4] = 1;
  std::vector<uint32_t> short_y(3);
  EXPECT_FALSE(reference_linear(s, {2, 3}, x, short_y).ok());
  EXPECT_FALSE(reference_linear(s, {3, 2}, x, y).ok());
  std::vector<uint32_t> short_x(5, 1);
  EXPECT_FALSE(reference_linear(s, {2, 3}, short_x, y).ok());
}

}  // namespace
}  // namespace tenet::accel
