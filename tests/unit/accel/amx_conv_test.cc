// tenet's AMX convolution (accel/amx_conv.h) equals the reference bit for bit: random layers
// (strides 1 to 3, kernels up to 5x5, dilations, asymmetric pads, widths below,
// at and above a tile's 16 pixels, one to three images, one to three threads), maximal operands
// at the largest reduction the accelerator accepts, and nothing written outside the output. The
// CPU accelerator takes it for the layers it applies to, and not when switched off.
#include <random>

#include "accel/amx_conv.h"
#include "accel/cpu_accelerator.h"
#include "accel_test_util.h"

namespace tenet::accel {
namespace {

using testing::conv;

// Runs `spec` through AmxPlaneConv on `threads` threads and compares with the reference; the
// output buffer has guard words on both sides that must stay untouched.
void expect_amx_matches_reference(const LinearSpec& spec, const Shape& in, const std::vector<uint32_t>& x, int threads) {
  auto amx = AmxPlaneConv::create(spec);
  ASSERT_TRUE(amx.ok()) << amx.status().to_string();
  const Shape out = output_shape(spec, in).value();
  const size_t n = static_cast<size_t>(numel(out));
  std::vector<uint32_t> want(n);
  ASSERT_TRUE(reference_linear(spec, in, x, want).ok());
  constexpr size_t kGuard = 64;
  std::vector<uint32_t> got(n + 2 * kGuard, 0xDEADBEEFu);
  ASSERT_TRUE((*amx)->run(in, x.data(), got.data() + kGuard, threads).ok());
  size_t mismatches = 0, first = 0;
  for (size_t i = 0; i < n; ++i) {
    if (got[kGuard + i] != want[i] && mismatches++ == 0) first = i;
  }
  EXPECT_EQ(mismatches, 0u) << shape_to_string(spec.weight_shape) << " pads " << spec.pads[0] << "," << spec.pads[1] << ","
                            << spec.pads[2] << "," << spec.pads[3] << " dil " << spec.dilations[0] << " on "
                            << shape_to_string(in) << ", " << threads << " threads: first mismatch at " << first;
  for (size_t i = 0; i < kGuard; ++i) {
    ASSERT_EQ(got[i], 0xDEADBEEFu) << "written before the output";
    ASSERT_EQ(got[kGuard + n + i], 0xDEADBEEFu) << "written past the output";
  }
}

TEST(AmxConv, SaysWhatItCannotRun) {
  EXPECT_EQ(AmxPlaneConv::unsupported(conv({64, 64, 3, 3}, {1, 1}, {1, 1, 1, 1})), "");
  EXPECT_EQ(AmxPlaneConv::unsupported(conv({32, 128, 1, 5}, {1, 1}, {0, 2, 0, 1}, 1, {2, 2})), "");
  EXPECT_EQ(AmxPlaneConv::unsupported(conv({64, 64, 3, 3}, {2, 2}, {1, 1, 1, 1})), "");
  EXPECT_NE(AmxPlaneConv::unsupported(conv({64, 64, 3, 3}, {2, 1})), "");
  EXPECT_NE(AmxPlaneConv::unsupported(conv({64, 64, 3, 3}, {1, 1}, {1, 3, 1, 1})), "");
  EXPECT_NE(AmxPlaneConv::unsupported(conv({64, 64, 3, 3}, {1, 1}, {1, 1, 65536, 1})), "");
  EXPECT_NE(AmxPlaneConv::unsupported(conv({64, 32, 3, 3}, {1, 1}, {0, 0, 0, 0}, 2)), "");
  EXPECT_NE(AmxPlaneConv::unsupported(conv({64, 3, 7, 7})), "");
  EXPECT_NE(AmxPlaneConv::unsupported(conv({48, 64, 1, 1})), "");
  EXPECT_NE(AmxPlaneConv::unsupported(conv({64, 64, 3, 3}, {1, 1}, {1, 1, 1, 1}, 1, {1, 2})), "");
  EXPECT_NE(AmxPlaneConv::unsupported(testing::matmul(64, 64)), "");
  LinearSpec grouped = conv({64, 32, 3, 3}, {1, 1}, {0, 0, 0, 0}, 2);
  grouped.weights.assign(static_cast<size_t>(numel(grouped.weight_shape)), 1);
  EXPECT_EQ(AmxPlaneConv::create(grouped).status().code(), StatusCode::kInvalidArgument);
  LinearSpec bad = conv({64, 64, 3, 3});
  bad.weights.assign(5, 1);  // wrong count
  EXPECT_FALSE(AmxPlaneConv::create(bad).ok());
}

TEST(AmxConv, RandomLayers) {
  if (!AmxPlaneConv::available()) GTEST_SKIP() << "no AMX-INT8 on this CPU or OS";
  std::mt19937_64 rng(42);
  auto r = [&rng](int64_t lo, int64_t hi) { return std::uniform_int_distribution<int64_t>(lo, hi)(rng); };
  for (int i = 0; i < 80; ++i) {
    const int64_t kh = r(1, 5), kw = r(1, 5), dil = r(1, 2), stride = i % 2 == 0 ? 1 : r(2, 3);
    const int64_t ext_h = (kh - 1) * dil + 1, ext_w = (kw - 1) * dil + 1;
    LinearSpec spec = conv({32 * r(1, 3), 64 * r(1, 3), kh, kw}, {stride, stride},
                           {r(0, ext_h - 1), r(0, ext_w - 1), r(0, ext_h - 1), r(0, ext_w - 1)}, 1, {dil, dil});
    testing::fill_weights(spec, rng);
    // Heights and widths from 1 to 40 that leave at least one output.
    const int64_t h = std::max<int64_t>(r(1, 40), ext_h - spec.pads[0] - spec.pads[2]);
    const int64_t w = std::max<int64_t>(r(1, 40), ext_w - spec.pads[1] - spec.pads[3]);
    const Shape in = {r(1, 3), spec.weight_shape[1], h, w};
    expect_amx_matches_reference(spec, in, testing::random_field(numel(in), rng), static_cast<int>(r(1, 3)));
    if (HasFailure()) return;
  }
}

// Strips: a large image cut into items of a few output rows, on several threads.
TEST(AmxConv, StripsOfLargeImages) {
  if (!AmxPlaneConv::available()) GTEST_SKIP() << "no AMX-INT8 on this CPU or OS";
  std::mt19937_64 rng(3);
  for (int64_t stride : {1, 2}) {
    LinearSpec spec = conv({64, 256, 3, 3}, {stride, stride}, {1, 1, 1, 1});
    testing::fill_weights(spec, rng);
    const Shape in = {1, 256, 60, 58};
    const std::vector<uint32_t> x = testing::random_field(numel(in), rng);
    for (int threads : {1, 2, 5}) expect_amx_matches_reference(spec, in, x, threads);
  }
}

// Small images, where the kernel gathers the batch's patches instead of walking each image: a
// 3x3 on 2x2 inputs, a 1x1 on 1x1 (ResNet's last stage at CIFAR sizes, cropped), a strided 3x3
// with outputs 2 wide, each over a batch whose pixels do not fill whole tiles, on 1 and 3 threads.
TEST(AmxConv, SmallImagesOfABatch) {
  if (!AmxPlaneConv::available()) GTEST_SKIP() << "no AMX-INT8 on this CPU or OS";
  std::mt19937_64 rng(12);
  struct SmallCase {
    LinearSpec spec;
    Shape in;
  };
  std::vector<SmallCase> cases = {{conv({64, 128, 3, 3}, {1, 1}, {1, 1, 1, 1}), {5, 128, 2, 2}},
                                  {conv({96, 64, 1, 1}), {7, 64, 1, 1}},
                                  {conv({32, 64, 3, 3}, {2, 2}, {1, 1, 1, 1}), {3, 64, 4, 3}},
                                  {conv({64, 64, 3, 3}, {1, 1}, {1, 1, 1, 1}, 1, {1, 1}), {9, 64, 3, 1}}};
  for (SmallCase& c : cases) {
    testing::fill_weights(c.spec, rng);
    const std::vector<uint32_t> x = testing::random_field(numel(c.in), rng);
    for (int threads : {1, 3}) expect_amx_matches_reference(c.spec, c.in, x, threads);
  }
}

TEST(AmxConv, MaximalOperands) {
  if (!AmxPlaneConv::available()) GTEST_SKIP() << "no AMX-INT8 on this CPU or OS";
  // K = 3584·9 = 32,256, the largest multiple of 64 channels x 3x3 under kMaxReductionCount.
  for (int8_t w : {int8_t{127}, int8_t{-127}}) {
    for (uint32_t v : {kFieldPrime - 1, kFieldPrime - 2, (1u << 31) - 257, 0xFFFFFFu}) {
      LinearSpec spec = conv({32, 3584, 3, 3}, {1, 1}, {1, 1, 1, 1});
      spec.weights.assign(static_cast<size_t>(numel(spec.weight_shape)), w);
      const Shape in = {1, 3584, 3, 3};
      expect_amx_matches_reference(spec, in, std::vector<uint32_t>(static_cast<size_t>(numel(in)), v), 1);
    }
  }
}

TEST(AmxConv, CpuAcceleratorTakesItWhereItApplies) {
  CpuAcceleratorOptions options;
  auto acc = make_cpu_accelerator(options);
  ASSERT_TRUE(acc.ok()) << acc.status().to_string();
  options.amx_conv = false;
  auto off = make_cpu_accelerator(options);
  ASSERT_TRUE(off.ok()) << off.status().to_string();
  std::mt19937_64 rng(8);
  LinearSpec spec = conv({64, 64, 3, 3}, {1, 1}, {1, 1, 1, 1});
  testing::fill_weights(spec, rng);
  LinearSpec grouped = conv({64, 32, 3, 3}, {1, 1}, {1, 1, 1, 1}, 2);
  testing::fill_weights(grouped, rng);
  const int32_t id = (*acc)->add_layer(spec).value(), grouped_id = (*acc)->add_layer(grouped).value();
  const int32_t off_id = (*off)->add_layer(spec).value();
  EXPECT_EQ(cpu_layer_path(**acc, id).value() == "amx", AmxPlaneConv::available());
  EXPECT_NE(cpu_layer_path(**acc, grouped_id).value(), "amx");
  EXPECT_NE(cpu_layer_path(**off, off_id).value(), "amx");
  const Shape in = {2, 64, 19, 23};
  const std::vector<uint32_t> x = testing::random_field(numel(in), rng);
  testing::expect_matches_reference(**acc, spec, in, x);
  testing::expect_matches_reference(**off, spec, in, x);
}

}  // namespace
}  // namespace tenet::accel
