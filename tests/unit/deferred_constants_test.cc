// Bounded loading (ir/graph.h, deferred constants): a model imported with its large weights in a
// constant store, never all in memory, compiles to the same kernels and runs bitwise like the
// model imported whole, with and without weight streaming; a store that hands back other bytes
// fails the load cleanly.
#include <gtest/gtest.h>

#include <atomic>
#include <cstring>
#include <map>

#include "engine/cpu/compiled_model.h"
#include "engine/cpu/weight_streaming.h"
#include "engine/onnx/importer.h"
#include "model_builder.h"
#include "failing_store.h"

namespace tenet {
namespace {

using testing::ModelBuilder;

// conv(3->64) + BN -> relu -> conv(64->128, 295 KB, deferred) + BN (folded: read back, folded,
// deferred again) -> + a [1, 128, 16, 16] constant (131 KB, deferred, read at run time) -> global
// pool -> flatten -> Gemm(128 -> 2048, transB, 1 MB: tenet_gemv shares it at batch 1, tiled by rows
// at batch 2) + relu -> MatMul(2048 -> 1000, 8 MB: gemv copies it at batch 1, tiled by columns at 2).
std::string model_bytes() {
  ModelBuilder b;
  b.input("x", {-1, 3, 16, 16});
  b.random_initializer("w1", {64, 3, 3, 3}, 0.2f);
  b.random_initializer("s1", {64}, 0.1f, 1.f);
  b.random_initializer("bb1", {64}, 0.1f);
  b.random_initializer("mu1", {64}, 0.1f);
  b.random_initializer("var1", {64}, 0.05f, 1.f);
  b.random_initializer("w2", {128, 64, 3, 3}, 0.05f);
  b.random_initializer("s2", {128}, 0.1f, 1.f);
  b.random_initializer("bb2", {128}, 0.1f);
  b.random_initializer("mu2", {128}, 0.1f);
  b.random_initializer("var2", {128}, 0.05f, 1.f);
  b.random_initializer("addc", {1, 128, 16, 16}, 0.1f);
  b.random_initializer("w3", {2048, 128}, 0.1f);
  b.random_initializer("b3", {2048}, 0.1f);
  b.random_initializer("w4", {2048, 1000}, 0.02f);
  auto& c1 = b.node("Conv", {"x", "w1"}, {"c1"});
  ModelBuilder::attr(c1, "pads", std::vector<int64_t>{1, 1, 1, 1});
  b.node("BatchNormalization", {"c1", "s1", "bb1", "mu1", "var1"}, {"n1"});
  b.node("Relu", {"n1"}, {"r1"});
  auto& c2 = b.node("Conv", {"r1", "w2"}, {"c2"});
  ModelBuilder::attr(c2, "pads", std::vector<int64_t>{1, 1, 1, 1});
  b.node("BatchNormalization", {"c2", "s2", "bb2", "mu2", "var2"}, {"n2"});
  b.node("Add", {"n2", "addc"}, {"a2"});
  b.node("GlobalAveragePool", {"a2"}, {"p"});
  b.node("Flatten", {"p"}, {"f"});
  auto& g = b.node("Gemm", {"f", "w3", "b3"}, {"fc1"});
  ModelBuilder::attr(g, "transB", int64_t{1});
  b.node("Relu", {"fc1"}, {"r3"});
  b.node("MatMul", {"r3", "w4"}, {"y"});
  b.output("y");
  return b.bytes();
}

Result<ir::Graph> import(const std::string& bytes, std::shared_ptr<ir::ConstantStore> store = nullptr) {
  onnx_import::ImportOptions o;
  o.constant_store = std::move(store);
  return onnx_import::import_model_bytes(std::span(reinterpret_cast<const std::byte*>(bytes.data()), bytes.size()), o);
}

std::vector<float> run(cpu::CompiledModel& m, int64_t batch) {
  Tensor x = Tensor::from_vector<float>({batch, 3, 16, 16}, testing::random_values(static_cast<size_t>(batch) * 3 * 16 * 16, 7));
  std::vector<ConstTensorView> in{x.view()};
  std::vector<Tensor> out;
  Status s = m.run(in, out);
  EXPECT_TRUE(s.ok()) << s.to_string();
  if (!s.ok()) return {};
  return std::vector<float>(out[0].as<float>(), out[0].as<float>() + out[0].numel());
}

TEST(DeferredConstants, ImportDefersOnlyLargeInitializers) {
  auto store = cpu::make_plain_weight_store();
  auto g = import(model_bytes(), store);
  ASSERT_TRUE(g.ok()) << g.status().to_string();
  uint64_t deferred = 0;
  for (const ir::Value& v : g->values) {
    if (!v.is_constant()) continue;
    const bool large = v.constant_bytes() >= 64 * 1024;
    EXPECT_EQ(v.deferred, large) << v.name;
    EXPECT_EQ(v.constant.defined(), !large) << v.name;  // the large ones are not in memory
    if (large) deferred += v.constant_bytes();
  }
  EXPECT_EQ(deferred, (128u * 64 * 9 + 128 * 256 + 2048 * 128 + 2048 * 1000) * sizeof(float));
  EXPECT_EQ(store->stored_bytes(), deferred);
  // Read back whole and by range: the bytes that were imported.
  auto whole = import(model_bytes());
  ASSERT_TRUE(whole.ok());
  for (size_t i = 0; i < g->values.size(); ++i) {
    if (!g->values[i].deferred) continue;
    auto t = g->load_constant(static_cast<ir::ValueId>(i));
    ASSERT_TRUE(t.ok()) << t.status().to_string();
    const Tensor& want = whole->values[i].constant;
    ASSERT_EQ(t->size_bytes(), want.size_bytes());
    EXPECT_EQ(0, std::memcmp(t->data(), want.data(), want.size_bytes())) << g->values[i].name;
    // A range across piece boundaries, not aligned to them.
    std::vector<std::byte> part(300 * 1024 < want.size_bytes() ? 300 * 1024 : want.size_bytes() / 2);
    const uint64_t off = want.size_bytes() - part.size() - 12;
    ASSERT_TRUE(g->read_constant(static_cast<ir::ValueId>(i), off, part).ok());
    EXPECT_EQ(0, std::memcmp(part.data(), static_cast<const std::byte*>(want.data()) + off, part.size()));
  }
}

// The same outputs, bit for bit: whole import vs deferred import, with no streaming and under
// budgets that stream and tile (batch 1: gemv; batch 2: tiled oneDNN matmuls).
TEST(DeferredConstants, CompilesAndRunsBitwiseEqual) {
  const std::string bytes = model_bytes();
  for (int64_t batch : {1, 2}) {
    SCOPED_TRACE(batch);
    const std::map<std::string, Shape> shapes = {{"x", {batch, 3, 16, 16}}};
    cpu::CompileOptions plain;
    plain.threads = 2;
    auto full_graph = import(bytes);
    ASSERT_TRUE(full_graph.ok());
    auto full = cpu::compile_model(std::move(*full_graph), shapes, plain);
    ASSERT_TRUE(full.ok()) << full.status().to_string();
    const std::vector<float> want = run(**full, batch);
    ASSERT_FALSE(want.empty());

    for (uint64_t budget : {uint64_t{0}, uint64_t{64} << 20, uint64_t{6} << 20}) {
      SCOPED_TRACE(budget);
      auto g = import(bytes, cpu::make_plain_weight_store());
      ASSERT_TRUE(g.ok());
      cpu::CompileOptions o = plain;
      if (budget > 0) {
        o.streaming.store = cpu::make_plain_weight_store();
        o.streaming.budget_bytes = budget;
      }
      auto m = cpu::compile_model(std::move(*g), shapes, o);
      ASSERT_TRUE(m.ok()) << m.status().to_string();
      if (budget != (uint64_t{6} << 20)) {  // nothing tiled: the same kernels as the whole import's
        ASSERT_EQ((*m)->steps().size(), (*full)->steps().size());
        for (size_t i = 0; i < (*m)->steps().size(); ++i) EXPECT_EQ((*m)->steps()[i].kernel, (*full)->steps()[i].kernel);
      }
      if (budget == (uint64_t{6} << 20)) {
        const cpu::StreamingPlan& p = (*m)->streaming_plan();
        EXPECT_LE(p.planned_peak_bytes, budget);
        if (batch == 2) {
          EXPECT_GT(p.tiled_layers, 0);
        } else {
          EXPECT_GT(p.streamed_in_pieces_bytes, 0u);
        }
        // The constant the Add reads at run time stays in memory and is counted.
        EXPECT_GE(p.constant_bytes, 128u * 256 * sizeof(float));
      }
      for (int rep = 0; rep < 2; ++rep) EXPECT_EQ(run(**m, batch), want);
    }
  }
}

using testing::FailingStore;  // failing_store.h

TEST(DeferredConstants, ATamperedStoreFailsTheLoad) {
  for (int64_t batch : {1, 2}) {
    for (bool streaming : {false, true}) {
      SCOPED_TRACE(batch);
      SCOPED_TRACE(streaming);
      auto store = std::make_shared<FailingStore>();
      auto g = import(model_bytes(), store);
      ASSERT_TRUE(g.ok());
      store->fail_ = true;
      cpu::CompileOptions o;
      o.threads = 1;
      if (streaming) {
        o.streaming.store = cpu::make_plain_weight_store();
        o.streaming.budget_bytes = 6 << 20;
      }
      auto m = cpu::compile_model(std::move(*g), {{"x", {batch, 3, 16, 16}}}, o);
      ASSERT_FALSE(m.ok());
      EXPECT_EQ(m.status().code(), StatusCode::kDataLoss) << m.status().to_string();
      EXPECT_NE(m.status().message().find("loading constant"), std::string::npos) << m.status().message();
    }
  }
}

}  // namespace
}  // namespace tenet
