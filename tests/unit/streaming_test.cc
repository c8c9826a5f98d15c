// Weight streaming (engine/cpu/weight_streaming.h) and output-channel tiling
// (passes::tile_linear_outputs): a model compiled under a memory budget gives bitwise the same
// outputs as the unbounded one, keeps within its plan, and refuses budgets it cannot meet.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>

#include <atomic>
#include <cstring>

#include "engine/cpu/compiled_model.h"
#include "engine/onnx/importer.h"
#include "engine/passes/passes.h"
#include "model_builder.h"
#include "failing_store.h"

namespace tenet {
namespace {

using testing::ModelBuilder;

// conv(3->64, 3x3) + relu -> conv(64->64) -> global pool -> flatten -> fc(64->4096, transB) + relu
// -> fc(4096 -> 1000, no transB, MatMul) : weights 0.007 + 0.15 + 1.0 + 16.4 MB.
std::string model_bytes() {
  ModelBuilder b;
  b.input("x", {-1, 3, 16, 16});
  b.random_initializer("w1", {64, 3, 3, 3}, 0.2f);
  b.random_initializer("b1", {64}, 0.1f);
  b.random_initializer("w2", {64, 64, 3, 3}, 0.05f);
  b.random_initializer("w3", {4096, 64}, 0.1f);
  b.random_initializer("b3", {4096}, 0.1f);
  b.random_initializer("w4", {4096, 1000}, 0.02f);
  auto& c1 = b.node("Conv", {"x", "w1", "b1"}, {"c1"});
  ModelBuilder::attr(c1, "pads", std::vector<int64_t>{1, 1, 1, 1});
  b.node("Relu", {"c1"}, {"r1"});
  auto& c2 = b.node("Conv", {"r1", "w2"}, {"c2"});
  ModelBuilder::attr(c2, "pads", std::vector<int64_t>{1, 1, 1, 1});
  b.node("GlobalAveragePool", {"c2"}, {"p"});
  b.node("Flatten", {"p"}, {"f"});
  auto& g = b.node("Gemm", {"f", "w3", "b3"}, {"fc1"});
  ModelBuilder::attr(g, "transB", int64_t{1});
  b.node("Relu", {"fc1"}, {"r3"});
  b.node("MatMul", {"r3", "w4"}, {"y"});
  b.output("y");
  return b.bytes();
}

ir::Graph import(const std::string& bytes) {
  auto g = onnx_import::import_model_bytes(std::span(reinterpret_cast<const std::byte*>(bytes.data()), bytes.size()));
  EXPECT_TRUE(g.ok()) << g.status().to_string();
  return std::move(g).value();
}

std::vector<float> run(cpu::CompiledModel& m, int64_t batch = 1) {
  const auto values = testing::random_values(static_cast<size_t>(batch) * 3 * 16 * 16, 7);
  Tensor x = Tensor::from_vector<float>({batch, 3, 16, 16}, values);
  std::vector<ConstTensorView> in{x.view()};
  std::vector<Tensor> out;
  Status s = m.run(in, out);
  EXPECT_TRUE(s.ok()) << s.to_string();
  if (!s.ok()) return {};
  return std::vector<float>(out[0].as<float>(), out[0].as<float>() + out[0].numel());
}

class StreamingTest : public ::testing::TestWithParam<cpu::StreamingOptions::Prefetch> {};

// Batch 1: the fc layers are matrix-vector products (tenet_gemv) whose weights stream piece by
// piece, untiled. Batch 2: they are oneDNN matmuls, tiled to fit ring slots.
TEST_P(StreamingTest, BitwiseEqualUnderABudgetAndWithinThePlan) {
  const std::string bytes = model_bytes();
  for (int64_t batch : {1, 2}) {
    SCOPED_TRACE(batch);
    const std::map<std::string, Shape> shapes = {{"x", {batch, 3, 16, 16}}};
    cpu::CompileOptions plain;
    plain.threads = 2;
    auto full = cpu::compile_model(import(bytes), shapes, plain);
    ASSERT_TRUE(full.ok()) << full.status().to_string();
    const std::vector<float> want = run(**full, batch);
    ASSERT_FALSE(want.empty());
    const auto& steps = (*full)->steps();
    const bool gemv = std::any_of(steps.begin(), steps.end(), [](const auto& st) { return st.kernel == "tenet_gemv"; });
    EXPECT_EQ(gemv, batch == 1);
    for (const auto& st : steps) {
      if (st.kernel != "tenet_gemv") continue;
      // The Gemm (transB) computes on the graph's [N, K] constant itself: shared, not a copy, so
      // memory accounting counts it once. The MatMul's [K, N] weight is transposed into a copy.
      EXPECT_EQ(st.shared_weight_bytes, st.op_type == "Gemm" ? uint64_t{4096} * 64 * sizeof(float) : 0u) << st.node;
      EXPECT_LT(st.shared_weight_bytes, st.weight_bytes);  // the bias is always the kernel's own
    }

    for (uint64_t budget : {uint64_t{64} << 20, uint64_t{12} << 20, uint64_t{6} << 20}) {
      SCOPED_TRACE(budget);
      cpu::CompileOptions o = plain;
      auto store = cpu::make_plain_weight_store();
      o.streaming.store = store;
      o.streaming.budget_bytes = budget;
      o.streaming.prefetch = GetParam();
      o.streaming.max_loading_overhead = 0;  // keep whatever fits (the loading-overhead bound: below)
      auto m = cpu::compile_model(import(bytes), shapes, o);
      ASSERT_TRUE(m.ok()) << m.status().to_string();
      const cpu::StreamingPlan& p = (*m)->streaming_plan();
      EXPECT_TRUE(p.enabled);
      EXPECT_LE(p.planned_peak_bytes, budget);
      EXPECT_EQ(p.planned_peak_bytes, p.arena_bytes + p.scratchpad_bytes + p.constant_bytes + p.resident_weight_bytes +
                                          p.ring_slot_bytes * static_cast<uint64_t>(p.ring_slots) + p.piece_buffer_bytes);
      if (budget == (uint64_t{64} << 20)) {
        EXPECT_EQ(p.streamed_weight_bytes, 0u);  // everything fits: nothing is loaded per run
        EXPECT_EQ(p.tiled_layers, 0);            // 16 MB per slot: no layer is larger
      } else if (batch == 1) {
        EXPECT_GT(p.streamed_in_pieces_bytes, 0u);  // the 16.4 MB MatMul, piece by piece
        EXPECT_EQ(p.tiled_layers, 0);
        EXPECT_GT(p.piece_buffer_bytes, 0u);
        EXPECT_LE(p.piece_buffer_bytes, 2u * 512 * 1024);  // one piece of whole rows per thread
        if (budget == (uint64_t{12} << 20)) {
          // 12 MiB holds part of the 16.4 MB weight: its leading pieces stay resident.
          EXPECT_TRUE(std::any_of(p.placements.begin(), p.placements.end(),
                                  [](const cpu::WeightPlacement& w) { return w.in_pieces && w.resident_bytes > 0; }));
        }
      } else {
        EXPECT_GT(p.streamed_weight_bytes, 0u);
        EXPECT_EQ(p.streamed_in_pieces_bytes, 0u);
        EXPECT_GT(p.tiled_layers, 0);  // the 16.4 MB MatMul exceeds a slot of budget/8
        // Tiles aim at the target; a kernel's blocked layout may pad a tile a little beyond it.
        EXPECT_LE(p.ring_slot_bytes, 2 * cpu::ring_slot_target_bytes(budget, o.streaming.ring_slots));
      }
      if (p.streamed_weight_bytes > p.streamed_in_pieces_bytes) {
        EXPECT_EQ(p.background_loading, GetParam() == cpu::StreamingOptions::Prefetch::kBackground);
      }
      for (int rep = 0; rep < 3; ++rep) EXPECT_EQ(run(**m, batch), want);  // bitwise, and again (buffer reuse)
    }
  }
}

// The loading-overhead bound: with loads that cost next to nothing against the model's compute,
// a 64 MiB budget that holds every weight keeps none of the large ones resident; with loads that
// cost more than the bound allows even when streaming the least, it keeps what fits (as with the
// bound off); in between, it keeps what the bound asks for. The bits never change.
TEST(Streaming, KeepsResidentOnlyWhatTheLoadingOverheadBoundNeeds) {
  const std::string bytes = model_bytes();
  const std::map<std::string, Shape> shapes = {{"x", {1, 3, 16, 16}}};
  cpu::CompileOptions plain;
  plain.threads = 2;
  auto full = cpu::compile_model(import(bytes), shapes, plain);
  ASSERT_TRUE(full.ok());
  const std::vector<float> want = run(**full);
  double flops = 0;
  for (const auto& st : (*full)->steps()) flops += static_cast<double>(st.flops);
  const double compute_s = flops / cpu::fp32_flops_per_second(2);
  constexpr uint64_t kLarge = 4096 * 1000 * 4;  // the MatMul's weight: the one too large to hold under the 6 MiB budget

  struct Case {
    const char* what;
    double rate;  // bytes per second
    uint64_t budget;
  };
  // 0.2 of the compute time loads 1000x the weights / about a third of the MatMul's / 1e-6 of a byte.
  const Case cases[] = {{"cheap loads", 1000 * 17.6e6 / (0.2 * compute_s), uint64_t{64} << 20},
                        {"some loads", (kLarge / 3.0) / (0.2 * compute_s), uint64_t{64} << 20},
                        {"dear loads", 1e-6 / (0.2 * compute_s), uint64_t{6} << 20}};
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    cpu::CompileOptions o = plain;
    o.streaming.store = std::make_shared<testing::RatedStore>(c.rate);
    o.streaming.budget_bytes = c.budget;
    o.streaming.max_loading_overhead = 0.2;
    auto m = cpu::compile_model(import(bytes), shapes, o);
    ASSERT_TRUE(m.ok()) << m.status().to_string();
    const cpu::StreamingPlan& p = (*m)->streaming_plan();
    EXPECT_DOUBLE_EQ(p.max_loading_overhead, 0.2);
    EXPECT_GT(p.predicted_compute_ms, 0);
    uint64_t streamable = 0;
    for (const auto& w : p.placements) streamable += w.bytes;
    if (c.rate > 1e12) {
      EXPECT_EQ(p.resident_cap_bytes, 0u);
      EXPECT_EQ(p.streamed_weight_bytes, streamable);  // all of it, though 64 MiB holds it
    } else if (c.budget == (uint64_t{64} << 20)) {
      // A third of the MatMul's bytes may stream: the cap keeps the rest, and the plan's loading
      // stays within the bound.
      EXPECT_GT(p.resident_cap_bytes, 0u);
      EXPECT_LT(p.resident_cap_bytes, streamable);
      EXPECT_GT(p.streamed_weight_bytes, 0u);
      EXPECT_LE(p.streamed_weight_bytes, streamable - p.resident_cap_bytes + 256 * 1024);  // a piece's rounding
      EXPECT_LE(p.predicted_loading_ms, 0.2 * p.predicted_compute_ms * 1.05);
    } else {
      EXPECT_GE(p.resident_cap_bytes, streamable - 1);  // the bound asks for everything: the budget decides
      EXPECT_GT(p.streamed_in_pieces_bytes, 0u);        // 6 MiB cannot hold the MatMul
      EXPECT_GT(p.predicted_loading_ms, 0.2 * p.predicted_compute_ms);
    }
    EXPECT_LE(p.planned_peak_bytes, c.budget);
    for (int rep = 0; rep < 2; ++rep) EXPECT_EQ(run(**m), want);
  }
}

TEST(Streaming, RefusesABudgetBelowTheArena) {
  cpu::CompileOptions o;
  o.threads = 1;
  o.streaming.store = cpu::make_plain_weight_store();
  o.streaming.budget_bytes = 64 * 1024;
  auto m = cpu::compile_model(import(model_bytes()), {{"x", {1, 3, 16, 16}}}, o);
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(m.status().code(), StatusCode::kResourceExhausted);
  EXPECT_NE(m.status().message().find("budget"), std::string::npos) << m.status().message();
}

using testing::FailingStore;  // failing_store.h

TEST_P(StreamingTest, AStoreFailureFailsTheRunNamingTheStep) {
  auto store = std::make_shared<FailingStore>();
  cpu::CompileOptions o;
  o.threads = 1;
  o.streaming.prefetch = GetParam();
  o.streaming.store = store;
  o.streaming.budget_bytes = 6 << 20;
  auto m = cpu::compile_model(import(model_bytes()), {{"x", {1, 3, 16, 16}}}, o);
  ASSERT_TRUE(m.ok()) << m.status().to_string();
  ASSERT_GT((*m)->streaming_plan().streamed_weight_bytes, 0u);
  store->fail_ = true;
  Tensor x = Tensor::from_vector<float>({1, 3, 16, 16}, testing::random_values(3 * 16 * 16, 7));
  std::vector<ConstTensorView> in{x.view()};
  std::vector<Tensor> out;
  Status s = (*m)->run(in, out);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.code(), StatusCode::kDataLoss);
  EXPECT_NE(s.message().find("loading the weights of step"), std::string::npos) << s.message();
  store->fail_ = false;  // the next run starts clean
  EXPECT_TRUE((*m)->run(in, out).ok());
}

INSTANTIATE_TEST_SUITE_P(Prefetch, StreamingTest,
                         ::testing::Values(cpu::StreamingOptions::Prefetch::kInline, cpu::StreamingOptions::Prefetch::kBackground),
                         [](const auto& info) {
                           return info.param == cpu::StreamingOptions::Prefetch::kInline ? std::string("Inline") : std::string("Background");
                         });

TEST(Tiling, SplitsLargeLinearLayersAlongOutputs) {
  ir::Graph g = import(model_bytes());
  passes::PassStats stats;
  ASSERT_TRUE(passes::prepare_graph(g, {{"x", {1, 3, 16, 16}}}, passes::OptimizeOptions{}, stats).ok());
  // Layers the caller keeps whole (batch-1 matrix-vector products, streamed in pieces) stay whole.
  ir::Graph kept = g;
  auto none = passes::tile_linear_outputs(kept, 512 << 10, [&kept](const ir::Node& n) { return cpu::gemv_applicable(kept, n); });
  ASSERT_TRUE(none.ok());
  EXPECT_EQ(*none, 0);
  auto tiled = passes::tile_linear_outputs(g, 512 << 10);
  ASSERT_TRUE(tiled.ok()) << tiled.status().to_string();
  EXPECT_EQ(*tiled, 2);  // the 1.0 MB Gemm and the 16.4 MB MatMul
  int concats = 0;
  for (const ir::Node& n : g.nodes) {
    if (n.op_type == "Concat") ++concats;
    if (n.op_type != "Gemm" && n.op_type != "MatMul") continue;
    const ir::Value& w = g.value(n.inputs[1]);
    EXPECT_LE(w.constant.size_bytes(), (512u << 10) + 64 * 4096 * 4) << n.name;  // within one 64-column round-up
    if (n.op_type == "Gemm") {
      EXPECT_EQ(n.post_ops.size(), 1u) << "each tile keeps the fused Relu";
    }
  }
  EXPECT_EQ(concats, 2);
  EXPECT_TRUE(g.validate().ok());
  EXPECT_FALSE(passes::tile_linear_outputs(g, 0).ok());
}

}  // namespace
}  // namespace tenet
