// The CPU backend equals the reference bit for bit: standard ResNet-like cases, random shapes,
// maximal operands (x = p-1, w = ±127 at K = 4,608 and K = kMaxReductionCount), both plane widths,
// and concurrent runs from several threads; its direct-convolution path equals its GEMM path, and
// a layer whose self-test fails falls back to the GEMM.
#include <thread>

#include <oneapi/dnnl/dnnl.h>

#include "accel/cpu_accelerator.h"
#include "accel_test_util.h"

namespace tenet::accel {
namespace {

using testing::Case;

class CpuAcceleratorTest : public ::testing::TestWithParam<int> {
 protected:
  std::unique_ptr<Accelerator> make() {
    CpuAcceleratorOptions options;
    options.plane_bits = GetParam();
    auto acc = make_cpu_accelerator(options);
    if (!acc.ok() && acc.status().code() == StatusCode::kFailedPrecondition && GetParam() == 8) return nullptr;
    EXPECT_TRUE(acc.ok()) << acc.status().to_string();
    return acc.ok() ? std::move(acc).value() : nullptr;
  }
};

TEST_P(CpuAcceleratorTest, StandardCases) {
  auto acc = make();
  if (!acc) GTEST_SKIP() << "8-bit planes are not exact on this CPU (no VNNI)";
  std::mt19937_64 rng(1);
  for (Case c : testing::standard_cases()) {
    SCOPED_TRACE(c.name);
    testing::fill_weights(c.spec, rng);
    testing::expect_matches_reference(*acc, c.spec, c.input_shape, testing::random_field(numel(c.input_shape), rng));
  }
}

TEST_P(CpuAcceleratorTest, MaximalOperands) {
  auto acc = make();
  if (!acc) GTEST_SKIP() << "8-bit planes are not exact on this CPU (no VNNI)";
  for (int8_t w : {int8_t{127}, int8_t{-127}}) {
    for (uint32_t v : {kFieldPrime - 1, kFieldPrime - 2, (1u << 31) - 257}) {
      LinearSpec c = testing::conv({4, 512, 3, 3}, {1, 1}, {1, 1, 1, 1});
      c.weights.assign(static_cast<size_t>(numel(c.weight_shape)), w);
      testing::expect_matches_reference(*acc, c, {2, 512, 3, 3}, std::vector<uint32_t>(2 * 512 * 9, v));
      LinearSpec m = testing::matmul(2, kMaxReductionCount);
      m.weights.assign(static_cast<size_t>(numel(m.weight_shape)), w);
      testing::expect_matches_reference(*acc, m, {3, kMaxReductionCount},
                                        std::vector<uint32_t>(3 * kMaxReductionCount, v));
    }
  }
}

TEST_P(CpuAcceleratorTest, RandomConvShapes) {
  auto acc = make();
  if (!acc) GTEST_SKIP() << "8-bit planes are not exact on this CPU (no VNNI)";
  std::mt19937_64 rng(7);
  auto r = [&rng](int64_t lo, int64_t hi) { return std::uniform_int_distribution<int64_t>(lo, hi)(rng); };
  for (int iter = 0; iter < 40; ++iter) {
    const int64_t group = r(0, 3) == 0 ? r(2, 4) : 1;
    const int64_t cin_g = r(1, 6), cout_g = r(1, 6), kh = r(1, 5), kw = r(1, 5);
    LinearSpec s = testing::conv({cout_g * group, cin_g, kh, kw}, {r(1, 3), r(1, 3)}, {r(0, 2), r(0, 2), r(0, 2), r(0, 2)},
                                 group, {r(1, 2), r(1, 2)});
    const Shape in = {r(1, 3), cin_g * group, r(kh * 2, 12), r(kw * 2, 12)};
    if (!output_shape(s, in).ok()) continue;
    testing::fill_weights(s, rng);
    SCOPED_TRACE(iter);
    testing::expect_matches_reference(*acc, s, in, testing::random_field(numel(in), rng));
  }
}

// ResNet's last stage at CIFAR sizes: 3x3 convolutions with padding 1 on 1x1 and 2x2 inputs,
// where the runs go to the layer without its dead taps (crop_dead_taps); the same layer then runs
// on a larger input with all of them. Exact every time.
TEST_P(CpuAcceleratorTest, DeadTapsOnSmallInputs) {
  auto acc = make();
  if (!acc) GTEST_SKIP() << "8-bit planes are not exact on this CPU (no VNNI)";
  std::mt19937_64 rng(5);
  for (LinearSpec s : {testing::conv({64, 48, 3, 3}, {1, 1}, {1, 1, 1, 1}), testing::conv({64, 48, 3, 3}, {2, 2}, {1, 1, 1, 1}),
                       testing::conv({16, 8, 7, 7}, {2, 2}, {3, 3, 3, 3})}) {
    testing::fill_weights(s, rng);
    for (const Shape& in : {Shape{8, 48, 1, 1}, Shape{3, 48, 2, 2}, Shape{2, 48, 1, 3}, Shape{2, 48, 6, 6}, Shape{8, 48, 1, 1}}) {
      if (in[1] != s.weight_shape[1]) continue;
      SCOPED_TRACE(shape_to_string(s.weight_shape) + " on " + shape_to_string(in));
      testing::expect_matches_reference(*acc, s, in, testing::random_field(numel(in), rng));
    }
    const Shape small = {2, 8, 2, 2};
    if (s.weight_shape[1] == 8) testing::expect_matches_reference(*acc, s, small, testing::random_field(numel(small), rng));
  }
}

TEST_P(CpuAcceleratorTest, ConcurrentRunsAreExact) {
  auto acc = make();
  if (!acc) GTEST_SKIP() << "8-bit planes are not exact on this CPU (no VNNI)";
  std::mt19937_64 rng(3);
  std::vector<Case> cases = testing::standard_cases();
  cases.resize(6);
  std::vector<int32_t> ids;
  std::vector<std::vector<uint32_t>> xs, wants;
  for (Case& c : cases) {
    testing::fill_weights(c.spec, rng);
    ids.push_back(acc->add_layer(c.spec).value());
    xs.push_back(testing::random_field(numel(c.input_shape), rng));
    wants.emplace_back(static_cast<size_t>(numel(output_shape(c.spec, c.input_shape).value())));
    ASSERT_TRUE(reference_linear(c.spec, c.input_shape, xs.back(), wants.back()).ok());
  }
  std::atomic<int> mismatches{0}, failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int rep = 0; rep < 5; ++rep) {
        const size_t i = static_cast<size_t>(t + rep) % cases.size();
        std::vector<uint32_t> y(wants[i].size());
        if (!acc->run(ids[i], cases[i].input_shape, xs[i], y).ok()) ++failures;
        if (y != wants[i]) ++mismatches;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(mismatches.load(), 0);
}

TEST_P(CpuAcceleratorTest, RejectsBadRuns) {
  auto acc = make();
  if (!acc) GTEST_SKIP() << "8-bit planes are not exact on this CPU (no VNNI)";
  LinearSpec s = testing::matmul(2, 3);
  s.weights = {1, 2, 3, 4, 5, 6};
  const int32_t id = acc->add_layer(s).value();
  std::vector<uint32_t> x = {1, 2, kFieldPrime}, y(2);
  EXPECT_EQ(acc->run(id, {1, 3}, x, y).code(), StatusCode::kInvalidArgument);
  x[2] = 3;
  EXPECT_TRUE(acc->run(id, {1, 3}, x, y).ok());
  EXPECT_EQ(y, (std::vector<uint32_t>{14, 32}));
  EXPECT_EQ(acc->run(id + 1, {1, 3}, x, y).code(), StatusCode::kNotFound);
  EXPECT_EQ(acc->run(-1, {1, 3}, x, y).code(), StatusCode::kNotFound);
  EXPECT_FALSE(acc->run(id, {1, 4}, x, y).ok());
  std::vector<uint32_t> short_y(1);
  EXPECT_FALSE(acc->run(id, {1, 3}, x, short_y).ok());
  s.weights[0] = -128;
  EXPECT_FALSE(acc->add_layer(s).ok());
}

INSTANTIATE_TEST_SUITE_P(PlaneBits, CpuAcceleratorTest, ::testing::Values(0, 7, 8),
                         [](const ::testing::TestParamInfo<int>& info) {
                           return info.param == 0 ? std::string("auto") : std::to_string(info.param) + "bit";
                         });

// The direct paths (tenet's AMX kernel or oneDNN's convolution) and the GEMM path on the same
// layers: every ResNet-like case, with inputs whose
// work items are whole images and strips of rows (a large spatial size, asymmetric pads), at each
// plane width; both equal the reference.
TEST_P(CpuAcceleratorTest, DirectAndGemmPathsAgree) {
  auto direct = make();
  if (!direct) GTEST_SKIP() << "8-bit planes are not exact on this CPU (no VNNI)";
  CpuAcceleratorOptions options;
  options.plane_bits = GetParam();
  options.direct_conv = false;
  options.amx_conv = false;
  auto gemm = make_cpu_accelerator(options);
  ASSERT_TRUE(gemm.ok()) << gemm.status().to_string();
  std::mt19937_64 rng(11);
  std::vector<Case> cases = testing::standard_cases();
  cases.push_back({"strips3x3", testing::conv({32, 16, 3, 3}, {1, 1}, {1, 1, 1, 1}), {1, 16, 96, 80}});
  cases.push_back({"strips_asym", testing::conv({48, 8, 3, 5}, {2, 1}, {2, 0, 1, 3}), {3, 8, 131, 67}});
  cases.push_back({"strips1x1", testing::conv({256, 64, 1, 1}), {1, 64, 56, 56}});
  cases.push_back({"strips_dilated", testing::conv({24, 16, 3, 3}, {1, 1}, {2, 2, 2, 2}, 1, {2, 2}), {2, 16, 70, 41}});
  // Found by fuzzing: the last output row is padding only (pad = kernel extent); oneDNN 2.6's AMX
  // convolution crashed on it, so such layers keep the GEMM.
  cases.push_back({"pad_as_wide_as_kernel", testing::conv({29, 28, 5, 3}, {3, 3}, {0, 2, 5, 0}), {3, 28, 105, 17}});
  // Found by fuzzing: oneDNN 2.6's AMX convolution sums wrongly on a 1x4 kernel with strides 3x2
  // at some heights, so non-square layers keep the GEMM.
  cases.push_back({"non_square_1x4s3x2", testing::conv({32, 39, 1, 4}, {3, 2}), {1, 39, 62, 61}});
  cases.push_back({"non_square_1x4s3x2_h20", testing::conv({32, 39, 1, 4}, {3, 2}), {4, 39, 20, 61}});
  int direct_layers = 0;
  for (Case& c : cases) {
    if (c.spec.kind != LinearSpec::Kind::kConv2d) continue;
    SCOPED_TRACE(c.name);
    testing::fill_weights(c.spec, rng);
    const std::vector<uint32_t> x = testing::random_field(numel(c.input_shape), rng);
    testing::expect_matches_reference(*direct, c.spec, c.input_shape, x);
    testing::expect_matches_reference(**gemm, c.spec, c.input_shape, x);
    const int32_t id = direct->add_layer(c.spec).value();
    const int32_t gemm_id = (*gemm)->add_layer(c.spec).value();
    EXPECT_EQ(cpu_layer_path(**gemm, gemm_id).value(), "gemm");
    const std::string path = cpu_layer_path(*direct, id).value();
    if (path != "gemm") ++direct_layers;
    std::vector<uint32_t> y(static_cast<size_t>(numel(output_shape(c.spec, c.input_shape).value()))), y_gemm(y.size());
    ASSERT_TRUE(direct->run(id, c.input_shape, x, y).ok());
    ASSERT_TRUE((*gemm)->run(gemm_id, c.input_shape, x, y_gemm).ok());
    EXPECT_EQ(y, y_gemm) << path;
  }
  // Where oneDNN has VNNI/AMX int8 convolutions, the ordinary (non-grouped) layers take them.
  const unsigned isa = static_cast<unsigned>(dnnl_get_effective_cpu_isa());
  if ((isa & dnnl_cpu_isa_avx512_core_vnni) == dnnl_cpu_isa_avx512_core_vnni) {
    EXPECT_GE(direct_layers, 8);
  }
}

TEST_P(CpuAcceleratorTest, FailedSelfTestFallsBackToGemm) {
  CpuAcceleratorOptions options;
  options.plane_bits = GetParam();
  options.fail_self_test_for_testing = true;
  auto acc = make_cpu_accelerator(options);
  if (!acc.ok() && GetParam() == 8) GTEST_SKIP() << "8-bit planes are not exact on this CPU (no VNNI)";
  ASSERT_TRUE(acc.ok()) << acc.status().to_string();
  std::mt19937_64 rng(5);
  for (Case c : testing::standard_cases()) {
    if (c.spec.kind != LinearSpec::Kind::kConv2d) continue;
    SCOPED_TRACE(c.name);
    testing::fill_weights(c.spec, rng);
    const int32_t id = (*acc)->add_layer(c.spec).value();
    EXPECT_EQ(cpu_layer_path(**acc, id).value(), "gemm");
    testing::expect_matches_reference(**acc, c.spec, c.input_shape, testing::random_field(numel(c.input_shape), rng));
  }
}

TEST_P(CpuAcceleratorTest, FailedShapeCheckFallsBackToGemm) {
  CpuAcceleratorOptions options;
  options.plane_bits = GetParam();
  options.fail_shape_check_for_testing = true;
  auto acc = make_cpu_accelerator(options);
  if (!acc.ok() && GetParam() == 8) GTEST_SKIP() << "8-bit planes are not exact on this CPU (no VNNI)";
  ASSERT_TRUE(acc.ok()) << acc.status().to_string();
  std::mt19937_64 rng(6);
  for (Case c : testing::standard_cases()) {
    if (c.spec.kind != LinearSpec::Kind::kConv2d) continue;
    SCOPED_TRACE(c.name);
    testing::fill_weights(c.spec, rng);
    testing::expect_matches_reference(**acc, c.spec, c.input_shape, testing::random_field(numel(c.input_shape), rng));
  }
}

// Several threads on one direct layer whose runs are cut into many work items (and so run nested
// in OpenMP), with shapes that need new primitives while others run.
TEST_P(CpuAcceleratorTest, ConcurrentDirectRunsAreExact) {
  auto acc = make();
  if (!acc) GTEST_SKIP() << "8-bit planes are not exact on this CPU (no VNNI)";
  std::mt19937_64 rng(9);
  LinearSpec spec = testing::conv({64, 32, 3, 3}, {1, 1}, {1, 1, 1, 1});
  testing::fill_weights(spec, rng);
  const int32_t id = acc->add_layer(spec).value();
  const std::vector<Shape> shapes = {{2, 32, 64, 64}, {1, 32, 40, 72}, {3, 32, 17, 9}};
  std::vector<std::vector<uint32_t>> xs, wants;
  for (const Shape& in : shapes) {
    xs.push_back(testing::random_field(numel(in), rng));
    wants.emplace_back(static_cast<size_t>(numel(output_shape(spec, in).value())));
    ASSERT_TRUE(reference_linear(spec, in, xs.back(), wants.back()).ok());
  }
  std::atomic<int> mismatches{0}, failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int rep = 0; rep < 4; ++rep) {
        const size_t i = static_cast<size_t>(t + rep) % shapes.size();
        std::vector<uint32_t> y(wants[i].size());
        if (!acc->run(id, shapes[i], xs[i], y).ok()) ++failures;
        if (y != wants[i]) ++mismatches;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(mismatches.load(), 0);
}

TEST(CpuAccelerator, LayerPath) {
  auto acc = make_cpu_accelerator(0);
  ASSERT_TRUE(acc.ok()) << acc.status().to_string();
  LinearSpec m = testing::matmul(2, 3);
  m.weights = {1, 2, 3, 4, 5, 6};
  const int32_t id = (*acc)->add_layer(m).value();
  EXPECT_EQ(cpu_layer_path(**acc, id).value(), "gemm");
  EXPECT_EQ(cpu_layer_path(**acc, id + 1).status().code(), StatusCode::kNotFound);
}

TEST(CpuAccelerator, RejectsBadOptions) {
  CpuAcceleratorOptions options;
  options.plane_bits = 6;
  EXPECT_EQ(make_cpu_accelerator(options).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(make_cpu_accelerator(-1).status().code(), StatusCode::kInvalidArgument);
  auto acc = make_cpu_accelerator(0);
  ASSERT_TRUE(acc.ok()) << acc.status().to_string();
  EXPECT_EQ((*acc)->name(), "cpu");
}

}  // namespace
}  // namespace tenet::accel
