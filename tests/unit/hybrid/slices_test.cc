// TEESlice private slices (hybrid/slices.h): the manifest parser against hostile input, slice
// loading (plain ONNX and sealed packages, wrong / missing keys), composition checked against a
// combined ONNX built by hand and run on the plain engine, and the privacy claims: slice weights
// never reach the accelerator, and nothing it receives, including features computed from slice
// outputs, is unblinded.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <mutex>

#include <unistd.h>

#include "engine/onnx/importer.h"
#include "hybrid/hybrid_model.h"
#include "hybrid/slices.h"
#include "hybrid_test_util.h"
#include "model_builder.h"
#include "seal/package.h"

namespace tenet::hybrid {
namespace {

using tenet::testing::ModelBuilder;
using tenet::testing::random_values;

// ---------------------------------------------------------------------------------------------
// Manifest parsing

TEST(SliceManifest, ParsesAValidManifest) {
  auto m = parse_slice_manifest(R"({"version": 1, "slices": [
      {"name": "s1", "model": "a.onnx", "input": "h1", "add_to": "h2", "alpha": 0.5},
      {"name": "s-2.b_", "model": "/abs/b.tenet", "input": "/layer1/Relu_output_0", "add_to": "h3", "alpha": 1}]})");
  ASSERT_TRUE(m.ok()) << m.status().to_string();
  ASSERT_EQ(m->slices.size(), 2u);
  EXPECT_EQ(m->slices[0].name, "s1");
  EXPECT_EQ(m->slices[0].model, "a.onnx");
  EXPECT_EQ(m->slices[0].input, "h1");
  EXPECT_EQ(m->slices[0].add_to, "h2");
  EXPECT_FLOAT_EQ(m->slices[0].alpha, 0.5f);
  EXPECT_EQ(m->slices[1].input, "/layer1/Relu_output_0");
  EXPECT_FLOAT_EQ(m->slices[1].alpha, 1.f);
  // alpha at both ends, no version.
  EXPECT_TRUE(parse_slice_manifest(R"({"slices": [{"name": "a", "model": "m", "input": "i", "add_to": "o", "alpha": 0}]})").ok());
}

std::string one_slice(const std::string& fields) { return R"({"slices": [{)" + fields + "}]}"; }
const std::string kGood = R"("name": "s1", "model": "m.onnx", "input": "h1", "add_to": "h2")";

TEST(SliceManifest, RejectsHostileInputWithClearErrors) {
  std::string deep(40, '[');
  deep += std::string(40, ']');
  std::string many = R"({"slices": [)";
  for (int i = 0; i < 65; ++i) many += (i ? "," : "") + fmt::format(R"({{"name": "s{}", "model": "m", "input": "a", "add_to": "b", "alpha": 1}})", i);
  many += "]}";
  const struct {
    std::string text;
    std::string error;  // expected in the message
  } cases[] = {
      {"", "not valid JSON"},
      {"{", "not valid JSON"},
      {"[]", "top level must be a JSON object"},
      {R"({"slices": []})", "0 slices"},
      {R"({})", "\"slices\" must be an array"},
      {R"({"slices": {}})", "\"slices\" must be an array"},
      {R"({"slices": [], "extra": 1})", "unknown key \"extra\""},
      {R"({"version": 2, "slices": []})", "\"version\" must be 1"},
      {R"({"version": "1", "slices": []})", "\"version\" must be 1"},
      {R"({"slices": [1]})", "slices[0] must be an object"},
      {one_slice(kGood), "missing \"alpha\""},
      {one_slice(kGood + R"(, "alpha": "0.5")"), "\"alpha\" must be a number"},
      {one_slice(kGood + R"(, "alpha": true)"), "\"alpha\" must be a number"},
      {one_slice(kGood + R"(, "alpha": null)"), "\"alpha\" must be a number"},
      {one_slice(kGood + R"(, "alpha": -0.01)"), "outside [0, 1]"},
      {one_slice(kGood + R"(, "alpha": 1.5)"), "outside [0, 1]"},
      {one_slice(kGood + R"(, "alpha": 1e999)"), ""},  // not JSON for nlohmann, or inf: refused either way
      {one_slice(kGood + R"(, "alpha": 0.5, "alpha": 0.1)"), "repeated"},
      {one_slice(kGood + R"(, "alpha": 0.5, "weights": [1])"), "unknown key \"weights\""},
      {one_slice(R"("model": "m", "input": "a", "add_to": "b", "alpha": 1)"), "missing \"name\""},
      {one_slice(R"("name": "", "model": "m", "input": "a", "add_to": "b", "alpha": 1)"), "\"name\" must be 1.."},
      {one_slice(R"("name": "a/b", "model": "m", "input": "a", "add_to": "b", "alpha": 1)"), "[A-Za-z0-9_.-]"},
      {one_slice(R"("name": ")" + std::string(65, 'a') + R"(", "model": "m", "input": "a", "add_to": "b", "alpha": 1)"), "\"name\" must be 1.."},
      {one_slice(R"("name": 7, "model": "m", "input": "a", "add_to": "b", "alpha": 1)"), "\"name\" must be a string"},
      {one_slice(R"("name": "s", "input": "a", "add_to": "b", "alpha": 1)"), "missing \"model\""},
      {one_slice(R"("name": "s", "model": "m\u0000.onnx", "input": "a", "add_to": "b", "alpha": 1)"), "control characters"},
      {one_slice(R"("name": "s", "model": "m", "input": ["a"], "add_to": "b", "alpha": 1)"), "\"input\" must be a string"},
      {one_slice(R"("name": "s", "model": "m", "input": "a", "add_to": "", "alpha": 1)"), "\"add_to\" must be 1.."},
      {R"({"slices": [{"name": "s", "model": "m", "input": "a", "add_to": "b", "alpha": 1},
                      {"name": "s", "model": "n", "input": "c", "add_to": "d", "alpha": 1}]})",
       "slice name 's' used twice"},
      {many, "65 slices"},
      {deep, "nested deeper"},
      {"{\"slices\": [" + std::string(kMaxSliceManifestBytes, ' ') + "]}", "more than the limit"},
  };
  for (const auto& c : cases) {
    auto m = parse_slice_manifest(c.text);
    ASSERT_FALSE(m.ok()) << c.text.substr(0, 200);
    EXPECT_EQ(m.status().code(), StatusCode::kInvalidArgument) << c.text.substr(0, 200);
    EXPECT_NE(m.status().message().find(c.error), std::string::npos) << m.status().message() << " -- wanted: " << c.error;
  }
}

TEST(SliceManifest, MissingFileIsNotFound) {
  auto m = read_slice_manifest_file("/nonexistent/slices.json");
  EXPECT_EQ(m.status().code(), StatusCode::kNotFound);
}

// ---------------------------------------------------------------------------------------------
// Small models

// Weights from a fixed seed per name, so that two builders can hold the same model.
void weights(ModelBuilder& b, const std::string& name, const Shape& shape, float scale, uint32_t seed) {
  std::vector<float> v = random_values(numel(shape), seed);
  for (float& x : v) x *= scale;
  b.initializer(name, shape, v);
}

// Backbone: x[2,4,8,8] -> Conv3x3+Relu -> h1 -> Conv3x3+Relu -> h2 -> Conv3x3(stride 2) -> h3
// -> Relu -> GlobalAveragePool -> Flatten -> Gemm -> y[2,10]. With `with_slices`, the slices of
// slice_model() added by hand (Eq. 6), as the reference for composition:
//   h2 = B2(h1) + 0.5 · s1(h1);   h3 = B3(h2) + 0.25 · s2(h2) + 1 · s3(h2)
void backbone_nodes(ModelBuilder& b, bool with_slices) {
  b.input("x", {2, 4, 8, 8}).output("y");
  weights(b, "w1", {8, 4, 3, 3}, 0.3f, 1);
  weights(b, "b1", {8}, 0.1f, 2);
  weights(b, "w2", {8, 8, 3, 3}, 0.15f, 3);
  weights(b, "b2", {8}, 0.1f, 4);
  weights(b, "w3", {16, 8, 3, 3}, 0.15f, 5);
  weights(b, "wg", {10, 16}, 0.3f, 6);
  weights(b, "bg", {10}, 0.1f, 7);
  auto& c1 = b.node("Conv", {"x", "w1", "b1"}, {"c1"});
  ModelBuilder::attr(c1, "pads", std::vector<int64_t>{1, 1, 1, 1});
  b.node("Relu", {"c1"}, {"h1"});
  auto& c2 = b.node("Conv", {"h1", "w2", "b2"}, {"c2"});
  ModelBuilder::attr(c2, "pads", std::vector<int64_t>{1, 1, 1, 1});
  b.node("Relu", {"c2"}, {with_slices ? "h2_b" : "h2"});
  if (with_slices) {
    weights(b, "s1_w", {8, 8, 1, 1}, 0.4f, 101);
    weights(b, "s1_b", {8}, 0.1f, 102);
    b.node("Conv", {"h1", "s1_w", "s1_b"}, {"s1_c"});
    b.node("Relu", {"s1_c"}, {"s1_o"});
    b.initializer("a1", {}, {0.5f});
    b.node("Mul", {"s1_o", "a1"}, {"s1_s"});
    b.node("Add", {"h2_b", "s1_s"}, {"h2"});
  }
  auto& c3 = b.node("Conv", {"h2", "w3"}, {with_slices ? "h3_b" : "h3"});
  ModelBuilder::attr(c3, "pads", std::vector<int64_t>{1, 1, 1, 1});
  ModelBuilder::attr(c3, "strides", std::vector<int64_t>{2, 2});
  if (with_slices) {
    weights(b, "s2_w", {16, 8, 1, 1}, 0.4f, 201);
    auto& s2 = b.node("Conv", {"h2", "s2_w"}, {"s2_o"});
    ModelBuilder::attr(s2, "strides", std::vector<int64_t>{2, 2});
    b.initializer("a2", {}, {0.25f});
    b.node("Mul", {"s2_o", "a2"}, {"s2_s"});
    b.node("Add", {"h3_b", "s2_s"}, {"h3_p"});
    weights(b, "s3_w", {16, 8, 1, 1}, 0.2f, 301);
    auto& s3 = b.node("Conv", {"h2", "s3_w"}, {"s3_o"});
    ModelBuilder::attr(s3, "strides", std::vector<int64_t>{2, 2});
    b.node("Add", {"h3_p", "s3_o"}, {"h3"});
  }
  b.node("Relu", {"h3"}, {"r3"});
  b.node("GlobalAveragePool", {"r3"}, {"p"});
  b.node("Flatten", {"p"}, {"f"});
  auto& g = b.node("Gemm", {"f", "wg", "bg"}, {"y"});
  ModelBuilder::attr(g, "transB", int64_t{1});
}

std::string backbone_bytes(bool with_slices = false) {
  ModelBuilder b;
  backbone_nodes(b, with_slices);
  return b.bytes();
}

// Slice graphs (one input "in", one output "out"), the same weights as backbone_nodes'.
std::string slice_bytes(int which, int64_t in_channels = 8, int64_t opset = 17) {
  ModelBuilder b(opset);
  b.input("in", {-1, in_channels, -1, -1}).output("out");
  if (which == 1) {
    weights(b, "w", {8, in_channels, 1, 1}, 0.4f, 101);
    weights(b, "b", {8}, 0.1f, 102);
    b.node("Conv", {"in", "w", "b"}, {"c"});
    b.node("Relu", {"c"}, {"out"});
  } else {
    weights(b, "w", {16, in_channels, 1, 1}, which == 2 ? 0.4f : 0.2f, which == 2 ? 201 : 301);
    auto& c = b.node("Conv", {"in", "w"}, {"out"});
    ModelBuilder::attr(c, "strides", std::vector<int64_t>{2, 2});
  }
  return b.bytes();
}

ir::Graph import_bytes(const std::string& bytes) {
  auto g = onnx_import::import_model_bytes(std::span<const std::byte>(reinterpret_cast<const std::byte*>(bytes.data()), bytes.size()));
  EXPECT_TRUE(g.ok()) << g.status().to_string();
  return g.ok() ? std::move(g).value() : ir::Graph{};
}

LoadedSlice slice(const std::string& name, int which, const std::string& input, const std::string& add_to, float alpha,
                  int64_t in_channels = 8, int64_t opset = 17) {
  LoadedSlice s;
  s.spec = {name, name + ".onnx", input, add_to, alpha};
  s.graph = import_bytes(slice_bytes(which, in_channels, opset));
  return s;
}

std::vector<LoadedSlice> three_slices() {
  std::vector<LoadedSlice> v;
  v.push_back(slice("s1", 1, "h1", "h2", 0.5f));
  v.push_back(slice("s2", 2, "h2", "h3", 0.25f));
  v.push_back(slice("s3", 3, "h2", "h3", 1.f));
  return v;
}

const std::map<std::string, Shape> kShapes{{"x", {2, 4, 8, 8}}};

Tensor random_input(uint32_t seed) { return Tensor::from_vector<float>({2, 4, 8, 8}, random_values(2 * 4 * 8 * 8, seed)); }

std::vector<Tensor> run_float(const ir::Graph& g, const Tensor& x) {
  cpu::CompileOptions o;
  o.threads = 1;
  auto m = cpu::compile_model(g, kShapes, o);
  EXPECT_TRUE(m.ok()) << m.status().to_string();
  std::vector<Tensor> out;
  if (!m.ok()) return out;
  std::vector<ConstTensorView> views{x.view()};
  EXPECT_TRUE((*m)->run(views, out).ok());
  return out;
}

using testing::relative_error;
using testing::top1;

// ---------------------------------------------------------------------------------------------
// Composition

TEST(SliceComposition, MatchesTheCombinedModelOnThePlainEngine) {
  const ir::Graph backbone = import_bytes(backbone_bytes());
  auto composed = compose_slices(backbone, three_slices(), kShapes);
  ASSERT_TRUE(composed.ok()) << composed.status().to_string();
  EXPECT_EQ(composed->slice_names, (std::vector<std::string>{"s1", "s2", "s3"}));
  // Every slice node, and the Mul/Add attaching it, is private and carries its slice's prefix.
  size_t slice_nodes = 0;
  for (const ir::Node& n : composed->graph.nodes) {
    const bool from_slice = n.name.rfind("slice.", 0) == 0;
    slice_nodes += from_slice;
    EXPECT_EQ(from_slice, composed->private_nodes.count(n.name) != 0) << n.name;
  }
  EXPECT_EQ(slice_nodes, composed->private_nodes.size());
  EXPECT_EQ(slice_nodes, 4u + 3 + 2);  // s1: conv relu mul add; s2: conv mul add; s3: conv add
  const ir::Graph reference = import_bytes(backbone_bytes(/*with_slices=*/true));
  const ir::Graph plain = import_bytes(backbone_bytes());
  for (uint32_t seed = 1; seed <= 3; ++seed) {
    const Tensor x = random_input(seed);
    std::vector<Tensor> want = run_float(reference, x), got = run_float(composed->graph, x), without = run_float(plain, x);
    ASSERT_EQ(got.size(), 1u);
    ASSERT_EQ(got[0].shape(), want[0].shape());
    EXPECT_LT(relative_error(got[0], want[0]), 1e-5) << "seed " << seed;
    // The slices change the result (the test would pass vacuously otherwise).
    EXPECT_GT(relative_error(without[0], want[0]), 0.05) << "seed " << seed;
  }
}

TEST(SliceComposition, HybridRunKeepsSlicesInTheEnclaveAndAgrees) {
  const ir::Graph backbone = import_bytes(backbone_bytes());
  auto composed = compose_slices(backbone, three_slices(), kShapes);
  ASSERT_TRUE(composed.ok()) << composed.status().to_string();
  auto accel = std::make_shared<testing::MaliciousAccelerator>(std::make_shared<ExactLinear>());
  HybridOptions o;
  o.accelerator = accel;
  o.threads = 1;
  o.private_nodes = composed->private_nodes;
  auto m = HybridModel::compile(composed->graph, kShapes, o);
  ASSERT_TRUE(m.ok()) << m.status().to_string();
  // The backbone's three convs and the Gemm are outsourced; no slice node is.
  const HybridStats st = (*m)->stats();
  EXPECT_EQ(st.outsourced_layers, 4);
  for (const auto& l : (*m)->layers()) EXPECT_EQ(l->node_name.rfind("slice.", 0), std::string::npos) << l->node_name;
  EXPECT_GT(st.private_flops_fraction, 0.05);
  EXPECT_LT(st.private_flops_fraction + st.outsourced_flops_fraction, 1.0);
  // h3's first attaching Add is absorbed by the backbone conv that computes h3 as a sum post-op:
  // the slice term is added inside the enclave, after unblinding (outsourced_linear.h, step 6).
  bool saw_sum = false;
  for (const auto& step : (*m)->instance(0).steps()) {
    if (step.kernel == std::string("hybrid_outsourced") && step.post_ops.find("sum") != std::string::npos) saw_sum = true;
  }
  EXPECT_TRUE(saw_sum);
  // No registered weight tensor has a slice's shape (the slices are 1x1 convs, the backbone's 3x3).
  for (const accel::LinearSpec& spec : accel->registered()) {
    EXPECT_FALSE(spec.weight_shape.size() == 4 && spec.weight_shape[2] == 1 && spec.weight_shape[3] == 1)
        << shape_to_string(spec.weight_shape);
  }
  const ir::Graph reference = import_bytes(backbone_bytes(true));
  for (uint32_t seed = 11; seed <= 14; ++seed) {
    const Tensor x = random_input(seed);
    std::vector<Tensor> want = run_float(reference, x), got;
    std::vector<ConstTensorView> views{x.view()};
    ASSERT_TRUE((*m)->run(views, got).ok());
    EXPECT_LT(relative_error(got[0], want[0]), 0.05) << "seed " << seed;
    EXPECT_EQ(top1(got[0]), top1(want[0])) << "seed " << seed;
  }
  // A lying accelerator is still caught on the public layers fed by the slice sums.
  accel->set_attack(testing::Attack::kFlipOne);
  std::vector<Tensor> got;
  const Tensor x = random_input(20);
  std::vector<ConstTensorView> views{x.view()};
  EXPECT_EQ((*m)->run(views, got).code(), StatusCode::kDataLoss);
}

// Records every input the accelerator receives.
class ObserverAccelerator final : public accel::Accelerator {
 public:
  explicit ObserverAccelerator(std::shared_ptr<accel::Accelerator> inner) : inner_(std::move(inner)) {}
  std::string name() const override { return "observer"; }
  Result<int32_t> add_layer(const accel::LinearSpec& spec) override { return inner_->add_layer(spec); }
  Status run(int32_t layer, const Shape& input_shape, std::span<const uint32_t> x, std::span<uint32_t> y) override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      seen_.emplace_back(layer, std::vector<uint32_t>(x.begin(), x.end()));
    }
    return inner_->run(layer, input_shape, x, y);
  }
  std::vector<std::pair<int32_t, std::vector<uint32_t>>> seen() {
    std::lock_guard<std::mutex> lock(mu_);
    return seen_;
  }

 private:
  std::shared_ptr<accel::Accelerator> inner_;
  std::mutex mu_;
  std::vector<std::pair<int32_t, std::vector<uint32_t>>> seen_;
};

// An unblinded input is int8 data in Z_p: every element within 127 of 0 (mod p).
double fraction_in_int8_band(const std::vector<uint32_t>& x) {
  size_t n = 0;
  for (uint32_t v : x) n += v <= 127 || v >= kP - 127;
  return x.empty() ? 0.0 : static_cast<double>(n) / static_cast<double>(x.size());
}

// Features computed from slice outputs (h2 = B2 + α·s1 feeds conv 3; h3 feeds the Gemm through
// the pooling) are sent to the accelerator blinded, as every outsourced input is.
TEST(SliceComposition, AcceleratorNeverReceivesAnUnblindedValue) {
  const ir::Graph backbone = import_bytes(backbone_bytes());
  auto composed = compose_slices(backbone, three_slices(), kShapes);
  ASSERT_TRUE(composed.ok()) << composed.status().to_string();
  for (bool insecure : {false, true}) {
    auto observer = std::make_shared<ObserverAccelerator>(std::make_shared<ExactLinear>());
    HybridOptions o;
    o.accelerator = observer;
    o.threads = 1;
    o.private_nodes = composed->private_nodes;
    o.insecure_no_blinding = insecure;  // the control: the same run without pads
    o.verify_bits = insecure ? 0 : 40;
    auto m = HybridModel::compile(composed->graph, kShapes, o);
    ASSERT_TRUE(m.ok()) << m.status().to_string();
    const Tensor x = random_input(7);
    std::vector<ConstTensorView> views{x.view()};
    std::vector<Tensor> got;
    ASSERT_TRUE((*m)->run(views, got).ok());
    const auto seen = observer->seen();
    ASSERT_EQ(seen.size(), 4u);  // one call per outsourced layer
    for (const auto& [layer, values] : seen) {
      const double band = fraction_in_int8_band(values);
      if (insecure) EXPECT_EQ(band, 1.0) << "layer " << layer;
      else EXPECT_LT(band, 0.01) << "layer " << layer << ": the accelerator saw unblinded values";
    }
  }
}

TEST(SliceComposition, RejectsBadAttachments) {
  const ir::Graph backbone = import_bytes(backbone_bytes());
  const struct {
    std::vector<LoadedSlice> slices;
    std::string error;
  } cases[] = {
      {{slice("s1", 1, "nope", "h2", 0.5f)}, "input 'nope' is not a value of the backbone"},
      {{slice("s1", 1, "h1", "nope", 0.5f)}, "add_to 'nope' is not a value of the backbone"},
      {{slice("s1", 1, "h1", "x", 0.5f)}, "not computed by a backbone node"},
      {{slice("s1", 1, "h1", "w1", 0.5f)}, "not computed by a backbone node"},
      {{slice("s1", 1, "h2", "h1", 0.5f)}, "would form a cycle"},
      {{slice("s1", 1, "h1", "h1", 0.5f)}, "would form a cycle"},
      {{slice("s1", 2, "h1", "h2", 0.5f)}, "does not match add_to 'h2'"},       // [2,16,4,4] vs [2,8,8,8]
      {{slice("s1", 1, "x", "h2", 0.5f)}, "slice 's1' on input 'x'"},            // 4 channels into an 8-channel conv
      {{slice("s1", 1, "h1", "h2", 0.5f, 8, 13)}, "opset 13 differs"},
      {{slice("s1", 1, "h1", "h2", 1.5f)}, "outside [0, 1]"},
      {{slice("s1", 1, "h1", "h2", std::nanf(""))}, "outside [0, 1]"},
      {{slice("s/1", 1, "h1", "h2", 0.5f)}, "[A-Za-z0-9_.-]"},
      {{slice("s1", 1, "h1", "h2", 0.5f), slice("s1", 1, "h1", "h2", 0.5f)}, "used twice"},
  };
  for (const auto& c : cases) {
    auto r = compose_slices(backbone, c.slices, kShapes);
    ASSERT_FALSE(r.ok()) << c.error;
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument) << r.status().to_string();
    EXPECT_NE(r.status().message().find(c.error), std::string::npos) << r.status().message() << " -- wanted: " << c.error;
  }
  // A slice graph with two inputs.
  ModelBuilder b;
  b.input("a", {2, 8, 8, 8}).input("b", {2, 8, 8, 8}).output("out");
  b.node("Add", {"a", "b"}, {"out"});
  LoadedSlice two = slice("s1", 1, "h1", "h2", 0.5f);
  two.graph = import_bytes(b.bytes());
  auto r = compose_slices(backbone, {two}, kShapes);
  EXPECT_NE(r.status().message().find("exactly one input"), std::string::npos) << r.status().to_string();
}

// Two slices that are each acyclic but together feed each other: x -> Conv a -> ha,
// x -> Conv b -> hb; s1: ha -> hb, s2: hb -> ha.
TEST(SliceComposition, RejectsCyclesAcrossSlices) {
  ModelBuilder b;
  b.input("x", {2, 8, 8, 8}).output("y");
  weights(b, "wa", {8, 8, 1, 1}, 0.3f, 1);
  weights(b, "wb", {8, 8, 1, 1}, 0.3f, 2);
  b.node("Conv", {"x", "wa"}, {"ha"});
  b.node("Conv", {"x", "wb"}, {"hb"});
  b.node("Add", {"ha", "hb"}, {"y"});
  const ir::Graph backbone = import_bytes(b.bytes());
  const std::map<std::string, Shape> shapes{{"x", {2, 8, 8, 8}}};
  std::vector<LoadedSlice> one{slice("s1", 1, "ha", "hb", 0.5f)};
  EXPECT_TRUE(compose_slices(backbone, one, shapes).ok());
  std::vector<LoadedSlice> two{slice("s1", 1, "ha", "hb", 0.5f), slice("s2", 1, "hb", "ha", 0.5f)};
  auto r = compose_slices(backbone, two, shapes);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("cycle"), std::string::npos) << r.status().to_string();
}

// ---------------------------------------------------------------------------------------------
// Loading: plain and sealed slices, from a manifest on disk

class SliceFiles : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() / fmt::format("tenet_slices_test_{}_{}", ::getpid(), counter_++);
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string write(const std::string& name, const std::string& bytes) {
    const std::string path = (dir_ / name).string();
    std::ofstream(path, std::ios::binary) << bytes;
    return path;
  }
  std::string write_manifest(const std::string& s1, const std::string& s2, const std::string& s3) {
    return write("slices.json", fmt::format(R"({{"version": 1, "slices": [
        {{"name": "s1", "model": "{}", "input": "h1", "add_to": "h2", "alpha": 0.5}},
        {{"name": "s2", "model": "{}", "input": "h2", "add_to": "h3", "alpha": 0.25}},
        {{"name": "s3", "model": "{}", "input": "h2", "add_to": "h3", "alpha": 1.0}}]}})",
                                            s1, s2, s3));
  }
  std::string seal(int which, const std::string& name, const seal::SecretBytes& key) {
    const std::string onnx = slice_bytes(which);
    auto pkg = seal::seal_model_to_bytes(crypto::as_bytes(std::string_view(onnx)), key.view(), {name, "1"});
    EXPECT_TRUE(pkg.ok()) << pkg.status().to_string();
    return write(name + ".tenet", std::string(reinterpret_cast<const char*>(pkg->data()), pkg->size()));
  }
  Result<ComposedModel> load_and_compose(const seal::SecretBytes* key) {
    TENET_ASSIGN_OR_RETURN(SliceManifest m, read_slice_manifest_file((dir_ / "slices.json").string()));
    TENET_ASSIGN_OR_RETURN(std::vector<LoadedSlice> loaded, load_slices(m, dir_.string(), key));
    return compose_slices(import_bytes(backbone_bytes()), loaded, kShapes);
  }
  std::filesystem::path dir_;
  static inline int counter_ = 0;
};

TEST_F(SliceFiles, PlainAndSealedSlicesComposeTheSameModel) {
  write("s1.onnx", slice_bytes(1));
  write("s2.onnx", slice_bytes(2));
  write("s3.onnx", slice_bytes(3));
  write_manifest("s1.onnx", "s2.onnx", "s3.onnx");
  auto plain = load_and_compose(nullptr);
  ASSERT_TRUE(plain.ok()) << plain.status().to_string();

  auto key = seal::generate_model_key();
  ASSERT_TRUE(key.ok());
  seal(1, "s1", *key);
  seal(2, "s2", *key);
  write_manifest("s1.tenet", "s2.tenet", "s3.onnx");  // sealed and plain slices may mix
  auto sealed = load_and_compose(&*key);
  ASSERT_TRUE(sealed.ok()) << sealed.status().to_string();
  const Tensor x = random_input(5);
  std::vector<Tensor> a = run_float(plain->graph, x), b = run_float(sealed->graph, x);
  ASSERT_EQ(a.size(), 1u);
  ASSERT_EQ(b.size(), 1u);
  EXPECT_EQ(0, std::memcmp(a[0].data(), b[0].data(), a[0].size_bytes()));
  EXPECT_EQ(plain->private_nodes, sealed->private_nodes);

  // No key, a wrong key.
  auto no_key = load_and_compose(nullptr);
  EXPECT_EQ(no_key.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(no_key.status().message().find("--slice-key"), std::string::npos) << no_key.status().to_string();
  auto other = seal::generate_model_key();
  ASSERT_TRUE(other.ok());
  auto wrong = load_and_compose(&*other);
  EXPECT_EQ(wrong.status().code(), StatusCode::kDataLoss) << wrong.status().to_string();
  EXPECT_NE(wrong.status().message().find("slice 's1'"), std::string::npos) << wrong.status().to_string();
}

TEST_F(SliceFiles, RejectsMissingAndMalformedSliceFiles) {
  write_manifest("missing.onnx", "s2.onnx", "s3.onnx");
  auto r = load_and_compose(nullptr);
  EXPECT_EQ(r.status().code(), StatusCode::kNotFound);
  EXPECT_NE(r.status().message().find("slice 's1'"), std::string::npos) << r.status().to_string();
  // Not ONNX; a truncated package; a directory.
  write("junk.onnx", "this is not a model");
  write_manifest("junk.onnx", "s2.onnx", "s3.onnx");
  r = load_and_compose(nullptr);
  EXPECT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("slice 's1'"), std::string::npos) << r.status().to_string();
  auto key = seal::generate_model_key();
  ASSERT_TRUE(key.ok());
  const std::string pkg = seal(1, "s1", *key);
  std::filesystem::resize_file(pkg, std::filesystem::file_size(pkg) / 2);
  write_manifest("s1.tenet", "s2.onnx", "s3.onnx");
  r = load_and_compose(&*key);
  EXPECT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("slice 's1'"), std::string::npos) << r.status().to_string();
  std::filesystem::create_directories(dir_ / "adir");
  write_manifest("adir", "s2.onnx", "s3.onnx");
  r = load_and_compose(nullptr);
  EXPECT_EQ(r.status().code(), StatusCode::kNotFound);
}

}  // namespace
}  // namespace tenet::hybrid
