// HybridModel end to end: agreement with the float engine (a small conv/residual/matmul/gemm
// model built here, and resnet18 from the model cache when it is there), a malicious
// accelerator caught on every request it touches, refused unblinding terms, --no-verify, and
// pipelined requests.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>

#include "engine/onnx/importer.h"
#include "hybrid/hybrid_model.h"
#include "hybrid_test_util.h"
#include "model_builder.h"

namespace tenet::hybrid {
namespace {

using tenet::testing::ModelBuilder;
using testing::Attack;
using testing::MaliciousAccelerator;

// x[2,3,8,8] -> Conv+Relu -> Conv(+residual, Relu) -> grouped strided Conv -> GlobalAveragePool
// -> Flatten -> MatMul + bias (FusedMatMul) + Relu -> Gemm(transB) -> y[2,10]
std::string small_model(int64_t batch_dim = 2) {
  ModelBuilder b;
  b.input("x", {batch_dim, 3, 8, 8}).output("y");
  b.random_initializer("w1", {8, 3, 3, 3}, 0.3f).random_initializer("b1", {8}, 0.1f);
  b.random_initializer("w2", {8, 8, 3, 3}, 0.15f).random_initializer("b2", {8}, 0.1f);
  b.random_initializer("w3", {8, 4, 3, 3}, 0.2f).random_initializer("b3", {8}, 0.1f);
  b.random_initializer("wm", {8, 12}, 0.4f).random_initializer("bm", {12}, 0.1f);
  b.random_initializer("wg", {10, 12}, 0.3f).random_initializer("bg", {10}, 0.1f);
  auto& c1 = b.node("Conv", {"x", "w1", "b1"}, {"c1"});
  ModelBuilder::attr(c1, "pads", std::vector<int64_t>{1, 1, 1, 1});
  b.node("Relu", {"c1"}, {"r1"});
  auto& c2 = b.node("Conv", {"r1", "w2", "b2"}, {"c2"});
  ModelBuilder::attr(c2, "pads", std::vector<int64_t>{1, 1, 1, 1});
  b.node("Add", {"c2", "r1"}, {"a2"});
  b.node("Relu", {"a2"}, {"r2"});
  auto& c3 = b.node("Conv", {"r2", "w3", "b3"}, {"c3"});
  ModelBuilder::attr(c3, "pads", std::vector<int64_t>{1, 1, 1, 1});
  ModelBuilder::attr(c3, "strides", std::vector<int64_t>{2, 2});
  ModelBuilder::attr(c3, "group", int64_t{2});
  b.node("GlobalAveragePool", {"c3"}, {"p"});
  b.node("Flatten", {"p"}, {"f"});
  b.node("MatMul", {"f", "wm"}, {"m"});
  b.node("Add", {"m", "bm"}, {"mb"});
  b.node("Relu", {"mb"}, {"mr"});
  auto& g = b.node("Gemm", {"mr", "wg", "bg"}, {"y"});
  ModelBuilder::attr(g, "transB", int64_t{1});
  return b.bytes();
}

ir::Graph import_bytes(const std::string& bytes) {
  auto g = onnx_import::import_model_bytes(std::span<const std::byte>(reinterpret_cast<const std::byte*>(bytes.data()), bytes.size()));
  EXPECT_TRUE(g.ok()) << g.status().to_string();
  return g.ok() ? std::move(g).value() : ir::Graph{};
}

Tensor random_input(const Shape& shape, uint32_t seed) {
  return Tensor::from_vector<float>(shape, tenet::testing::random_values(numel(shape), seed));
}

std::vector<Tensor> run_float(const ir::Graph& g, const std::map<std::string, Shape>& shapes, const std::vector<Tensor>& inputs) {
  cpu::CompileOptions o;
  o.threads = 2;
  auto m = cpu::compile_model(g, shapes, o);
  EXPECT_TRUE(m.ok()) << m.status().to_string();
  std::vector<ConstTensorView> views;
  for (const Tensor& t : inputs) views.push_back(t.view());
  std::vector<Tensor> out;
  EXPECT_TRUE((*m)->run(views, out).ok());
  return out;
}

using testing::relative_error;
using testing::top1;

struct Fixture {
  ir::Graph graph;
  std::map<std::string, Shape> shapes{{"x", {2, 3, 8, 8}}};
  std::shared_ptr<MaliciousAccelerator> accel;
  std::unique_ptr<HybridModel> model;
};

// `fast_backend`: the accel library's CPU backend (when built) under the malicious wrapper; else
// the enclave's exact loops in process (quicker for many tiny calls, and under sanitizers).
Fixture make_fixture(int verify_bits, int masks, bool allow_inline = true, int depth = 1, bool fast_backend = false) {
  Fixture f;
  f.graph = import_bytes(small_model());
  f.accel = std::make_shared<MaliciousAccelerator>(fast_backend ? testing::honest_accelerator()
                                                                : std::make_shared<ExactLinear>());
  HybridOptions o;
  o.accelerator = f.accel;
  o.verify_bits = verify_bits;
  o.masks_to_precompute = masks;
  o.allow_inline_masks = allow_inline;
  o.pipeline_depth = depth;
  o.threads = 1;
  auto m = HybridModel::compile(f.graph, f.shapes, o);
  EXPECT_TRUE(m.ok()) << m.status().to_string();
  if (m.ok()) f.model = std::move(m).value();
  return f;
}

Status run_once(HybridModel& m, const Tensor& x, std::vector<Tensor>& out) {
  std::vector<ConstTensorView> views{x.view()};
  return m.run(views, out);
}

TEST(HybridModel, SmallModelAgreesWithTheFloatEngine) {
  Fixture f = make_fixture(40, 4, true, 1, /*fast_backend=*/true);
  ASSERT_TRUE(f.model);
  HybridStats st = f.model->stats();
  // Three convs, the fused matmul and the Gemm are outsourced; pooling stays in the enclave.
  EXPECT_EQ(st.outsourced_layers, 5);
  EXPECT_EQ(st.verified_layers, 5);
  EXPECT_EQ(st.verify_repetitions, 2);
  EXPECT_GT(st.outsourced_flops_fraction, 0.9);
  EXPECT_LT(st.outsourced_flops_fraction, 1.0);
  bool saw_sum = false;
  for (const auto& s : f.model->instance(0).steps()) {
    if (s.kernel == std::string("hybrid_outsourced") && s.post_ops.find("sum") != std::string::npos) saw_sum = true;
  }
  EXPECT_TRUE(saw_sum) << "the residual add should be fused into an outsourced conv";
  for (uint32_t seed = 1; seed <= 6; ++seed) {
    const Tensor x = random_input({2, 3, 8, 8}, seed);
    std::vector<Tensor> want = run_float(f.graph, f.shapes, {x});
    std::vector<Tensor> got;
    ASSERT_TRUE(run_once(*f.model, x, got).ok());
    // 8-bit activations and weights: a few percent of relative (L2) error.
    EXPECT_LT(relative_error(got[0], want[0]), 0.05) << "seed " << seed;
    EXPECT_EQ(top1(got[0]), top1(want[0])) << "seed " << seed;
  }
  st = f.model->stats();
  EXPECT_EQ(st.requests, 6);
  EXPECT_EQ(st.verifications, 30);
  EXPECT_EQ(st.masks_consumed, 20);  // 4 precomputed per layer
  EXPECT_EQ(st.masks_inline, 10);    // then computed on the request path
  EXPECT_EQ(st.verification_failures, 0);
}

// Inputs of subnormal magnitude (1 / scale overflows to infinity, and 0 · inf is NaN) with zeros
// among them, and all-zero inputs, quantize
// with a usable scale: the request succeeds and agrees with the float engine.
TEST(HybridModel, TinyAndZeroActivationsQuantizeWithAUsableScale) {
  Fixture f = make_fixture(40, 4, true, 1, /*fast_backend=*/true);
  ASSERT_TRUE(f.model);
  for (float magnitude : {1e-42f, 1e-30f, 0.f}) {
    SCOPED_TRACE(::testing::Message() << "magnitude " << magnitude);
    Tensor x = random_input({2, 3, 8, 8}, 5);
    float* p = x.as<float>();
    for (int64_t i = 0; i < x.numel(); ++i) p[i] = i % 3 == 0 ? 0.f : (p[i] > 0.f ? magnitude : -magnitude);
    std::vector<Tensor> want = run_float(f.graph, f.shapes, {x});
    std::vector<Tensor> got;
    Status s = run_once(*f.model, x, got);
    ASSERT_TRUE(s.ok()) << s.to_string();
    const float* g = got[0].as<float>();
    for (int64_t i = 0; i < got[0].numel(); ++i) ASSERT_TRUE(std::isfinite(g[i])) << i;
    EXPECT_LT(relative_error(got[0], want[0]), 0.05);
  }
}

// The node -> accelerator-layer mapping for the less common attributes: auto_pad SAME_UPPER with
// a dilated strided conv, asymmetric pads, a depthwise conv with a clip post-op, a 3-D MatMul
// input (rows flattened), a Gemm with transB = 0, alpha and beta.
TEST(HybridModel, ConvAndGemmAttributesMapExactly) {
  ModelBuilder b;
  b.input("x", {1, 4, 11, 9}).output("y");
  b.random_initializer("w1", {6, 4, 3, 3}, 0.3f);
  b.random_initializer("w2", {6, 1, 3, 3}, 0.3f).random_initializer("b2", {6}, 0.1f);
  b.random_initializer("wm", {48, 5}, 0.2f);
  b.random_initializer("wg", {30, 7}, 0.2f).random_initializer("bg", {7}, 0.1f);
  auto& c1 = b.node("Conv", {"x", "w1"}, {"c1"});
  ModelBuilder::attr(c1, "auto_pad", std::string("SAME_UPPER"));
  ModelBuilder::attr(c1, "strides", std::vector<int64_t>{2, 1});
  ModelBuilder::attr(c1, "dilations", std::vector<int64_t>{2, 2});
  auto& c2 = b.node("Conv", {"c1", "w2", "b2"}, {"c2"});
  ModelBuilder::attr(c2, "group", int64_t{6});
  ModelBuilder::attr(c2, "pads", std::vector<int64_t>{0, 1, 2, 0});
  b.initializer("lo", {}, {-0.5f}).initializer("hi", {}, {0.8f});
  b.node("Clip", {"c2", "lo", "hi"}, {"k2"});
  b.initializer_i64("shape3", {3}, {1, 6, -1});
  b.node("Reshape", {"k2", "shape3"}, {"r3"});  // [1, 6, 6·8]
  b.node("MatMul", {"r3", "wm"}, {"m"});        // [1, 6, 5]
  b.initializer_i64("shape2", {2}, {1, 30});
  b.node("Reshape", {"m", "shape2"}, {"f"});
  auto& g = b.node("Gemm", {"f", "wg", "bg"}, {"y"});
  ModelBuilder::attr(g, "alpha", 0.5f);
  ModelBuilder::attr(g, "beta", 2.f);
  const ir::Graph graph = import_bytes(b.bytes());
  const std::map<std::string, Shape> shapes{{"x", {1, 4, 11, 9}}};
  HybridOptions o;
  o.accelerator = std::make_shared<ExactLinear>();
  o.threads = 1;
  auto m = HybridModel::compile(graph, shapes, o);
  ASSERT_TRUE(m.ok()) << m.status().to_string();
  EXPECT_EQ((*m)->stats().outsourced_layers, 4);
  for (uint32_t seed = 1; seed <= 4; ++seed) {
    const Tensor x = random_input({1, 4, 11, 9}, 300 + seed);
    std::vector<Tensor> want = run_float(graph, shapes, {x});
    std::vector<Tensor> got;
    ASSERT_TRUE(run_once(**m, x, got).ok());
    ASSERT_EQ(got[0].shape(), want[0].shape());
    EXPECT_LT(relative_error(got[0], want[0]), 0.05) << "seed " << seed;
  }
}

// Every attack, on every layer and on all at once, fails every request it touches and leaves the
// model serving honest requests bitwise as before.
void expect_every_attack_caught(Fixture& f) {
  ASSERT_TRUE(f.model);
  const Tensor x = random_input({2, 3, 8, 8}, 11);
  std::vector<Tensor> honest;
  ASSERT_TRUE(run_once(*f.model, x, honest).ok());
  const int layers = f.model->stats().outsourced_layers;
  for (Attack attack : {Attack::kFlipOne, Attack::kDropChannel, Attack::kReplay, Attack::kScale, Attack::kZero, Attack::kOutOfField,
                        Attack::kCongruent}) {
    for (int32_t target = -1; target < layers; ++target) {
      SCOPED_TRACE(::testing::Message() << "attack " << static_cast<int>(attack) << " on layer " << target);
      f.accel->set_attack(attack, target);
      for (int request = 0; request < 2; ++request) {
        const int before = f.accel->tampered();
        std::vector<Tensor> out;
        Status s = run_once(*f.model, random_input({2, 3, 8, 8}, 100 + static_cast<uint32_t>(request)), out);
        ASSERT_GT(f.accel->tampered(), before);
        EXPECT_EQ(s.code(), StatusCode::kDataLoss) << s.to_string();
        EXPECT_NE(s.message().find("hybrid layer '"), std::string::npos) << s.to_string();
        if (attack == Attack::kOutOfField || attack == Attack::kCongruent) {
          EXPECT_NE(s.message().find("outside Z_p"), std::string::npos) << s.to_string();
        }
      }
      f.accel->set_attack(Attack::kNone);
      std::vector<Tensor> out;
      Status s = run_once(*f.model, x, out);
      ASSERT_TRUE(s.ok()) << s.to_string();
      EXPECT_EQ(0, std::memcmp(out[0].data(), honest[0].data(), honest[0].size_bytes()));
    }
  }
  EXPECT_GT(f.model->stats().verification_failures, 0);
  // An accelerator that fails outright: the request fails with its error, named by layer.
  f.accel->set_attack(Attack::kError, 2);
  std::vector<Tensor> out;
  Status s = run_once(*f.model, x, out);
  EXPECT_EQ(s.code(), StatusCode::kInternal) << s.to_string();
  EXPECT_NE(s.message().find("the accelerator failed: injected"), std::string::npos) << s.to_string();
  f.accel->set_attack(Attack::kNone);
  ASSERT_TRUE(run_once(*f.model, x, out).ok());
  EXPECT_EQ(0, std::memcmp(out[0].data(), honest[0].data(), honest[0].size_bytes()));
}

TEST(HybridModel, MaliciousAcceleratorIsCaughtOnEveryRequestItTouches) {
  // No precomputed terms: every pad and W·r is made inline.
  Fixture f = make_fixture(40, 0);
  expect_every_attack_caught(f);
}

TEST(HybridModel, MaliciousAcceleratorIsCaughtWithPrecomputedUnblindingTerms) {
  // Precomputed terms at one thread: pads made in pieces while blinding, and a convolution's W·r
  // decrypted and applied in pieces (the request path the benchmarks take), not the inline path.
  Fixture f = make_fixture(40, 160);
  expect_every_attack_caught(f);
  if (::testing::Test::HasFatalFailure()) return;
  EXPECT_EQ(f.model->stats().masks_inline, 0);
}

TEST(HybridModel, RefusesMissingTamperedAndReplayedUnblindingTerms) {
  Fixture f = make_fixture(40, 8);
  ASSERT_TRUE(f.model);
  HostMaskStore& host = f.model->host_store();
  MaskVault& vault = f.model->vault();
  const Tensor x = random_input({2, 3, 8, 8}, 21);
  std::vector<Tensor> honest, out;
  ASSERT_TRUE(run_once(*f.model, x, honest).ok());  // use 0 of every layer
  auto next_use = [&](uint32_t layer) {
    std::optional<uint64_t> c = vault.next_ready(layer);
    EXPECT_TRUE(c.has_value());
    return c.value_or(0);
  };
  auto expect_refused = [&](const char* what) {
    Status s = run_once(*f.model, x, out);
    EXPECT_EQ(s.code(), StatusCode::kDataLoss) << s.to_string();
    EXPECT_NE(s.message().find(what), std::string::npos) << s.to_string();
    // The next request is served (fresh terms; the refused one is never retried).
    s = run_once(*f.model, x, out);
    ASSERT_TRUE(s.ok()) << s.to_string();
    EXPECT_EQ(0, std::memcmp(out[0].data(), honest[0].data(), honest[0].size_bytes()));
  };
  // Missing: the host loses the term the next request needs at layer 2.
  host.erase(2, next_use(2));
  expect_refused("missing");
  // Tampered: one bit of layer 0's next term.
  std::vector<uint8_t> blob = *host.peek(0, next_use(0));
  blob[blob.size() / 2] ^= 1;
  host.overwrite(0, next_use(0), blob);
  expect_refused("does not authenticate");
  // Replayed: the host answers with another (valid) term of the same layer.
  const uint64_t c4 = next_use(4);
  host.overwrite(4, c4, *host.peek(4, c4 + 1));
  expect_refused("does not authenticate");
  // Replayed across layers: layer 0's term served for layer 1 (same size).
  ASSERT_EQ(numel(f.model->layers()[0]->dst_shape), numel(f.model->layers()[1]->dst_shape)) << "test model changed";
  host.overwrite(1, next_use(1), *host.peek(0, next_use(0)));
  expect_refused("does not authenticate");
  // Reused: use 0 of layer 0 is consumed; putting its blob back does not make it usable again.
  std::vector<uint32_t> term(static_cast<size_t>(numel(f.model->layers()[0]->dst_shape)));
  Status r = vault.consume(0, 0, term);
  EXPECT_EQ(r.code(), StatusCode::kDataLoss);
  EXPECT_NE(r.message().find("already consumed"), std::string::npos) << r.to_string();
}

TEST(HybridModel, DryPoolFailsWhenInlineTermsAreOff) {
  Fixture f = make_fixture(40, 1, /*allow_inline=*/false);
  ASSERT_TRUE(f.model);
  const Tensor x = random_input({2, 3, 8, 8}, 5);
  std::vector<Tensor> out;
  ASSERT_TRUE(run_once(*f.model, x, out).ok());
  Status s = run_once(*f.model, x, out);
  EXPECT_EQ(s.code(), StatusCode::kFailedPrecondition) << s.to_string();
  ASSERT_TRUE(f.model->precompute(1).ok());
  EXPECT_TRUE(run_once(*f.model, x, out).ok());
}

TEST(HybridModel, NoVerifyPathAgrees) {
  Fixture verified = make_fixture(40, 0);
  Fixture unverified = make_fixture(0, 0);
  ASSERT_TRUE(verified.model && unverified.model);
  EXPECT_EQ(unverified.model->stats().verified_layers, 0);
  EXPECT_EQ(unverified.model->stats().verify_repetitions, 0);
  const Tensor x = random_input({2, 3, 8, 8}, 31);
  std::vector<Tensor> a, b;
  ASSERT_TRUE(run_once(*verified.model, x, a).ok());
  ASSERT_TRUE(run_once(*unverified.model, x, b).ok());
  EXPECT_EQ(0, std::memcmp(a[0].data(), b[0].data(), a[0].size_bytes()));
  EXPECT_EQ(unverified.model->stats().verifications, 0);
  // Without verification a lying accelerator goes unnoticed (which is why it is INSECURE), but a
  // result that is no field element is still refused.
  unverified.accel->set_attack(Attack::kFlipOne, 0);
  EXPECT_TRUE(run_once(*unverified.model, x, b).ok());
  for (Attack attack : {Attack::kOutOfField, Attack::kCongruent}) {
    unverified.accel->set_attack(attack, 0);
    Status s = run_once(*unverified.model, x, b);
    EXPECT_EQ(s.code(), StatusCode::kDataLoss) << s.to_string();
    EXPECT_NE(s.message().find("outside Z_p"), std::string::npos) << s.to_string();
  }
}

TEST(HybridModel, InsecurePlainBaselineComputesTheSameProducts) {
  Fixture f = make_fixture(40, 0);
  ASSERT_TRUE(f.model);
  HybridOptions o;
  o.accelerator = std::make_shared<ExactLinear>();
  o.insecure_no_blinding = true;
  o.verify_bits = 0;
  o.threads = 1;
  auto plain = HybridModel::compile(f.graph, f.shapes, o);
  ASSERT_TRUE(plain.ok()) << plain.status().to_string();
  const Tensor x = random_input({2, 3, 8, 8}, 77);
  std::vector<Tensor> a, b;
  ASSERT_TRUE(run_once(*f.model, x, a).ok());
  ASSERT_TRUE(run_once(**plain, x, b).ok());
  // Blinding is exact: the same quantized products, bit for bit.
  EXPECT_EQ(0, std::memcmp(a[0].data(), b[0].data(), a[0].size_bytes()));
  EXPECT_EQ((*plain)->stats().masks_inline + (*plain)->stats().masks_consumed, 0);
}

TEST(HybridModel, PrivateSlicesStayInTheEnclave) {
  Fixture f = make_fixture(40, 0);
  ASSERT_TRUE(f.model);
  std::vector<std::string> linear;
  for (const auto& l : f.model->layers()) linear.push_back(l->node_name);
  ASSERT_EQ(linear.size(), 5u);
  // The first conv (on the raw input) and the classifier are the private slices.
  auto accel = std::make_shared<MaliciousAccelerator>(std::make_shared<ExactLinear>());
  HybridOptions o;
  o.accelerator = accel;
  o.threads = 1;
  o.private_nodes = {linear.front(), linear.back()};
  auto m = HybridModel::compile(f.graph, f.shapes, o);
  ASSERT_TRUE(m.ok()) << m.status().to_string();
  EXPECT_EQ((*m)->stats().outsourced_layers, 3);
  const std::vector<accel::LinearSpec> seen = accel->registered();
  ASSERT_EQ(seen.size(), 3u);
  for (const auto& l : f.model->layers()) {
    const bool is_private = o.private_nodes.count(l->node_name) != 0;
    bool sent = false;
    for (const auto& s : seen) sent = sent || (s.weight_shape == l->spec.weight_shape && s.weights == l->spec.weights);
    EXPECT_EQ(sent, !is_private) << l->node_name;
  }
  // Results: the private layers run in float in the enclave, the rest as before.
  const Tensor x = random_input({2, 3, 8, 8}, 90);
  std::vector<Tensor> got;
  ASSERT_TRUE(run_once(**m, x, got).ok());
  std::vector<Tensor> want = run_float(f.graph, f.shapes, {x});
  EXPECT_LT(relative_error(got[0], want[0]), 0.05);
  // A malicious accelerator is still caught on the public layers.
  accel->set_attack(Attack::kFlipOne);
  EXPECT_EQ(run_once(**m, x, got).code(), StatusCode::kDataLoss);
}

TEST(HybridModel, PipelinedRequestsMatchSequentialOnes) {
  Fixture f = make_fixture(40, 3, true, /*depth=*/3, /*fast_backend=*/true);
  ASSERT_TRUE(f.model);
  std::vector<Tensor> inputs;
  for (uint32_t i = 0; i < 8; ++i) inputs.push_back(random_input({2, 3, 8, 8}, 40 + i));
  std::vector<std::vector<ConstTensorView>> requests;
  for (const Tensor& t : inputs) requests.push_back({t.view()});
  std::vector<std::vector<Tensor>> outs;
  ASSERT_TRUE(f.model->run_many(requests, outs).ok());
  for (size_t i = 0; i < inputs.size(); ++i) {
    std::vector<Tensor> one;
    ASSERT_TRUE(run_once(*f.model, inputs[i], one).ok());
    EXPECT_EQ(0, std::memcmp(one[0].data(), outs[i][0].data(), one[0].size_bytes())) << i;
  }
  EXPECT_EQ(f.model->stats().requests, 16);
}

// A batch dimension bound to 3: each image is quantized with its own scales, so every row of a
// batch (here next to an image 1000 times larger) is bitwise its output at batch 1. A fixed
// dimension 0 is no batch: one scale over the tensor, as before.
TEST(HybridModel, EachImageOfABatchHasItsOwnScales) {
  const ir::Graph g = import_bytes(small_model(-1));
  auto accel = testing::honest_accelerator();
  HybridOptions o;
  o.accelerator = accel;
  o.masks_to_precompute = 1;
  o.threads = 1;
  auto three = HybridModel::compile(g, {{"x", {3, 3, 8, 8}}}, o);
  auto one = HybridModel::compile(g, {{"x", {1, 3, 8, 8}}}, o);
  ASSERT_TRUE(three.ok()) << three.status().to_string();
  ASSERT_TRUE(one.ok()) << one.status().to_string();
  EXPECT_EQ((*three)->images(), 3);
  EXPECT_EQ((*one)->images(), 1);
  EXPECT_EQ((*three)->stats().outsourced_layers, 5);  // every conv and matmul still outsourced
  Tensor x = random_input({3, 3, 8, 8}, 7);
  for (int64_t i = 192; i < 384; ++i) x.as<float>()[i] *= 1000.f;
  std::vector<Tensor> batched;
  ASSERT_TRUE(run_once(**three, x, batched).ok());
  const size_t row = batched[0].size_bytes() / 3;
  for (int64_t r = 0; r < 3; ++r) {
    Tensor xr = Tensor::from_vector<float>({1, 3, 8, 8}, std::vector<float>(x.as<float>() + r * 192, x.as<float>() + (r + 1) * 192));
    std::vector<Tensor> alone;
    ASSERT_TRUE(run_once(**one, xr, alone).ok());
    ASSERT_EQ(alone[0].size_bytes(), row);
    EXPECT_EQ(0, std::memcmp(static_cast<const std::byte*>(batched[0].data()) + r * row, alone[0].data(), row)) << "row " << r;
  }
  // A partial batch: two real images, the third padding; the real rows are unchanged.
  std::vector<Tensor> partial;
  const int64_t consumed = (*three)->stats().masks_consumed + (*three)->stats().masks_inline;
  ASSERT_TRUE((*three)->run(std::vector<ConstTensorView>{x.view()}, partial, 2).ok());
  EXPECT_EQ(0, std::memcmp(partial[0].data(), batched[0].data(), 2 * row));
  EXPECT_EQ((*three)->stats().masks_consumed + (*three)->stats().masks_inline, consumed + 5);  // one term per layer
  EXPECT_FALSE((*three)->run(std::vector<ConstTensorView>{x.view()}, partial, 4).ok());
  Fixture fixed = make_fixture(40, 1);
  ASSERT_TRUE(fixed.model);
  EXPECT_EQ(fixed.model->images(), 1);
}

// resnet18 (torchvision, random weights with seed 0, exported by tests/models/export_models.py;
// its spatial dims are fixed at 224). Slow under sanitizers: skipped there.
TEST(HybridModel, Resnet18AgreesWithTheFloatEngine) {
  const std::filesystem::path path =
      std::filesystem::path(__FILE__).parent_path().parent_path().parent_path().parent_path() / ".cache/models/resnet18.onnx";
#if defined(__SANITIZE_ADDRESS__)
  GTEST_SKIP() << "resnet18 at 224x224 is too slow under AddressSanitizer";
#endif
  if (!std::filesystem::exists(path)) GTEST_SKIP() << path << " not exported (python3 tests/models/export_models.py resnet18)";
  auto g = onnx_import::import_model_file(path.string());
  ASSERT_TRUE(g.ok()) << g.status().to_string();
  const std::string name = g->value(g->inputs[0]).name;
  const std::map<std::string, Shape> shapes{{name, {2, 3, 224, 224}}};
  HybridOptions o;
  o.accelerator = testing::honest_accelerator();
  o.threads = 2;
  auto m = HybridModel::compile(*g, shapes, o);
  ASSERT_TRUE(m.ok()) << m.status().to_string();
  const HybridStats st = (*m)->stats();
  EXPECT_EQ(st.outsourced_layers, 21);  // 20 convs (BN folded, residuals fused) + fc
  EXPECT_GT(st.outsourced_flops_fraction, 0.98);
  int agree = 0, total = 0;
  double worst = 0;
  for (uint32_t seed = 1; seed <= 3; ++seed) {
    const Tensor x = random_input({2, 3, 224, 224}, seed);
    std::vector<Tensor> want = run_float(*g, shapes, {x});
    std::vector<Tensor> got;
    ASSERT_TRUE(run_once(**m, x, got).ok());
    worst = std::max(worst, relative_error(got[0], want[0]));
    const auto a = top1(got[0]), b = top1(want[0]);
    for (size_t i = 0; i < a.size(); ++i) agree += a[i] == b[i];
    total += static_cast<int>(a.size());
  }
  EXPECT_LT(worst, 0.05);
  EXPECT_EQ(agree, total);
  std::printf("resnet18 224x224: top-1 agreement %d/%d, worst relative error %.4f\n", agree, total, worst);
}

}  // namespace
}  // namespace tenet::hybrid
