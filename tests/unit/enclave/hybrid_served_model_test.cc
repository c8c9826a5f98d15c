// HybridServedModel (enclave/hybrid_served_model.h): a hybrid model behind the KServe interface.
// Outputs agree with the engine, metadata shows the mode, the unblinding pool refills while the
// model is idle and a dry pool does not fail requests, a failing accelerator fails requests
// cleanly (and the model recovers with it, also when a remote accelerator process restarts).
#include <gtest/gtest.h>

#include <stdlib.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <thread>

#include <nlohmann/json.hpp>

#include "accel/server.h"
#include "engine/cpu/compiled_model.h"
#include "engine/onnx/importer.h"
#include "enclave/hybrid_served_model.h"
#include "hybrid/hybrid_test_util.h"
#include "hybrid/trusted_linear.h"
#include "model_builder.h"
#include "serving/kserve_rest.h"

namespace tenet::enclave {
namespace {

using tenet::testing::ModelBuilder;

// x [N, 3, 8, 8] -> Conv 3x3 (8) -> Relu -> GlobalAveragePool -> Flatten -> Gemm (5)
ir::Graph small_graph(int64_t batch_dim = -1) {
  ModelBuilder b;
  b.input("x", {batch_dim, 3, 8, 8}).output("y");
  b.random_initializer("w", {8, 3, 3, 3}, 0.5f);
  b.random_initializer("b", {8}, 0.1f);
  b.random_initializer("wg", {5, 8}, 0.5f);
  b.random_initializer("bg", {5}, 0.1f);
  auto& c = b.node("Conv", {"x", "w", "b"}, {"c"});
  ModelBuilder::attr(c, "pads", std::vector<int64_t>{1, 1, 1, 1});
  b.node("Relu", {"c"}, {"r"});
  b.node("GlobalAveragePool", {"r"}, {"p"});
  b.node("Flatten", {"p"}, {"f"});
  auto& g = b.node("Gemm", {"f", "wg", "bg"}, {"y"});
  ModelBuilder::attr(g, "transB", int64_t{1});
  const std::string bytes = b.bytes();
  auto graph = onnx_import::import_model_bytes(std::span<const std::byte>(reinterpret_cast<const std::byte*>(bytes.data()), bytes.size()));
  EXPECT_TRUE(graph.ok()) << graph.status().to_string();
  return graph.ok() ? std::move(graph).value() : ir::Graph{};
}

// The exact loops, failing on demand (a killed or misbehaving accelerator process).
class FlakyAccelerator final : public accel::Accelerator {
 public:
  std::string name() const override { return "flaky"; }
  Result<int32_t> add_layer(const accel::LinearSpec& spec) override { return inner_.add_layer(spec); }
  Status run(int32_t layer, const Shape& shape, std::span<const uint32_t> x, std::span<uint32_t> y) override {
    if (fail.load()) return failed_precondition("accelerator connection lost");
    ++calls;
    for (int64_t seen = max_rows.load(); shape[0] > seen && !max_rows.compare_exchange_weak(seen, shape[0]);) {
    }
    const int now = ++in_flight;
    for (int seen = max_in_flight.load(); now > seen && !max_in_flight.compare_exchange_weak(seen, now);) {
    }
    // Rendezvous: hold each product until `rendezvous` of them are in flight (or 10 s passed), so
    // that a test can tell requests that overlap from requests that queue.
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (max_in_flight.load() < rendezvous.load() && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    Status s = inner_.run(layer, shape, x, y);
    // A lying accelerator: one value of row `flip_row` of the product (dimension 0: the image of
    // a conv, the row of a matmul) is off by one.
    const int64_t row = flip_row.load();
    if (s.ok() && row >= 0 && row < shape[0]) {
      const size_t at = static_cast<size_t>(row) * (y.size() / static_cast<size_t>(shape[0])) + 1;
      y[at] = (y[at] + 1) % hybrid::kP;
    }
    --in_flight;
    return s;
  }
  std::atomic<bool> fail{false};
  std::atomic<int> rendezvous{0}, in_flight{0}, max_in_flight{0}, calls{0};
  std::atomic<int64_t> max_rows{0}, flip_row{-1};

 private:
  hybrid::ExactLinear inner_;
};

Tensor input(uint32_t seed) {
  return Tensor::from_vector<float>({1, 3, 8, 8}, tenet::testing::random_values(3 * 8 * 8, seed));
}

Tensor engine_output(const ir::Graph& g, const Tensor& x) {
  cpu::CompileOptions o;
  o.threads = 1;
  auto m = cpu::compile_model(g, {{"x", {1, 3, 8, 8}}}, o);
  EXPECT_TRUE(m.ok()) << m.status().to_string();
  std::vector<ConstTensorView> views{x.view()};
  std::vector<Tensor> out;
  EXPECT_TRUE((*m)->run(views, out).ok());
  return std::move(out[0]);
}

using hybrid::testing::relative_error;

struct Loaded {
  std::shared_ptr<FlakyAccelerator> accel = std::make_shared<FlakyAccelerator>();
  std::shared_ptr<serving::ServedModel> model;
};

Loaded load(const ir::Graph& g, int pool, size_t queue = 64, int pipeline_depth = 1, int max_batch_size = 0,
            uint64_t max_queue_delay_us = 0) {
  Loaded l;
  HybridServedOptions o;
  o.pipeline_depth = pipeline_depth;
  o.max_batch_size = max_batch_size;
  o.max_queue_delay_us = max_queue_delay_us;
  o.accelerator = l.accel;
  o.trusted_linear = std::make_shared<hybrid::ExactLinear>();
  o.verify_bits = 40;
  o.unblind_pool = pool;
  o.max_queue_requests = queue;
  o.threads = 1;
  auto m = load_hybrid_model("small", g, o);
  EXPECT_TRUE(m.ok()) << m.status().to_string();
  if (m.ok()) l.model = *m;
  return l;
}

TEST(HybridServedModel, MatchesEngineAndShowsMode) {
  const ir::Graph g = small_graph();
  Loaded l = load(g, 2);
  ASSERT_TRUE(l.model);
  EXPECT_EQ(l.model->max_batch_size(), 0);
  ASSERT_EQ(l.model->inputs().size(), 1u);
  EXPECT_EQ(l.model->inputs()[0].shape, (Shape{1, 3, 8, 8}));
  EXPECT_EQ(l.model->protection().mode, "hybrid");
  EXPECT_EQ(l.model->protection().verify_bits, 40);
  const std::string md_text = serving::model_metadata_json(*l.model), cfg_text = serving::model_config_json(*l.model);
  SCOPED_TRACE(md_text + "\n" + cfg_text);
  const auto md = nlohmann::json::parse(md_text);
  EXPECT_EQ(md["parameters"]["mode"], "hybrid");
  EXPECT_EQ(md["parameters"]["verify_bits"], 40);
  const auto cfg = nlohmann::json::parse(cfg_text);
  EXPECT_EQ(cfg["parameters"]["mode"]["string_value"], "hybrid");
  EXPECT_EQ(cfg["max_batch_size"], 0);
  // More requests than the pool holds, back to back: a dry pool costs time, not requests.
  for (uint32_t seed = 1; seed <= 5; ++seed) {
    const Tensor x = input(seed);
    const Tensor want = engine_output(g, x);
    std::vector<Tensor> in;
    in.push_back(input(seed));
    auto out = l.model->infer(std::move(in));
    ASSERT_TRUE(out.ok()) << out.status().to_string();
    ASSERT_EQ((*out)[0].shape(), want.shape());
    EXPECT_LT(relative_error((*out)[0], want), 0.05) << "seed " << seed;
  }
  EXPECT_EQ(l.model->stats().success.count, 5u);
}

// pipeline_depth 2: two requests are on the accelerator at once (each on its own instance), and
// every output is bitwise the one the request gets alone (the pads cancel exactly).
TEST(HybridServedModel, PipelinedRequestsOverlapAndGiveTheSameOutputs) {
  const ir::Graph g = small_graph();
  Loaded l = load(g, 8, 64, 2);
  ASSERT_TRUE(l.model);
  auto infer = [&](uint32_t seed) {
    std::vector<Tensor> in;
    in.push_back(input(seed));
    return l.model->infer(std::move(in));
  };
  std::vector<Tensor> alone;
  for (uint32_t seed = 1; seed <= 6; ++seed) {
    auto out = infer(seed);
    ASSERT_TRUE(out.ok()) << out.status().to_string();
    alone.push_back(std::move((*out)[0]));
  }
  EXPECT_EQ(l.accel->max_in_flight.load(), 1);  // one client: one request at a time
  l.accel->rendezvous = 2;
  std::vector<Result<std::vector<Tensor>>> together(6, internal_error("not run"));
  std::vector<std::thread> clients;
  for (int c = 0; c < 3; ++c) {
    clients.emplace_back([&, c] {
      for (int i = c; i < 6; i += 3) together[static_cast<size_t>(i)] = infer(static_cast<uint32_t>(i + 1));
    });
  }
  for (std::thread& t : clients) t.join();
  EXPECT_EQ(l.accel->max_in_flight.load(), 2);  // never more than pipeline_depth
  for (size_t i = 0; i < together.size(); ++i) {
    ASSERT_TRUE(together[i].ok()) << i << ": " << together[i].status().to_string();
    const Tensor& got = (*together[i])[0];
    ASSERT_EQ(got.size_bytes(), alone[i].size_bytes());
    EXPECT_EQ(std::memcmp(got.data(), alone[i].data(), got.size_bytes()), 0) << "request " << i;
  }
  EXPECT_EQ(l.model->stats().success.count, 12u);
}

// Rows of `seeds`, one image each; `scale` multiplies the values of the image of seed 5 (a
// request whose largest |x| dwarfs the others': with a scale over the whole batch it would
// coarsen their quantization).
Tensor images(std::initializer_list<uint32_t> seeds) {
  std::vector<float> v;
  for (uint32_t seed : seeds) {
    std::vector<float> one = tenet::testing::random_values(3 * 8 * 8, seed);
    if (seed == 5) {
      for (float& x : one) x *= 1000.f;
    }
    v.insert(v.end(), one.begin(), one.end());
  }
  return Tensor::from_vector<float>({static_cast<int64_t>(seeds.size()), 3, 8, 8}, std::move(v));
}

Result<std::vector<Tensor>> infer_rows(serving::ServedModel& m, std::initializer_list<uint32_t> seeds) {
  std::vector<Tensor> in;
  in.push_back(images(seeds));
  return m.infer(std::move(in));
}

bool same_bytes(const Tensor& a, const Tensor& b) {
  return a.shape() == b.shape() && std::memcmp(a.data(), b.data(), a.size_bytes()) == 0;
}

// max_batch_size 4: concurrent requests run as batches of 4 rows, one product per layer for the
// batch, and every request's output is bitwise what it gets alone at batch 1 (each image has its
// own quantization scales, so a request's output does not depend on what it was batched with,
// here even next to an image 1000 times larger).
TEST(HybridServedModel, DynamicBatchingRunsConcurrentRequestsAsOneBatch) {
  const ir::Graph g = small_graph();
  Loaded one = load(g, 4);
  ASSERT_TRUE(one.model);
  std::vector<Tensor> alone;
  for (uint32_t seed = 1; seed <= 8; ++seed) {
    auto out = infer_rows(*one.model, {seed});
    ASSERT_TRUE(out.ok()) << out.status().to_string();
    alone.push_back(std::move((*out)[0]));
  }
  EXPECT_EQ(one.accel->max_rows.load(), 1);

  // A long delay: batches form when 4 rows are queued, not when the delay runs out.
  Loaded l = load(g, 4, 64, 1, 4, 5'000'000);
  ASSERT_TRUE(l.model);
  EXPECT_EQ(l.model->max_batch_size(), 4);
  EXPECT_EQ(l.model->max_queue_delay_us(), 5'000'000u);
  EXPECT_EQ(l.model->inputs()[0].shape, (Shape{-1, 3, 8, 8}));
  EXPECT_EQ(l.model->outputs()[0].shape, (Shape{-1, 5}));
  const auto md = nlohmann::json::parse(serving::model_metadata_json(*l.model));
  EXPECT_EQ(md["inputs"][0]["shape"], nlohmann::json::parse("[-1, 3, 8, 8]"));
  EXPECT_EQ(md["outputs"][0]["shape"], nlohmann::json::parse("[-1, 5]"));
  const auto cfg = nlohmann::json::parse(serving::model_config_json(*l.model));
  EXPECT_EQ(cfg["max_batch_size"], 4);

  std::vector<Result<std::vector<Tensor>>> together(8, internal_error("not run"));
  std::vector<std::thread> clients;
  for (uint32_t i = 0; i < 8; ++i) {
    clients.emplace_back([&, i] { together[i] = infer_rows(*l.model, {i + 1}); });
  }
  for (std::thread& t : clients) t.join();
  for (size_t i = 0; i < together.size(); ++i) {
    ASSERT_TRUE(together[i].ok()) << i << ": " << together[i].status().to_string();
    const Tensor& got = (*together[i])[0];
    EXPECT_EQ(got.shape(), (Shape{1, 5}));
    EXPECT_TRUE(same_bytes(got, alone[i])) << "request " << i;
  }
  serving::ModelStats st = l.model->stats();
  EXPECT_EQ(st.success.count, 8u);
  EXPECT_EQ(st.inference_count, 8u);
  EXPECT_EQ(st.execution_count, 2u);              // two batches of four
  EXPECT_EQ(l.accel->calls.load(), 2 * 2);        // one product per layer (conv, gemm) per batch
  EXPECT_EQ(l.accel->max_rows.load(), 4);
  ASSERT_EQ(st.batch_stats.size(), 1u);
  EXPECT_EQ(st.batch_stats[0].batch_size, 4u);

  // A request of two rows shares a batch with two of one row; a lone request (padded with zero
  // rows) gets its batch-1 output too.
  l.accel->calls = 0;
  std::vector<Result<std::vector<Tensor>>> mixed(3, internal_error("not run"));
  std::thread a([&] { mixed[0] = infer_rows(*l.model, {6, 7}); });
  std::thread b([&] { mixed[1] = infer_rows(*l.model, {5}); });
  std::thread c([&] { mixed[2] = infer_rows(*l.model, {2}); });
  a.join();
  b.join();
  c.join();
  for (auto& r : mixed) ASSERT_TRUE(r.ok()) << r.status().to_string();
  const Tensor& two = (*mixed[0])[0];
  ASSERT_EQ(two.shape(), (Shape{2, 5}));
  EXPECT_EQ(std::memcmp(two.data(), alone[5].data(), alone[5].size_bytes()), 0);
  EXPECT_EQ(std::memcmp(two.as<float>() + 5, alone[6].data(), alone[6].size_bytes()), 0);
  EXPECT_TRUE(same_bytes((*mixed[1])[0], alone[4]));
  EXPECT_TRUE(same_bytes((*mixed[2])[0], alone[1]));
  EXPECT_EQ(l.accel->calls.load(), 2);  // one batch

  Loaded quick = load(g, 2, 64, 1, 4, 0);  // no delay: a lone request runs at once, padded
  ASSERT_TRUE(quick.model);
  auto lone = infer_rows(*quick.model, {3});
  ASSERT_TRUE(lone.ok()) << lone.status().to_string();
  EXPECT_TRUE(same_bytes((*lone)[0], alone[2]));
  EXPECT_EQ(quick.accel->max_rows.load(), 1);  // the padding rows are neither sent nor computed
  EXPECT_EQ(quick.accel->calls.load(), 2);
  // Three rows: the accelerator gets three (one product per layer), each row its lone output.
  auto three = infer_rows(*quick.model, {4, 5, 8});
  ASSERT_TRUE(three.ok()) << three.status().to_string();
  ASSERT_EQ((*three)[0].shape(), (Shape{3, 5}));
  for (int r = 0; r < 3; ++r) {
    const Tensor& want = alone[r == 0 ? 3 : r == 1 ? 4 : 7];
    EXPECT_EQ(std::memcmp((*three)[0].as<float>() + 5 * r, want.data(), want.size_bytes()), 0) << "row " << r;
  }
  EXPECT_EQ(quick.accel->max_rows.load(), 3);
  EXPECT_EQ(quick.accel->calls.load(), 4);
  // Too many rows for one batch is the client's error.
  auto big = infer_rows(*quick.model, {1, 2, 3, 4, 6});
  ASSERT_FALSE(big.ok());
  EXPECT_EQ(big.status().code(), StatusCode::kInvalidArgument);
}

// One flipped value in one image's product fails the whole batch (Freivalds checks the batch's
// product as one): every request in it gets 503 and no output; the next batch succeeds.
TEST(HybridServedModel, LyingAcceleratorFailsEveryRequestOfTheBatch) {
  const ir::Graph g = small_graph();
  Loaded l = load(g, 4, 64, 1, 4, 1'000'000);
  ASSERT_TRUE(l.model);
  auto run_four = [&] {
    std::vector<Result<std::vector<Tensor>>> r(4, internal_error("not run"));
    std::vector<std::thread> clients;
    for (uint32_t i = 0; i < 4; ++i) clients.emplace_back([&, i] { r[i] = infer_rows(*l.model, {i + 1}); });
    for (std::thread& t : clients) t.join();
    return r;
  };
  l.accel->flip_row = 2;
  for (auto& r : run_four()) {
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), StatusCode::kResourceExhausted) << r.status().to_string();
    EXPECT_NE(r.status().message().find("Freivalds"), std::string::npos) << r.status().to_string();
  }
  EXPECT_EQ(l.model->stats().fail.count, 4u);
  // A partial batch (one request of three rows, checked on its three rows only) is caught too.
  auto partial = infer_rows(*l.model, {1, 2, 3});
  ASSERT_FALSE(partial.ok());
  EXPECT_EQ(partial.status().code(), StatusCode::kResourceExhausted) << partial.status().to_string();
  EXPECT_NE(partial.status().message().find("Freivalds"), std::string::npos) << partial.status().to_string();
  EXPECT_EQ(l.model->stats().execution_count, 0u);
  l.accel->flip_row = -1;
  l.accel->fail = true;  // gone: the batch fails the same way
  for (auto& r : run_four()) {
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), StatusCode::kResourceExhausted) << r.status().to_string();
    EXPECT_NE(r.status().message().find("accelerator connection lost"), std::string::npos) << r.status().to_string();
  }
  l.accel->fail = false;
  for (auto& r : run_four()) EXPECT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_EQ(l.model->stats().success.count, 4u);
  EXPECT_EQ(l.model->stats().fail.count, 9u);
}

TEST(HybridServedModel, BatchingNeedsABatchDimension) {
  HybridServedOptions o;
  o.accelerator = std::make_shared<FlakyAccelerator>();
  o.unblind_pool = 0;
  o.threads = 1;
  o.max_batch_size = 4;
  auto m = load_hybrid_model("small", small_graph(1), o);
  ASSERT_FALSE(m.ok());
  EXPECT_NE(m.status().message().find("variable batch dimension"), std::string::npos) << m.status().to_string();
  o.max_batch_size = 65;
  m = load_hybrid_model("small", small_graph(), o);
  ASSERT_FALSE(m.ok());
  EXPECT_NE(m.status().message().find("0..64"), std::string::npos) << m.status().to_string();
  o.max_batch_size = 1;  // batch 1, as 0
  m = load_hybrid_model("small", small_graph(), o);
  ASSERT_TRUE(m.ok()) << m.status().to_string();
  EXPECT_EQ((*m)->max_batch_size(), 0);
  EXPECT_EQ((*m)->inputs()[0].shape, (Shape{1, 3, 8, 8}));
}

TEST(HybridServedModel, WrongShapeIsInvalidArgument) {
  Loaded l = load(small_graph(), 1);
  ASSERT_TRUE(l.model);
  std::vector<Tensor> in;
  in.push_back(Tensor::from_vector<float>({2, 3, 8, 8}, std::vector<float>(2 * 3 * 8 * 8, 0.f)));
  auto out = l.model->infer(std::move(in));
  ASSERT_FALSE(out.ok());
  EXPECT_EQ(out.status().code(), StatusCode::kInvalidArgument);
}

TEST(HybridServedModel, FailingAcceleratorFailsRequestsCleanly) {
  Loaded l = load(small_graph(), 4);
  ASSERT_TRUE(l.model);
  l.accel->fail = true;
  std::vector<Tensor> in;
  in.push_back(input(9));
  auto out = l.model->infer(std::move(in));
  ASSERT_FALSE(out.ok());
  EXPECT_EQ(out.status().code(), StatusCode::kResourceExhausted);  // 503: the request was valid
  EXPECT_NE(out.status().message().find("small"), std::string::npos) << out.status().to_string();
  EXPECT_NE(out.status().message().find("accelerator connection lost"), std::string::npos) << out.status().to_string();
  EXPECT_EQ(l.model->stats().fail.count, 1u);
  // The accelerator comes back: so does the model.
  l.accel->fail = false;
  std::vector<Tensor> again;
  again.push_back(input(9));
  EXPECT_TRUE(l.model->infer(std::move(again)).ok());
}

// A real remote accelerator (accel/server.h behind accel::connect_accelerator) that goes away
// and comes back at the same address, as `tenet serve` restarts the one it started: requests
// fail cleanly while it is down, then succeed again with the same outputs (the client has
// registered the model's layers on the new server), Freivalds checks included.
TEST(HybridServedModel, RecoversWhenARemoteAcceleratorRestarts) {
  char tmpl[] = "/tmp/tenet-hsm-XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  const std::string dir = tmpl, address = "unix:" + dir + "/accel.sock";
  auto start_server = [&] {
    auto backend = accel::make_cpu_accelerator(1);
    EXPECT_TRUE(backend.ok());
    auto server = accel::AcceleratorServer::start(std::shared_ptr<accel::Accelerator>(std::move(backend).value()), address);
    EXPECT_TRUE(server.ok()) << server.status().to_string();
    return server.ok() ? std::move(server).value() : nullptr;
  };
  auto server = start_server();
  ASSERT_TRUE(server);
  auto remote = accel::connect_accelerator(address);
  ASSERT_TRUE(remote.ok()) << remote.status().to_string();
  const ir::Graph g = small_graph();
  HybridServedOptions o;
  o.accelerator = std::shared_ptr<accel::Accelerator>(std::move(remote).value());
  o.trusted_linear = std::make_shared<hybrid::ExactLinear>();
  o.unblind_pool = 1;
  o.threads = 1;
  auto m = load_hybrid_model("small", g, o);
  ASSERT_TRUE(m.ok()) << m.status().to_string();
  auto infer = [&](uint32_t seed) {
    std::vector<Tensor> in;
    in.push_back(input(seed));
    return (*m)->infer(std::move(in));
  };
  const Tensor want = engine_output(g, input(3));
  auto before = infer(3);
  ASSERT_TRUE(before.ok()) << before.status().to_string();
  EXPECT_LT(relative_error((*before)[0], want), 0.05);

  server.reset();  // killed: connections close, nothing listens
  for (int i = 0; i < 2; ++i) {
    auto down = infer(3);
    ASSERT_FALSE(down.ok());
    EXPECT_EQ(down.status().code(), StatusCode::kResourceExhausted) << down.status().to_string();
  }
  server = start_server();  // restarted, same address, knows no layers
  ASSERT_TRUE(server);
  for (int i = 0; i < 3; ++i) {
    auto after = infer(3);
    ASSERT_TRUE(after.ok()) << after.status().to_string();
    EXPECT_LT(relative_error((*after)[0], want), 0.05);
    EXPECT_LT(relative_error((*after)[0], (*before)[0]), 1e-3);
  }
  EXPECT_EQ((*m)->stats().fail.count, 2u);
  m->reset();
  server.reset();
  std::filesystem::remove_all(dir);
}

TEST(HybridServedModel, NoAcceleratorIsRefused) {
  HybridServedOptions o;
  auto m = load_hybrid_model("small", small_graph(), o);
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(m.status().code(), StatusCode::kFailedPrecondition);
}

}  // namespace
}  // namespace tenet::enclave
