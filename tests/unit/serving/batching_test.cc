// The engine-backed model and its dynamic batcher: outputs equal the engine run directly, batches
// concatenate and split correctly, a full queue is refused at once, and the delay is honoured.
#include <chrono>
#include <cstring>
#include <future>
#include <thread>

#include <gtest/gtest.h>

#include "serving/model_repository.h"
#include "serving_test_util.h"

namespace tenet::serving {
namespace {

using testing::run_direct;
using testing::tiny_graph;

Tensor rows_input(int64_t rows, uint32_t seed) {
  return Tensor::from_vector<float>({rows, 4}, tenet::testing::random_values(rows * 4, seed));
}

void expect_near_tensors(const Tensor& a, const Tensor& b) {
  ASSERT_EQ(a.shape(), b.shape());
  for (int64_t i = 0; i < a.numel(); ++i) EXPECT_NEAR(a.as<float>()[i], b.as<float>()[i], 1e-5f) << "element " << i;
}

TEST(EngineModel, MetadataFromGraph) {
  auto m = load_engine_model("tiny", tiny_graph(), {}).value();
  EXPECT_EQ(m->max_batch_size(), 8);
  ASSERT_EQ(m->inputs().size(), 1u);
  EXPECT_EQ(m->inputs()[0].shape, (Shape{-1, 4}));
  ASSERT_EQ(m->outputs().size(), 2u);
  EXPECT_EQ(m->outputs()[0].name, "y");
  EXPECT_EQ(m->outputs()[0].shape, (Shape{-1, 3}));
  EXPECT_EQ(m->outputs()[1].dtype, DType::kFloat32);
  EngineModelOptions no_batch;
  no_batch.max_batch_size = 0;
  EXPECT_EQ(load_engine_model("tiny", tiny_graph(), no_batch).value()->max_batch_size(), 0);
  EXPECT_FALSE(load_engine_model("bad/name", tiny_graph(), {}).ok());
}

TEST(EngineModel, SingleRequestMatchesEngine) {
  const ir::Graph g = tiny_graph();
  auto m = load_engine_model("tiny", g, {}).value();
  for (int64_t rows : {1, 3, 8}) {
    Tensor x = rows_input(rows, static_cast<uint32_t>(rows));
    auto want = run_direct(g, x);
    auto got = m->infer({x.clone()});
    ASSERT_TRUE(got.ok()) << got.status().to_string();
    ASSERT_EQ(got->size(), 2u);
    expect_near_tensors((*got)[0], want[0]);
    expect_near_tensors((*got)[1], want[1]);
  }
  auto st = m->stats();
  EXPECT_EQ(st.inference_count, 12u);
  EXPECT_EQ(st.execution_count, 3u);
  EXPECT_EQ(st.success.count, 3u);
}

TEST(EngineModel, RejectsBadRequestsCleanly) {
  auto m = load_engine_model("tiny", tiny_graph(), {}).value();
  EXPECT_EQ(m->infer({Tensor::from_vector<float>({1, 5}, std::vector<float>(5))}).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(m->infer({Tensor::from_vector<int32_t>({1, 4}, std::vector<int32_t>(4))}).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(m->infer({rows_input(9, 1)}).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(m->infer({}).status().code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(m->infer({rows_input(1, 1)}).ok());
  EXPECT_EQ(m->stats().fail.count, 4u);
}

TEST(EngineModel, InferWipesInputs) {
  auto m = load_engine_model("tiny", tiny_graph(), {}).value();
  Tensor x = rows_input(2, 7);
  Tensor alias = x;  // shares storage
  ASSERT_TRUE(m->infer({x}).ok());
  for (int64_t i = 0; i < alias.numel(); ++i) EXPECT_EQ(alias.as<float>()[i], 0.f);
}

TEST(DynamicBatching, ConcatenatesAndSplits) {
  const ir::Graph g = tiny_graph();
  EngineModelOptions o;
  o.max_batch_size = 8;
  o.max_queue_delay_us = 200000;  // long enough for all requests to arrive
  auto m = load_engine_model("tiny", g, o).value();
  const std::vector<int64_t> rows = {1, 2, 3, 2};  // 8 rows: one batch
  std::vector<Tensor> xs;
  for (size_t i = 0; i < rows.size(); ++i) xs.push_back(rows_input(rows[i], 100 + static_cast<uint32_t>(i)));
  std::vector<std::future<Result<std::vector<Tensor>>>> futs;
  for (const Tensor& x : xs) {
    futs.push_back(std::async(std::launch::async, [&m, x] { return m->infer({x.clone()}); }));
  }
  for (size_t i = 0; i < xs.size(); ++i) {
    auto got = futs[i].get();
    ASSERT_TRUE(got.ok()) << got.status().to_string();
    auto want = run_direct(g, xs[i]);
    expect_near_tensors((*got)[0], want[0]);
    expect_near_tensors((*got)[1], want[1]);
  }
  auto st = m->stats();
  EXPECT_EQ(st.inference_count, 8u);
  EXPECT_EQ(st.execution_count, 1u) << "the four requests should have run as one batch of 8";
  ASSERT_FALSE(st.batch_stats.empty());
  EXPECT_EQ(st.batch_stats.back().batch_size, 8u);
}

TEST(DynamicBatching, DoesNotMixShapes) {
  // A model with a dynamic non-batch dim: requests with different widths must not be combined.
  tenet::testing::ModelBuilder b;
  b.input("x", {-1, -1});
  b.node("Relu", {"x"}, {"y"});
  b.output("y");
  const std::string bytes = b.bytes();
  ir::Graph g = onnx_import::import_model_bytes(std::span<const std::byte>(reinterpret_cast<const std::byte*>(bytes.data()), bytes.size())).value();
  EngineModelOptions o;
  o.max_queue_delay_us = 100000;
  auto m = load_engine_model("relu", g, o).value();
  ASSERT_EQ(m->max_batch_size(), 8);
  auto f1 = std::async(std::launch::async, [&] { return m->infer({Tensor::from_vector<float>({1, 2}, {-1, 2})}); });
  auto f2 = std::async(std::launch::async, [&] { return m->infer({Tensor::from_vector<float>({1, 3}, {3, -4, 5})}); });
  auto f3 = std::async(std::launch::async, [&] { return m->infer({Tensor::from_vector<float>({1, 2}, {6, -7})}); });
  auto r1 = f1.get(), r2 = f2.get(), r3 = f3.get();
  ASSERT_TRUE(r1.ok() && r2.ok() && r3.ok());
  EXPECT_EQ((*r1)[0].shape(), (Shape{1, 2}));
  EXPECT_EQ((*r2)[0].shape(), (Shape{1, 3}));
  EXPECT_EQ((*r2)[0].as<float>()[2], 5.f);
  EXPECT_EQ((*r3)[0].as<float>()[0], 6.f);
  EXPECT_EQ((*r3)[0].as<float>()[1], 0.f);
  EXPECT_GE(m->stats().execution_count, 2u);
}

TEST(DynamicBatching, FullQueueIsRefusedAtOnce) {
  EngineModelOptions o;
  o.max_batch_size = 8;
  o.max_queue_delay_us = 300000;  // the first request waits in the queue for company
  o.max_queue_requests = 1;
  auto m = load_engine_model("tiny", tiny_graph(), o).value();
  auto first = std::async(std::launch::async, [&] { return m->infer({rows_input(1, 1)}); });
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  const auto t0 = std::chrono::steady_clock::now();
  auto second = m->infer({rows_input(1, 2)});
  const auto waited = std::chrono::steady_clock::now() - t0;
  EXPECT_EQ(second.status().code(), StatusCode::kResourceExhausted);
  EXPECT_LT(waited, std::chrono::milliseconds(100)) << "a full queue must not block";
  EXPECT_TRUE(first.get().ok());
  EXPECT_EQ(m->stats().rejected_queue_full, 1u);
}

TEST(DynamicBatching, HonoursMaxDelay) {
  EngineModelOptions o;
  o.max_batch_size = 8;
  o.max_queue_delay_us = 100000;
  auto m = load_engine_model("tiny", tiny_graph(), o).value();
  const auto t0 = std::chrono::steady_clock::now();
  ASSERT_TRUE(m->infer({rows_input(1, 1)}).ok());
  const auto waited = std::chrono::steady_clock::now() - t0;
  EXPECT_GE(waited, std::chrono::milliseconds(95));
  EXPECT_LT(waited, std::chrono::milliseconds(2000));
  // A full batch does not wait for the delay.
  const auto t1 = std::chrono::steady_clock::now();
  ASSERT_TRUE(m->infer({rows_input(8, 2)}).ok());
  EXPECT_LT(std::chrono::steady_clock::now() - t1, std::chrono::milliseconds(95));
}

TEST(EngineModel, MatMulAddModelMatchesEngine) {
  // MatMul + Add (the pattern the engine fuses into one FusedMatMul), served with batching.
  tenet::testing::ModelBuilder b;
  b.input("x", {-1, 4});
  b.random_initializer("W", {4, 3});
  b.random_initializer("c", {3});
  b.node("MatMul", {"x", "W"}, {"mm"});
  b.node("Add", {"mm", "c"}, {"y"});
  b.output("y");
  const std::string bytes = b.bytes();
  ir::Graph g = onnx_import::import_model_bytes(std::span<const std::byte>(reinterpret_cast<const std::byte*>(bytes.data()), bytes.size())).value();
  auto m = load_engine_model("mm", g, {}).value();
  Tensor x = rows_input(3, 9);
  auto got = m->infer({x.clone()});
  ASSERT_TRUE(got.ok()) << got.status().to_string();
  auto want = run_direct(g, x);
  expect_near_tensors((*got)[0], want[0]);
}

TEST(ModelRepository, AddAndGet) {
  ModelRepository repo;
  ASSERT_TRUE(repo.add(load_engine_model("tiny", tiny_graph(), {}).value()).ok());
  EXPECT_FALSE(repo.add(load_engine_model("tiny", tiny_graph(), {}).value()).ok());
  EXPECT_TRUE(repo.get("tiny").ok());
  EXPECT_TRUE(repo.get("tiny", "1").ok());
  EXPECT_EQ(repo.get("tiny", "2").status().code(), StatusCode::kNotFound);
  EXPECT_EQ(repo.get("other").status().code(), StatusCode::kNotFound);
  EXPECT_EQ(repo.models().size(), 1u);
}

}  // namespace
}  // namespace tenet::serving
