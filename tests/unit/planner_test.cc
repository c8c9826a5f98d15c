#include <gtest/gtest.h>

#include <random>

#include "engine/plan/arena_planner.h"

namespace tenet::plan {
namespace {

TEST(PlannerTest, ChainReusesMemory) {
  // a -> b -> c -> d: only neighbours are live together.
  std::vector<BufferRequest> r = {{1000, 0, 1, "a"}, {1000, 1, 2, "b"}, {1000, 2, 3, "c"}, {1000, 3, 4, "d"}};
  ArenaPlan p = plan_greedy_by_size(r);
  EXPECT_TRUE(verify_plan(r, p).ok());
  EXPECT_EQ(p.peak_bytes, 2 * ((1000 + 63) / 64 * 64u));
  EXPECT_EQ(p.total_bytes, 4000u);
}

TEST(PlannerTest, NoReusePlanIsTheSumAndVerifies) {
  std::vector<BufferRequest> r = {{1000, 0, 1, "a"}, {1000, 1, 2, "b"}, {1000, 2, 3, "c"}, {1000, 3, 4, "d"}};
  ArenaPlan p = plan_without_reuse(r);
  EXPECT_TRUE(verify_plan(r, p).ok());
  EXPECT_EQ(p.peak_bytes, 4 * ((1000 + 63) / 64 * 64u));
  EXPECT_GT(p.peak_bytes, plan_greedy_by_size(r).peak_bytes);
}

TEST(PlannerTest, RandomPlansNeverOverlap) {
  std::mt19937 rng(7);
  for (int trial = 0; trial < 200; ++trial) {
    std::vector<BufferRequest> r;
    const int n = 1 + static_cast<int>(rng() % 60);
    for (int i = 0; i < n; ++i) {
      int a = static_cast<int>(rng() % 50), b = static_cast<int>(rng() % 50);
      r.push_back({rng() % 100000, std::min(a, b), std::max(a, b), "b" + std::to_string(i)});
    }
    ArenaPlan p = plan_greedy_by_size(r);
    ASSERT_TRUE(verify_plan(r, p).ok()) << verify_plan(r, p).to_string();
    EXPECT_LE(p.peak_bytes, p.total_bytes + 64 * r.size());
  }
}

TEST(PlannerTest, VerifierCatchesOverlap) {
  std::vector<BufferRequest> r = {{100, 0, 2, "a"}, {100, 1, 3, "b"}};
  ArenaPlan p;
  p.offsets = {0, 64};  // overlapping bytes while both are live
  p.peak_bytes = 256;
  Status s = verify_plan(r, p);
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("overlap"), std::string::npos);
  p.offsets = {0, 128};
  EXPECT_TRUE(verify_plan(r, p).ok());
  p.peak_bytes = 200;  // b ends past the arena
  EXPECT_FALSE(verify_plan(r, p).ok());
}

TEST(PlannerTest, FormatPrintsPeak) {
  std::vector<BufferRequest> r = {{100, 0, 1, "x"}};
  ArenaPlan p = plan_greedy_by_size(r);
  EXPECT_NE(format_plan(r, p).find("arena peak"), std::string::npos);
}

}  // namespace
}  // namespace tenet::plan
