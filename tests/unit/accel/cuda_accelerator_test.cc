// The CUDA backend equals the reference (and so the CPU backend) bit for bit on the standard
// cases and maximal operands. Skips where tenet was built without CUDA or no GPU is present.
#include "accel_test_util.h"

namespace tenet::accel {
namespace {

std::unique_ptr<Accelerator> cuda_or_skip(std::string* why) {
  auto acc = make_cuda_accelerator(0);
  if (acc.ok()) return std::move(acc).value();
  *why = acc.status().to_string();
  EXPECT_TRUE(acc.status().code() == StatusCode::kUnimplemented ||
              acc.status().code() == StatusCode::kFailedPrecondition)
      << *why;
  return nullptr;
}

TEST(CudaAccelerator, StandardCases) {
  std::string why;
  auto acc = cuda_or_skip(&why);
  if (!acc) GTEST_SKIP() << why;
  EXPECT_EQ(acc->name(), "cuda");
  std::mt19937_64 rng(1);
  for (testing::Case c : testing::standard_cases()) {
    SCOPED_TRACE(c.name);
    testing::fill_weights(c.spec, rng);
    testing::expect_matches_reference(*acc, c.spec, c.input_shape, testing::random_field(numel(c.input_shape), rng));
  }
}

TEST(CudaAccelerator, MaximalOperands) {
  std::string why;
  auto acc = cuda_or_skip(&why);
  if (!acc) GTEST_SKIP() << why;
  for (int8_t w : {int8_t{127}, int8_t{-127}}) {
    LinearSpec c = testing::conv({4, 512, 3, 3}, {1, 1}, {1, 1, 1, 1});
    c.weights.assign(static_cast<size_t>(numel(c.weight_shape)), w);
    testing::expect_matches_reference(*acc, c, {2, 512, 3, 3}, std::vector<uint32_t>(2 * 512 * 9, kFieldPrime - 1));
    LinearSpec m = testing::matmul(2, kMaxReductionCount);
    m.weights.assign(static_cast<size_t>(numel(m.weight_shape)), w);
    testing::expect_matches_reference(*acc, m, {3, kMaxReductionCount},
                                      std::vector<uint32_t>(3 * kMaxReductionCount, kFieldPrime - 1));
  }
}

}  // namespace
}  // namespace tenet::accel
