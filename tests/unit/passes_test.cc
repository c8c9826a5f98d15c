// Tests of the graph rewrites in engine/passes/passes.h (fusion.cc): each pass rewrites where it
// must, leaves alone what it must not touch, and leaves a valid, topologically sorted graph whose
// outputs keep their names. Graphs are built by hand with shapes already set, as after shape
// inference; BN folding is checked numerically against a direct convolution written here.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <map>
#include <ostream>
#include <string>
#include <utility>
#include <vector>

#include "engine/ops/op.h"
#include "engine/passes/passes.h"

namespace tenet::passes {
namespace {

using ir::Graph;
using ir::kNoValue;
using ir::Node;
using ir::PostOp;
using ir::ValueId;

// Builds small graphs: every value gets its dtype and shape as shape inference would set them.
class GraphBuilder {
 public:
  Graph g;

  GraphBuilder() {
    g.name = "test";
    g.opset = 17;
  }

  ValueId input(const std::string& name, Shape shape, DType dtype = DType::kFloat32) {
    ValueId id = value(name, std::move(shape), dtype);
    g.inputs.push_back(id);
    return id;
  }
  ValueId value(const std::string& name, Shape shape, DType dtype = DType::kFloat32) {
    ir::Value v;
    v.name = name;
    v.dtype = dtype;
    v.shape = std::move(shape);
    v.shape_known = true;
    return g.add_value(std::move(v));
  }
  ValueId constant(const std::string& name, Shape shape, const std::vector<float>& data) {
    return g.add_constant(name, Tensor::from_vector<float>(std::move(shape), data));
  }
  ValueId scalar(const std::string& name, float v, Shape shape = {}) { return constant(name, std::move(shape), {v}); }
  // A node with explicit output values.
  Node& node(const std::string& op_type, std::vector<ValueId> inputs, std::vector<ValueId> outputs,
             std::map<std::string, ir::Attribute> attrs = {}) {
    Node n;
    n.name = fmt::format("{}_{}", op_type, g.nodes.size());
    n.op_type = op_type;
    n.inputs = std::move(inputs);
    n.outputs = std::move(outputs);
    n.attrs = std::move(attrs);
    g.nodes.push_back(std::move(n));
    return g.nodes.back();
  }
  // A single-output node; returns its output.
  ValueId op(const std::string& op_type, std::vector<ValueId> inputs, const std::string& out, Shape shape,
             std::map<std::string, ir::Attribute> attrs = {}, DType dtype = DType::kFloat32) {
    ValueId y = value(out, std::move(shape), dtype);
    node(op_type, std::move(inputs), {y}, std::move(attrs));
    return y;
  }
  void output(ValueId id) { g.outputs.push_back(id); }
};

std::vector<float> pseudo_random(size_t count, uint32_t seed, float lo, float hi) {
  std::vector<float> v(count);
  uint32_t s = seed * 2654435761u + 12345u;
  for (float& x : v) {
    s = s * 1664525u + 1013904223u;
    x = lo + (hi - lo) * static_cast<float>(s >> 8) / static_cast<float>(1u << 24);
  }
  return v;
}

int count_op(const Graph& g, const std::string& op_type) {
  int n = 0;
  for (const Node& node : g.nodes) n += node.op_type == op_type ? 1 : 0;
  return n;
}

const Node* find_op(const Graph& g, const std::string& op_type) {
  for (const Node& node : g.nodes) {
    if (node.op_type == op_type) return &node;
  }
  return nullptr;
}

std::string name_of(const Graph& g, ValueId id) { return id == kNoValue ? "<none>" : g.value(id).name; }

std::vector<std::string> output_names(const Graph& g) {
  std::vector<std::string> names;
  for (ValueId id : g.outputs) names.push_back(name_of(g, id));
  return names;
}

std::vector<std::string> input_names(const Graph& g, const Node& n) {
  std::vector<std::string> names;
  for (ValueId id : n.inputs) names.push_back(name_of(g, id));
  return names;
}

// validate() plus the topological order every pass must keep.
void expect_valid_sorted(const Graph& g) {
  Status s = g.validate();
  ASSERT_TRUE(s.ok()) << s.to_string();
  std::vector<bool> available(g.values.size(), false);
  for (ValueId id : g.inputs) available[static_cast<size_t>(id)] = true;
  for (size_t i = 0; i < g.values.size(); ++i) available[i] = available[i] || g.values[i].is_constant();
  for (const Node& n : g.nodes) {
    EXPECT_FALSE(n.dead) << n.describe() << " left dead after compact()";
    for (ValueId id : n.inputs) {
      if (id != kNoValue) {
        EXPECT_TRUE(available[static_cast<size_t>(id)]) << n.describe() << " reads " << name_of(g, id);
      }
    }
    for (ValueId id : n.outputs) {
      if (id != kNoValue) available[static_cast<size_t>(id)] = true;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// fuse_matmul_epilogue

TEST(PassesMatMulEpilogue, BiasAddBecomesFusedMatMulThenResidualAndGelu) {
  GraphBuilder b;
  ValueId x = b.input("x", {1, 4, 8});
  ValueId w1 = b.constant("w1", {8, 16}, pseudo_random(128, 1, -1.f, 1.f));
  ValueId b1 = b.constant("b1", {16}, pseudo_random(16, 2, -1.f, 1.f));
  ValueId w2 = b.constant("w2", {16, 8}, pseudo_random(128, 3, -1.f, 1.f));
  ValueId b2 = b.constant("b2", {8}, pseudo_random(8, 4, -1.f, 1.f));
  ValueId m1 = b.op("MatMul", {x, w1}, "m1", {1, 4, 16});
  ValueId a1 = b.op("Add", {b1, m1}, "a1", {1, 4, 16});
  ValueId g = b.op("Gelu", {a1}, "g", {1, 4, 16});
  ValueId m2 = b.op("MatMul", {g, w2}, "m2", {1, 4, 8});
  ValueId a2 = b.op("Add", {m2, b2}, "a2", {1, 4, 8});
  b.output(b.op("Add", {x, a2}, "y", {1, 4, 8}));
  PassStats stats;
  ASSERT_TRUE(fuse_matmul_epilogue(b.g, stats).ok());
  ASSERT_TRUE(fuse_residual_add(b.g, stats).ok());
  ASSERT_TRUE(fuse_activations(b.g, stats).ok());
  expect_valid_sorted(b.g);
  EXPECT_EQ(stats.matmuls_fused, 2);
  EXPECT_EQ(stats.residual_adds_fused, 1);
  ASSERT_EQ(b.g.nodes.size(), 2u);
  EXPECT_EQ(b.g.nodes[0].op_type, "FusedMatMul");
  EXPECT_EQ(input_names(b.g, b.g.nodes[0]), (std::vector<std::string>{"x", "w1", "b1"}));
  ASSERT_EQ(b.g.nodes[0].post_ops.size(), 1u);
  EXPECT_EQ(b.g.nodes[0].post_ops[0].kind, PostOp::Kind::kGeluErf);
  EXPECT_EQ(input_names(b.g, b.g.nodes[1]), (std::vector<std::string>{"g", "w2", "b2", "x"}));
  ASSERT_EQ(b.g.nodes[1].post_ops.size(), 1u);
  EXPECT_EQ(b.g.nodes[1].post_ops[0].kind, PostOp::Kind::kSum);
  EXPECT_EQ(output_names(b.g), std::vector<std::string>{"y"});
}

TEST(PassesMatMulEpilogue, OperandScalesBecomeAlpha) {
  GraphBuilder b;
  ValueId q = b.input("q", {2, 4, 8});
  ValueId kt = b.input("kt", {2, 8, 4});
  ValueId qs = b.op("Div", {q, b.scalar("eight", 8.f)}, "qs", {2, 4, 8});
  ValueId ks = b.op("Mul", {b.scalar("half", 0.5f, {1}), kt}, "ks", {2, 8, 4});
  b.output(b.op("MatMul", {qs, ks}, "s", {2, 4, 4}));
  PassStats stats;
  ASSERT_TRUE(fuse_matmul_epilogue(b.g, stats).ok());
  expect_valid_sorted(b.g);
  EXPECT_EQ(stats.matmuls_fused, 1);
  ASSERT_EQ(b.g.nodes.size(), 1u);
  const Node& n = b.g.nodes[0];
  EXPECT_EQ(n.op_type, "FusedMatMul");
  EXPECT_EQ(input_names(b.g, n), (std::vector<std::string>{"q", "kt"}));
  EXPECT_FLOAT_EQ(n.attr_float("alpha").value(), 0.0625f);
  EXPECT_EQ(output_names(b.g), std::vector<std::string>{"s"});
}

TEST(PassesMatMulEpilogueNot, NonConstantBiasSharedOutputOrWideningScale) {
  GraphBuilder b;
  ValueId x = b.input("x", {4, 8});
  ValueId w = b.constant("w", {8, 8}, pseudo_random(64, 5, -1.f, 1.f));
  // A non-constant addend is not a bias.
  ValueId m1 = b.op("MatMul", {x, w}, "m1", {4, 8});
  ValueId a1 = b.op("Add", {m1, x}, "a1", {4, 8});
  // The product is read twice: the Add cannot disappear into it.
  ValueId m2 = b.op("MatMul", {a1, w}, "m2", {4, 8});
  ValueId a2 = b.op("Add", {m2, b.constant("c", {8}, pseudo_random(8, 6, -1.f, 1.f))}, "a2", {4, 8});
  ValueId r = b.op("Relu", {m2}, "r", {4, 8});
  // A scale that raises its operand's rank would change the product's shape.
  ValueId v = b.input("v", {8});
  ValueId vs = b.op("Mul", {v, b.scalar("two", 2.f, {1, 1})}, "vs", {1, 8});
  ValueId m3 = b.op("MatMul", {vs, w}, "m3", {1, 8});
  b.output(a2);
  b.output(r);
  b.output(m3);
  PassStats stats;
  ASSERT_TRUE(fuse_matmul_epilogue(b.g, stats).ok());
  expect_valid_sorted(b.g);
  EXPECT_EQ(stats.matmuls_fused, 0);
  EXPECT_EQ(count_op(b.g, "FusedMatMul"), 0);
  EXPECT_EQ(count_op(b.g, "Add"), 2);
}

// ---------------------------------------------------------------------------------------------
// eliminate_identities

TEST(PassesIdentity, RemovesChainInTheMiddle) {
  GraphBuilder b;
  ValueId x = b.input("x", {2, 3});
  ValueId r = b.op("Relu", {x}, "r", {2, 3});
  ValueId i1 = b.op("Identity", {r}, "i1", {2, 3});
  ValueId i2 = b.op("Identity", {i1}, "i2", {2, 3});
  b.output(b.op("Sigmoid", {i2}, "y", {2, 3}));
  PassStats stats;
  ASSERT_TRUE(eliminate_identities(b.g, stats).ok());
  expect_valid_sorted(b.g);
  EXPECT_EQ(stats.identities_removed, 2);
  ASSERT_EQ(b.g.nodes.size(), 2u);
  EXPECT_EQ(b.g.nodes[1].op_type, "Sigmoid");
  EXPECT_EQ(input_names(b.g, b.g.nodes[1]), std::vector<std::string>{"r"});
  EXPECT_EQ(output_names(b.g), std::vector<std::string>{"y"});
}

TEST(PassesIdentity, GraphOutputKeepsItsNameAndOtherReadersFollow) {
  // r feeds both an Identity whose output is a graph output and a Sigmoid.
  GraphBuilder b;
  ValueId x = b.input("x", {4});
  ValueId r = b.op("Relu", {x}, "r", {4});
  ValueId y = b.op("Identity", {r}, "y", {4});
  ValueId z = b.op("Sigmoid", {r}, "z", {4});
  b.output(y);
  b.output(z);
  PassStats stats;
  ASSERT_TRUE(eliminate_identities(b.g, stats).ok());
  expect_valid_sorted(b.g);
  EXPECT_EQ(stats.identities_removed, 1);
  ASSERT_EQ(b.g.nodes.size(), 2u);
  EXPECT_EQ(output_names(b.g), (std::vector<std::string>{"y", "z"}));
  EXPECT_EQ(b.g.nodes[0].op_type, "Relu");
  EXPECT_EQ(name_of(b.g, b.g.nodes[0].outputs[0]), "y");
  EXPECT_EQ(input_names(b.g, b.g.nodes[1]), std::vector<std::string>{"y"});
}

TEST(PassesIdentity, ChainEndingInGraphOutput) {
  GraphBuilder b;
  ValueId x = b.input("x", {4});
  ValueId r = b.op("Relu", {x}, "r", {4});
  ValueId a = b.op("Identity", {r}, "a", {4});
  ValueId z = b.op("Sigmoid", {a}, "z", {4});
  ValueId y = b.op("Identity", {a}, "y", {4});
  b.output(z);
  b.output(y);
  PassStats stats;
  ASSERT_TRUE(eliminate_identities(b.g, stats).ok());
  expect_valid_sorted(b.g);
  EXPECT_EQ(stats.identities_removed, 2);
  ASSERT_EQ(b.g.nodes.size(), 2u);
  EXPECT_EQ(output_names(b.g), (std::vector<std::string>{"z", "y"}));
  EXPECT_EQ(name_of(b.g, b.g.nodes[0].outputs[0]), "y");
  EXPECT_EQ(input_names(b.g, b.g.nodes[1]), std::vector<std::string>{"y"});
}

TEST(PassesIdentity, KeptWhenOutputCannotTakeItsInputsPlace) {
  // Graph input -> graph output, constant -> graph output, graph output -> graph output.
  GraphBuilder b;
  ValueId x = b.input("x", {4});
  ValueId c = b.constant("c", {4}, {1, 2, 3, 4});
  ValueId r = b.op("Relu", {x}, "r", {4});
  b.output(b.op("Identity", {x}, "y_from_input", {4}));
  b.output(b.op("Identity", {c}, "y_from_constant", {4}));
  b.output(r);
  b.output(b.op("Identity", {r}, "y_from_output", {4}));
  PassStats stats;
  ASSERT_TRUE(eliminate_identities(b.g, stats).ok());
  expect_valid_sorted(b.g);
  EXPECT_EQ(stats.identities_removed, 0);
  EXPECT_EQ(count_op(b.g, "Identity"), 3);
  EXPECT_EQ(output_names(b.g), (std::vector<std::string>{"y_from_input", "y_from_constant", "r", "y_from_output"}));
}

TEST(PassesIdentity, DropoutRemovedOnlyInInferenceWithUnusedMask) {
  GraphBuilder b;
  ValueId x = b.input("x", {4});
  ValueId ratio = b.scalar("ratio", 0.1f);
  // Mask declared but unused: removed.
  ValueId d1 = b.value("d1", {4});
  ValueId m1 = b.value("m1", {4}, DType::kBool);
  b.node("Dropout", {x, ratio}, {d1, m1});
  // Mask read by a node: kept.
  ValueId d2 = b.value("d2", {4});
  ValueId m2 = b.value("m2", {4}, DType::kBool);
  b.node("Dropout", {d1}, {d2, m2});
  ValueId m2f = b.op("Cast", {m2}, "m2f", {4}, {{"to", ir::Attribute{int64_t{1}}}});
  // training_mode = true: kept; training_mode = false: removed.
  ValueId yes = b.g.add_constant("yes", Tensor::from_vector<bool>({}, {true}));
  ValueId no = b.g.add_constant("no", Tensor::from_vector<bool>({}, {false}));
  ValueId d3 = b.op("Dropout", {d2, ratio, yes}, "d3", {4});
  ValueId d4 = b.op("Dropout", {d3, ratio, no}, "d4", {4});
  b.output(b.op("Add", {d4, m2f}, "y", {4}));
  PassStats stats;
  ASSERT_TRUE(eliminate_identities(b.g, stats).ok());
  expect_valid_sorted(b.g);
  EXPECT_EQ(stats.identities_removed, 2);
  EXPECT_EQ(count_op(b.g, "Dropout"), 2);
  const Node* add = find_op(b.g, "Add");
  ASSERT_NE(add, nullptr);
  EXPECT_EQ(input_names(b.g, *add), (std::vector<std::string>{"d3", "m2f"}));
  EXPECT_EQ(input_names(b.g, b.g.nodes[0]), std::vector<std::string>{"x"});  // the kept Dropout reads x now
}

// ---------------------------------------------------------------------------------------------
// fold_batch_norm

// Direct 2-D convolution, stride 1, no padding, one group; x [1, C, H, W], w [M, C, K, K].
std::vector<float> direct_conv(const std::vector<float>& x, int64_t c, int64_t h, int64_t wd, const std::vector<float>& w,
                               const std::vector<float>* bias, int64_t m, int64_t k) {
  const int64_t oh = h - k + 1, ow = wd - k + 1;
  std::vector<float> y(static_cast<size_t>(m * oh * ow));
  for (int64_t o = 0; o < m; ++o) {
    for (int64_t i = 0; i < oh; ++i) {
      for (int64_t j = 0; j < ow; ++j) {
        double acc = bias ? (*bias)[static_cast<size_t>(o)] : 0.0;
        for (int64_t ci = 0; ci < c; ++ci) {
          for (int64_t ki = 0; ki < k; ++ki) {
            for (int64_t kj = 0; kj < k; ++kj) {
              acc += static_cast<double>(x[static_cast<size_t>((ci * h + i + ki) * wd + j + kj)]) *
                     w[static_cast<size_t>(((o * c + ci) * k + ki) * k + kj)];
            }
          }
        }
        y[static_cast<size_t>((o * oh + i) * ow + j)] = static_cast<float>(acc);
      }
    }
  }
  return y;
}

struct ConvBnGraph {
  GraphBuilder b;
  ValueId x, w, conv_out, y;
  ValueId bias = kNoValue;
  ValueId scale, shift, mean, var;
  Node* conv = nullptr;
};

constexpr int64_t kC = 2, kH = 5, kW = 5, kM = 3, kK = 3;
constexpr float kEps = 1e-3f;

// x -> Conv -> BatchNormalization -> y (graph output).
void build_conv_bn(ConvBnGraph& t, bool with_bias) {
  GraphBuilder& b = t.b;
  const Shape out_shape{1, kM, kH - kK + 1, kW - kK + 1};
  t.x = b.input("x", {1, kC, kH, kW});
  t.w = b.constant("w", {kM, kC, kK, kK}, pseudo_random(kM * kC * kK * kK, 1, -1.f, 1.f));
  std::vector<ValueId> conv_inputs{t.x, t.w};
  if (with_bias) {
    t.bias = b.constant("b", {kM}, pseudo_random(kM, 2, -1.f, 1.f));
    conv_inputs.push_back(t.bias);
  }
  t.conv_out = b.op("Conv", conv_inputs, "conv_out", out_shape,
                    {{"kernel_shape", ir::Attribute{std::vector<int64_t>{kK, kK}}}});
  t.scale = b.constant("bn_scale", {kM}, pseudo_random(kM, 3, 0.5f, 2.f));
  t.shift = b.constant("bn_shift", {kM}, pseudo_random(kM, 4, -1.f, 1.f));
  t.mean = b.constant("bn_mean", {kM}, pseudo_random(kM, 5, -0.5f, 0.5f));
  t.var = b.constant("bn_var", {kM}, pseudo_random(kM, 6, 0.1f, 3.f));
  t.y = b.op("BatchNormalization", {t.conv_out, t.scale, t.shift, t.mean, t.var}, "y", out_shape,
             {{"epsilon", ir::Attribute{kEps}}});
  b.output(t.y);
}

std::vector<float> values_of(const Graph& g, ValueId id) {
  const Tensor& t = g.value(id).constant;
  return std::vector<float>(t.as<float>(), t.as<float>() + t.numel());
}

class PassesBatchNormFold : public ::testing::TestWithParam<bool> {};

TEST_P(PassesBatchNormFold, MatchesConvThenBatchNorm) {
  const bool with_bias = GetParam();
  ConvBnGraph t;
  build_conv_bn(t, with_bias);
  Graph& g = t.b.g;
  const std::vector<float> w = values_of(g, t.w);
  const std::vector<float> bias = with_bias ? values_of(g, t.bias) : std::vector<float>{};
  const std::vector<float> scale = values_of(g, t.scale), shift = values_of(g, t.shift);
  const std::vector<float> mean = values_of(g, t.mean), var = values_of(g, t.var);
  const Tensor w_tensor = g.value(t.w).constant;  // shares storage: must not be written

  const std::vector<float> x = pseudo_random(kC * kH * kW, 7, -2.f, 2.f);
  std::vector<float> expected = direct_conv(x, kC, kH, kW, w, with_bias ? &bias : nullptr, kM, kK);
  const int64_t plane = (kH - kK + 1) * (kW - kK + 1);
  for (int64_t m = 0; m < kM; ++m) {
    for (int64_t i = 0; i < plane; ++i) {
      float& v = expected[static_cast<size_t>(m * plane + i)];
      v = (v - mean[m]) / std::sqrt(var[m] + kEps) * scale[m] + shift[m];
    }
  }

  PassStats stats;
  ASSERT_TRUE(fold_batch_norm(g, stats).ok());
  expect_valid_sorted(g);
  EXPECT_EQ(stats.batch_norms_folded, 1);
  ASSERT_EQ(g.nodes.size(), 1u);
  const Node& conv = g.nodes[0];
  EXPECT_EQ(conv.op_type, "Conv");
  ASSERT_EQ(conv.inputs.size(), 3u);
  EXPECT_EQ(name_of(g, conv.outputs[0]), "y");
  EXPECT_EQ(output_names(g), std::vector<std::string>{"y"});
  ASSERT_TRUE(g.value(conv.inputs[1]).is_constant());
  ASSERT_TRUE(g.value(conv.inputs[2]).is_constant());
  EXPECT_EQ(g.value(conv.inputs[1]).shape, (Shape{kM, kC, kK, kK}));
  EXPECT_EQ(g.value(conv.inputs[2]).shape, (Shape{kM}));

  const std::vector<float> w_folded = values_of(g, conv.inputs[1]);
  const std::vector<float> b_folded = values_of(g, conv.inputs[2]);
  const std::vector<float> got = direct_conv(x, kC, kH, kW, w_folded, &b_folded, kM, kK);
  float max_diff = 0.f;
  for (size_t i = 0; i < got.size(); ++i) max_diff = std::max(max_diff, std::abs(got[i] - expected[i]));
  EXPECT_LT(max_diff, 1e-5f);
  // The original weights were not modified in place.
  EXPECT_EQ(std::vector<float>(w_tensor.as<float>(), w_tensor.as<float>() + w_tensor.numel()), w);
}

INSTANTIATE_TEST_SUITE_P(PassesBias, PassesBatchNormFold, ::testing::Bool(),
                         [](const ::testing::TestParamInfo<bool>& info) {
                           return std::string(info.param ? "WithBias" : "WithoutBias");
                         });

TEST(PassesBatchNormFoldNot, ConvOutputHasAnotherConsumer) {
  ConvBnGraph t;
  build_conv_bn(t, true);
  t.b.output(t.b.op("Relu", {t.conv_out}, "r", t.b.g.value(t.conv_out).shape));
  PassStats stats;
  ASSERT_TRUE(fold_batch_norm(t.b.g, stats).ok());
  expect_valid_sorted(t.b.g);
  EXPECT_EQ(stats.batch_norms_folded, 0);
  EXPECT_EQ(count_op(t.b.g, "BatchNormalization"), 1);
}

TEST(PassesBatchNormFoldNot, ConvOutputIsGraphOutput) {
  ConvBnGraph t;
  build_conv_bn(t, true);
  t.b.output(t.conv_out);
  PassStats stats;
  ASSERT_TRUE(fold_batch_norm(t.b.g, stats).ok());
  EXPECT_EQ(stats.batch_norms_folded, 0);
  EXPECT_EQ(t.b.g.nodes.size(), 2u);
  EXPECT_EQ(output_names(t.b.g), (std::vector<std::string>{"y", "conv_out"}));
}

TEST(PassesBatchNormFoldNot, NonConstantScale) {
  ConvBnGraph t;
  build_conv_bn(t, true);
  ValueId scale_in = t.b.input("scale_in", {kM});
  for (Node& n : t.b.g.nodes) {
    if (n.op_type == "BatchNormalization") n.inputs[1] = scale_in;
  }
  PassStats stats;
  ASSERT_TRUE(fold_batch_norm(t.b.g, stats).ok());
  expect_valid_sorted(t.b.g);
  EXPECT_EQ(stats.batch_norms_folded, 0);
  EXPECT_EQ(count_op(t.b.g, "BatchNormalization"), 1);
}

TEST(PassesBatchNormFoldNot, NonConstantWeights) {
  ConvBnGraph t;
  build_conv_bn(t, false);
  ValueId w_in = t.b.input("w_in", {kM, kC, kK, kK});
  t.b.g.nodes[0].inputs[1] = w_in;
  PassStats stats;
  ASSERT_TRUE(fold_batch_norm(t.b.g, stats).ok());
  EXPECT_EQ(stats.batch_norms_folded, 0);
  EXPECT_EQ(t.b.g.nodes.size(), 2u);
}

TEST(PassesBatchNormFoldNot, ConvWithPostOps) {
  ConvBnGraph t;
  build_conv_bn(t, true);
  t.b.g.nodes[0].post_ops.push_back(PostOp{PostOp::Kind::kRelu});
  PassStats stats;
  ASSERT_TRUE(fold_batch_norm(t.b.g, stats).ok());
  EXPECT_EQ(stats.batch_norms_folded, 0);
  EXPECT_EQ(t.b.g.nodes.size(), 2u);
}

TEST(PassesBatchNormFoldNot, TrainingMode) {
  ConvBnGraph t;
  build_conv_bn(t, true);
  t.b.g.nodes[1].attrs["training_mode"] = ir::Attribute{int64_t{1}};
  PassStats stats;
  ASSERT_TRUE(fold_batch_norm(t.b.g, stats).ok());
  EXPECT_EQ(stats.batch_norms_folded, 0);
}

TEST(PassesBatchNormFold, SharedWeightsStayIntactForTheOtherConv) {
  ConvBnGraph t;
  build_conv_bn(t, false);
  const std::vector<float> w = values_of(t.b.g, t.w);
  ValueId other = t.b.op("Conv", {t.x, t.w}, "other", t.b.g.value(t.conv_out).shape);
  t.b.output(other);
  PassStats stats;
  ASSERT_TRUE(fold_batch_norm(t.b.g, stats).ok());
  expect_valid_sorted(t.b.g);
  EXPECT_EQ(stats.batch_norms_folded, 1);
  ASSERT_EQ(t.b.g.nodes.size(), 2u);
  const Node& folded = t.b.g.nodes[0];
  const Node& plain = t.b.g.nodes[1];
  EXPECT_NE(folded.inputs[1], plain.inputs[1]);
  EXPECT_EQ(name_of(t.b.g, plain.inputs[1]), "w");
  EXPECT_EQ(values_of(t.b.g, plain.inputs[1]), w);
  EXPECT_NE(values_of(t.b.g, folded.inputs[1]), w);
  EXPECT_EQ(plain.inputs.size(), 2u);
}

TEST(PassesBatchNormFold, TwoBatchNormsInARowBothFold) {
  ConvBnGraph t;
  build_conv_bn(t, true);
  Graph& g = t.b.g;
  g.outputs.clear();
  ValueId y2 = t.b.op("BatchNormalization", {t.y, t.scale, t.shift, t.mean, t.var}, "y2", g.value(t.y).shape);
  t.b.output(y2);
  PassStats stats;
  ASSERT_TRUE(fold_batch_norm(g, stats).ok());
  expect_valid_sorted(g);
  EXPECT_EQ(stats.batch_norms_folded, 2);
  ASSERT_EQ(g.nodes.size(), 1u);
  EXPECT_EQ(name_of(g, g.nodes[0].outputs[0]), "y2");
}

// ---------------------------------------------------------------------------------------------
// fuse_gelu

enum class GeluForm {
  kTorch,              // Mul(Mul(x, Add(Erf(Div(x, sqrt2)), 1)), 0.5)
  kTorchSwapped,       // same with every commutative operand swapped, Mul by 1/sqrt2
  kHalfFirst,          // Mul(Mul(x, 0.5), Add(...))
  kHalfFirstSwapped,   // Mul(Add(...), Mul(0.5, x))
  kHalfOfSum,          // Mul(x, Mul(Add(...), 0.5))
  kOneElementTensors,  // torch form, constants as [1]-shaped tensors
};

constexpr GeluForm kAllGeluForms[] = {GeluForm::kTorch,     GeluForm::kTorchSwapped,
                                      GeluForm::kHalfFirst, GeluForm::kHalfFirstSwapped,
                                      GeluForm::kHalfOfSum, GeluForm::kOneElementTensors};

std::string gelu_form_name(const ::testing::TestParamInfo<GeluForm>& info) {
  switch (info.param) {
    case GeluForm::kTorch: return "Torch";
    case GeluForm::kTorchSwapped: return "TorchSwapped";
    case GeluForm::kHalfFirst: return "HalfFirst";
    case GeluForm::kHalfFirstSwapped: return "HalfFirstSwapped";
    case GeluForm::kHalfOfSum: return "HalfOfSum";
    case GeluForm::kOneElementTensors: return "OneElementTensors";
  }
  return "Unknown";
}

struct GeluGraph {
  GraphBuilder b;
  ValueId x;
  ValueId erf_out = kNoValue, sum = kNoValue, product = kNoValue, y = kNoValue;
};

const Shape kGeluShape{2, 8};

void build_gelu(GeluGraph& t, GeluForm form) {
  GraphBuilder& b = t.b;
  ValueId in = b.input("in", kGeluShape);
  t.x = b.op("MatMul", {in, b.constant("w", {8, 8}, pseudo_random(64, 9, -1.f, 1.f))}, "x", kGeluShape);
  const Shape const_shape = form == GeluForm::kOneElementTensors ? Shape{1} : Shape{};
  auto k = [&](const std::string& name, double v) { return b.scalar(name, static_cast<float>(v), const_shape); };
  const bool swapped = form == GeluForm::kTorchSwapped || form == GeluForm::kHalfFirstSwapped;
  ValueId d = swapped ? b.op("Mul", {k("inv_sqrt2", std::sqrt(0.5)), t.x}, "d", kGeluShape)
                      : b.op("Div", {t.x, k("sqrt2", std::sqrt(2.0))}, "d", kGeluShape);
  t.erf_out = b.op("Erf", {d}, "e", kGeluShape);
  t.sum = swapped ? b.op("Add", {k("one", 1.0), t.erf_out}, "a", kGeluShape)
                  : b.op("Add", {t.erf_out, k("one", 1.0)}, "a", kGeluShape);
  switch (form) {
    case GeluForm::kTorch:
    case GeluForm::kOneElementTensors:
      t.product = b.op("Mul", {t.x, t.sum}, "m", kGeluShape);
      t.y = b.op("Mul", {t.product, k("half", 0.5)}, "y", kGeluShape);
      break;
    case GeluForm::kTorchSwapped:
      t.product = b.op("Mul", {t.sum, t.x}, "m", kGeluShape);
      t.y = b.op("Mul", {k("half", 0.5), t.product}, "y", kGeluShape);
      break;
    case GeluForm::kHalfFirst:
      t.product = b.op("Mul", {t.x, k("half", 0.5)}, "h", kGeluShape);
      t.y = b.op("Mul", {t.product, t.sum}, "y", kGeluShape);
      break;
    case GeluForm::kHalfFirstSwapped:
      t.product = b.op("Mul", {k("half", 0.5), t.x}, "h", kGeluShape);
      t.y = b.op("Mul", {t.sum, t.product}, "y", kGeluShape);
      break;
    case GeluForm::kHalfOfSum:
      t.product = b.op("Mul", {t.sum, k("half", 0.5)}, "m", kGeluShape);
      t.y = b.op("Mul", {t.x, t.product}, "y", kGeluShape);
      break;
  }
  b.output(t.y);
}

class PassesGelu : public ::testing::TestWithParam<GeluForm> {};

TEST_P(PassesGelu, FusesExportedForm) {
  GeluGraph t;
  build_gelu(t, GetParam());
  Graph& g = t.b.g;
  ASSERT_TRUE(g.topo_sort().ok());
  PassStats stats;
  ASSERT_TRUE(fuse_gelu(g, stats).ok());
  expect_valid_sorted(g);
  EXPECT_EQ(stats.gelus_fused, 1);
  ASSERT_EQ(g.nodes.size(), 2u);
  const Node& gelu = g.nodes[1];
  EXPECT_EQ(gelu.op_type, "Gelu");
  EXPECT_EQ(input_names(g, gelu), std::vector<std::string>{"x"});
  ASSERT_EQ(gelu.outputs.size(), 1u);
  EXPECT_EQ(name_of(g, gelu.outputs[0]), "y");
  Result<std::string> approximate = gelu.attr_string("approximate");
  ASSERT_TRUE(approximate.ok());
  EXPECT_EQ(*approximate, "none");
  EXPECT_EQ(output_names(g), std::vector<std::string>{"y"});
  EXPECT_EQ(g.value(gelu.outputs[0]).shape, kGeluShape);
}

INSTANTIATE_TEST_SUITE_P(PassesForms, PassesGelu, ::testing::ValuesIn(kAllGeluForms), gelu_form_name);

TEST(PassesGeluNot, IntermediateHasAnotherConsumer) {
  GeluGraph t;
  build_gelu(t, GeluForm::kTorch);
  t.b.output(t.b.op("Sigmoid", {t.erf_out}, "s", kGeluShape));
  PassStats stats;
  ASSERT_TRUE(fuse_gelu(t.b.g, stats).ok());
  expect_valid_sorted(t.b.g);
  EXPECT_EQ(stats.gelus_fused, 0);
  EXPECT_EQ(count_op(t.b.g, "Erf"), 1);
}

TEST(PassesGeluNot, IntermediateIsGraphOutput) {
  GeluGraph t;
  build_gelu(t, GeluForm::kHalfOfSum);
  t.b.output(t.product);
  PassStats stats;
  ASSERT_TRUE(fuse_gelu(t.b.g, stats).ok());
  EXPECT_EQ(stats.gelus_fused, 0);
  EXPECT_EQ(count_op(t.b.g, "Gelu"), 0);
}

TEST(PassesGeluNot, WrongConstants) {
  for (const char* which : {"sqrt2", "one", "half"}) {
    GeluGraph t;
    build_gelu(t, GeluForm::kTorch);
    for (ir::Value& v : t.b.g.values) {
      if (v.name == which) v.constant = Tensor::from_vector<float>({}, {1.5f});
    }
    PassStats stats;
    ASSERT_TRUE(fuse_gelu(t.b.g, stats).ok());
    EXPECT_EQ(stats.gelus_fused, 0) << which;
  }
}

TEST(PassesGeluNot, ConstantOffBeyondTolerance) {
  GeluGraph t;
  build_gelu(t, GeluForm::kTorchSwapped);
  for (ir::Value& v : t.b.g.values) {
    if (v.name == "inv_sqrt2") v.constant = Tensor::from_vector<float>({}, {0.7071f});  // 1e-5 relative off
  }
  PassStats stats;
  ASSERT_TRUE(fuse_gelu(t.b.g, stats).ok());
  EXPECT_EQ(stats.gelus_fused, 0);
}

TEST(PassesGeluNot, ProductWithAnotherTensor) {
  GeluGraph t;
  build_gelu(t, GeluForm::kTorch);
  ValueId other = t.b.input("other", kGeluShape);
  for (Node& n : t.b.g.nodes) {
    if (n.op_type == "Mul" && n.inputs[0] == t.x) n.inputs[0] = other;
  }
  PassStats stats;
  ASSERT_TRUE(fuse_gelu(t.b.g, stats).ok());
  EXPECT_EQ(stats.gelus_fused, 0);
}

TEST(PassesGeluNot, ConstantThatBroadcastsTheResult) {
  GeluGraph t;
  build_gelu(t, GeluForm::kTorch);
  for (ir::Value& v : t.b.g.values) {
    if (v.name == "half") {
      v.constant = Tensor::from_vector<float>({1, 1, 1}, {0.5f});
      v.shape = {1, 1, 1};
    }
    if (v.name == "y") v.shape = {1, 2, 8};
  }
  PassStats stats;
  ASSERT_TRUE(fuse_gelu(t.b.g, stats).ok());
  EXPECT_EQ(stats.gelus_fused, 0);
}

// ---------------------------------------------------------------------------------------------
// fuse_residual_add

const Shape kFeat{1, 4, 5, 5};

struct ResidualGraph {
  GraphBuilder b;
  ValueId x, w, conv_out;
};

ValueId add_conv(GraphBuilder& b, ValueId x, const std::string& out, bool bias = false, Shape shape = kFeat) {
  std::vector<ValueId> inputs{x, b.constant(out + "_w", {4, 4, 3, 3}, pseudo_random(144, 11, -1.f, 1.f))};
  if (bias) inputs.push_back(b.constant(out + "_b", {4}, {0.1f, 0.2f, 0.3f, 0.4f}));
  return b.op("Conv", inputs, out, std::move(shape), {{"pads", ir::Attribute{std::vector<int64_t>{1, 1, 1, 1}}}});
}

TEST(PassesResidualAdd, FusesConvPlusSkip) {
  GraphBuilder b;
  ValueId x = b.input("x", kFeat);
  ValueId skip = b.input("skip", kFeat);
  ValueId c = add_conv(b, x, "c");
  b.output(b.op("Add", {c, skip}, "y", kFeat));
  PassStats stats;
  ASSERT_TRUE(fuse_residual_add(b.g, stats).ok());
  expect_valid_sorted(b.g);
  EXPECT_EQ(stats.residual_adds_fused, 1);
  ASSERT_EQ(b.g.nodes.size(), 1u);
  const Node& conv = b.g.nodes[0];
  EXPECT_EQ(conv.op_type, "Conv");
  ASSERT_EQ(conv.post_ops.size(), 1u);
  EXPECT_EQ(conv.post_ops[0].kind, PostOp::Kind::kSum);
  // No bias: its slot stays empty so the residual (last input) is not read as a bias.
  EXPECT_EQ(input_names(b.g, conv), (std::vector<std::string>{"x", "c_w", "<none>", "skip"}));
  EXPECT_EQ(name_of(b.g, conv.outputs[0]), "y");
  EXPECT_EQ(output_names(b.g), std::vector<std::string>{"y"});
}

TEST(PassesResidualAdd, SwappedOperandsWithBias) {
  GraphBuilder b;
  ValueId x = b.input("x", kFeat);
  ValueId skip = b.input("skip", kFeat);
  ValueId c = add_conv(b, x, "c", /*bias=*/true);
  b.output(b.op("Add", {skip, c}, "y", kFeat));
  PassStats stats;
  ASSERT_TRUE(fuse_residual_add(b.g, stats).ok());
  expect_valid_sorted(b.g);
  EXPECT_EQ(stats.residual_adds_fused, 1);
  ASSERT_EQ(b.g.nodes.size(), 1u);
  EXPECT_EQ(input_names(b.g, b.g.nodes[0]), (std::vector<std::string>{"x", "c_w", "c_b", "skip"}));
}

TEST(PassesResidualAdd, ResidualProducedAfterTheConvMovesTheConv) {
  GraphBuilder b;
  ValueId x = b.input("x", kFeat);
  ValueId c = add_conv(b, x, "c");              // node 0
  ValueId r = b.op("Relu", {x}, "r", kFeat);    // node 1: the residual, after the Conv
  ValueId y = b.op("Add", {c, r}, "y", kFeat);  // node 2
  b.output(b.op("Sigmoid", {y}, "z", kFeat));
  PassStats stats;
  ASSERT_TRUE(fuse_residual_add(b.g, stats).ok());
  expect_valid_sorted(b.g);
  EXPECT_EQ(stats.residual_adds_fused, 1);
  ASSERT_EQ(b.g.nodes.size(), 3u);
  EXPECT_EQ(b.g.nodes[0].op_type, "Relu");
  EXPECT_EQ(b.g.nodes[1].op_type, "Conv");
  EXPECT_EQ(b.g.nodes[2].op_type, "Sigmoid");
  EXPECT_EQ(name_of(b.g, b.g.nodes[1].inputs.back()), "r");
}

TEST(PassesResidualAdd, TwoConvsPreferTheLaterOne) {
  GraphBuilder b;
  ValueId x = b.input("x", kFeat);
  ValueId c1 = add_conv(b, x, "c1");
  ValueId c2 = add_conv(b, x, "c2");
  b.output(b.op("Add", {c2, c1}, "y", kFeat));
  PassStats stats;
  ASSERT_TRUE(fuse_residual_add(b.g, stats).ok());
  expect_valid_sorted(b.g);
  EXPECT_EQ(stats.residual_adds_fused, 1);
  ASSERT_EQ(b.g.nodes.size(), 2u);
  EXPECT_TRUE(b.g.nodes[0].post_ops.empty());
  ASSERT_EQ(b.g.nodes[1].post_ops.size(), 1u);
  EXPECT_EQ(name_of(b.g, b.g.nodes[1].outputs[0]), "y");
  EXPECT_EQ(name_of(b.g, b.g.nodes[1].inputs.back()), "c1");
}

TEST(PassesResidualAddNot, Broadcasting) {
  GraphBuilder b;
  ValueId x = b.input("x", kFeat);
  ValueId skip = b.input("skip", {1, 4, 1, 1});
  ValueId c = add_conv(b, x, "c");
  b.output(b.op("Add", {c, skip}, "y", kFeat));
  PassStats stats;
  ASSERT_TRUE(fuse_residual_add(b.g, stats).ok());
  EXPECT_EQ(stats.residual_adds_fused, 0);
  EXPECT_EQ(b.g.nodes.size(), 2u);
}

TEST(PassesResidualAddNot, ConvOutputHasAnotherConsumer) {
  GraphBuilder b;
  ValueId x = b.input("x", kFeat);
  ValueId skip = b.input("skip", kFeat);
  ValueId c = add_conv(b, x, "c");
  b.output(b.op("Add", {c, skip}, "y", kFeat));
  b.output(b.op("Relu", {c}, "r", kFeat));
  PassStats stats;
  ASSERT_TRUE(fuse_residual_add(b.g, stats).ok());
  EXPECT_EQ(stats.residual_adds_fused, 0);
  EXPECT_EQ(b.g.nodes.size(), 3u);
}

TEST(PassesResidualAddNot, ConvOutputIsGraphOutput) {
  GraphBuilder b;
  ValueId x = b.input("x", kFeat);
  ValueId skip = b.input("skip", kFeat);
  ValueId c = add_conv(b, x, "c");
  b.output(b.op("Add", {c, skip}, "y", kFeat));
  b.output(c);
  PassStats stats;
  ASSERT_TRUE(fuse_residual_add(b.g, stats).ok());
  EXPECT_EQ(stats.residual_adds_fused, 0);
}

TEST(PassesResidualAddNot, ConvWithPostOps) {
  GraphBuilder b;
  ValueId x = b.input("x", kFeat);
  ValueId skip = b.input("skip", kFeat);
  ValueId c = add_conv(b, x, "c");
  b.g.nodes.back().post_ops.push_back(PostOp{PostOp::Kind::kRelu});
  b.output(b.op("Add", {c, skip}, "y", kFeat));
  PassStats stats;
  ASSERT_TRUE(fuse_residual_add(b.g, stats).ok());
  EXPECT_EQ(stats.residual_adds_fused, 0);
}

TEST(PassesResidualAddNot, NotFloat32) {
  GraphBuilder b;
  ValueId x = b.input("x", kFeat, DType::kFloat64);
  ValueId skip = b.input("skip", kFeat, DType::kFloat64);
  ValueId c = b.op("Conv", {x, b.g.add_constant("w", Tensor::zeros(DType::kFloat64, {4, 4, 3, 3}).value())}, "c",
                   kFeat, {}, DType::kFloat64);
  b.output(b.op("Add", {c, skip}, "y", kFeat, {}, DType::kFloat64));
  PassStats stats;
  ASSERT_TRUE(fuse_residual_add(b.g, stats).ok());
  EXPECT_EQ(stats.residual_adds_fused, 0);
}

TEST(PassesResidualAdd, ThenActivationGivesSumThenRelu) {
  GraphBuilder b;
  ValueId x = b.input("x", kFeat);
  ValueId skip = b.input("skip", kFeat);
  ValueId c = add_conv(b, x, "c", /*bias=*/true);
  ValueId s = b.op("Add", {c, skip}, "s", kFeat);
  b.output(b.op("Relu", {s}, "y", kFeat));
  PassStats stats;
  ASSERT_TRUE(fuse_residual_add(b.g, stats).ok());
  ASSERT_TRUE(fuse_activations(b.g, stats).ok());
  expect_valid_sorted(b.g);
  EXPECT_EQ(stats.residual_adds_fused, 1);
  EXPECT_EQ(stats.activations_fused, 1);
  ASSERT_EQ(b.g.nodes.size(), 1u);
  const Node& conv = b.g.nodes[0];
  ASSERT_EQ(conv.post_ops.size(), 2u);
  EXPECT_EQ(conv.post_ops[0].kind, PostOp::Kind::kSum);
  EXPECT_EQ(conv.post_ops[1].kind, PostOp::Kind::kRelu);
  EXPECT_EQ(name_of(b.g, conv.outputs[0]), "y");
  EXPECT_EQ(name_of(b.g, conv.inputs.back()), "skip");
}

// ---------------------------------------------------------------------------------------------
// fuse_activations

struct ActivationCase {
  std::string label;
  std::string op_type;
  std::map<std::string, ir::Attribute> attrs;
  std::vector<float> bounds;  // Clip: NaN = absent input, else a constant; empty: no bound inputs
  PostOp::Kind kind;
  float alpha = 0.f;
  float beta = 0.f;
};

void PrintTo(const ActivationCase& c, std::ostream* os) { *os << c.label; }

constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr float kAbsent = std::numeric_limits<float>::quiet_NaN();

class PassesActivation : public ::testing::TestWithParam<ActivationCase> {};

TEST_P(PassesActivation, BecomesConvPostOp) {
  const ActivationCase& ac = GetParam();
  GraphBuilder b;
  ValueId x = b.input("x", kFeat);
  ValueId c = add_conv(b, x, "c");
  std::vector<ValueId> inputs{c};
  for (size_t i = 0; i < ac.bounds.size(); ++i) {
    inputs.push_back(std::isnan(ac.bounds[i]) ? kNoValue : b.scalar(fmt::format("bound{}", i), ac.bounds[i]));
  }
  b.output(b.op(ac.op_type, inputs, "y", kFeat, ac.attrs));
  PassStats stats;
  ASSERT_TRUE(fuse_activations(b.g, stats).ok());
  expect_valid_sorted(b.g);
  EXPECT_EQ(stats.activations_fused, 1);
  ASSERT_EQ(b.g.nodes.size(), 1u);
  const Node& conv = b.g.nodes[0];
  ASSERT_EQ(conv.post_ops.size(), 1u);
  EXPECT_EQ(conv.post_ops[0].kind, ac.kind);
  EXPECT_EQ(conv.post_ops[0].alpha, ac.alpha);
  EXPECT_EQ(conv.post_ops[0].beta, ac.beta);
  EXPECT_EQ(name_of(b.g, conv.outputs[0]), "y");
  EXPECT_EQ(input_names(b.g, conv), (std::vector<std::string>{"x", "c_w"}));
}

INSTANTIATE_TEST_SUITE_P(
    PassesKinds, PassesActivation,
    ::testing::Values(
        ActivationCase{"Relu", "Relu", {}, {}, PostOp::Kind::kRelu},
        ActivationCase{"Sigmoid", "Sigmoid", {}, {}, PostOp::Kind::kSigmoid},
        ActivationCase{"HardSwish", "HardSwish", {}, {}, PostOp::Kind::kHardSwish},
        ActivationCase{"HardSigmoidDefaults", "HardSigmoid", {}, {}, PostOp::Kind::kHardSigmoid, 0.2f, 0.5f},
        ActivationCase{"HardSigmoidAttrs",
                       "HardSigmoid",
                       {{"alpha", ir::Attribute{1.f / 6.f}}, {"beta", ir::Attribute{0.25f}}},
                       {},
                       PostOp::Kind::kHardSigmoid,
                       1.f / 6.f,
                       0.25f},
        ActivationCase{"GeluDefault", "Gelu", {}, {}, PostOp::Kind::kGeluErf},
        ActivationCase{"GeluNone", "Gelu", {{"approximate", ir::Attribute{std::string("none")}}}, {},
                       PostOp::Kind::kGeluErf},
        ActivationCase{"Relu6", "Clip", {}, {0.f, 6.f}, PostOp::Kind::kClip, 0.f, 6.f},
        ActivationCase{"ClipMaxOnly", "Clip", {}, {kAbsent, 6.f}, PostOp::Kind::kClip, -kInf, 6.f},
        ActivationCase{"ClipMinOnly", "Clip", {}, {-1.f}, PostOp::Kind::kClip, -1.f, kInf},
        ActivationCase{"ClipNoBounds", "Clip", {}, {}, PostOp::Kind::kClip, -kInf, kInf}),
    [](const ::testing::TestParamInfo<ActivationCase>& info) { return info.param.label; });

TEST(PassesActivation, SigmoidTimesInputBecomesSwish) {
  GraphBuilder b;
  ValueId x = b.input("x", kFeat);
  ValueId c = add_conv(b, x, "c");
  ValueId s = b.op("Sigmoid", {c}, "s", kFeat);
  ValueId y = b.op("Mul", {s, c}, "y", kFeat);
  // An SE-style gate, Mul(x, Sigmoid(f(x))), is no swish: it stays.
  ValueId c2 = add_conv(b, y, "c2");
  ValueId g = b.op("Sigmoid", {add_conv(b, c2, "f")}, "g", kFeat);
  b.output(b.op("Mul", {c2, g}, "z", kFeat));
  PassStats stats;
  ASSERT_TRUE(fuse_activations(b.g, stats).ok());
  expect_valid_sorted(b.g);
  ASSERT_EQ(b.g.nodes[0].op_type, "Conv");
  ASSERT_EQ(b.g.nodes[0].post_ops.size(), 1u);
  EXPECT_EQ(b.g.nodes[0].post_ops[0].kind, PostOp::Kind::kSwish);
  EXPECT_EQ(name_of(b.g, b.g.nodes[0].outputs[0]), "y");
  EXPECT_EQ(count_op(b.g, "Mul"), 1);
  EXPECT_EQ(output_names(b.g), std::vector<std::string>{"z"});
}

TEST(PassesActivation, EveryProducerKind) {
  GraphBuilder b;
  const Shape mat{4, 8};
  ValueId a = b.input("a", mat);
  ValueId w = b.constant("w", {8, 8}, pseudo_random(64, 13, -1.f, 1.f));
  ValueId m = b.op("MatMul", {a, w}, "m", mat);
  ValueId m_act = b.op("Relu", {m}, "m_act", mat);
  ValueId g = b.op("Gemm", {m_act, w}, "g", mat);
  ValueId g_act = b.op("Sigmoid", {g}, "g_act", mat);
  ValueId s = b.op("Add", {g_act, a}, "s", mat);
  ValueId s_act = b.op("HardSwish", {s}, "s_act", mat);
  ValueId x = b.input("x", kFeat);
  ValueId c = add_conv(b, x, "c");
  ValueId c_act = b.op("Relu", {c}, "c_act", kFeat);
  std::vector<ValueId> bn_params;
  for (const char* p : {"scale", "bias", "mean", "var"}) bn_params.push_back(b.constant(p, {4}, {1, 1, 1, 1}));
  ValueId bn = b.op("BatchNormalization", {c_act, bn_params[0], bn_params[1], bn_params[2], bn_params[3]}, "bn", kFeat);
  ValueId bn_act = b.op("Relu", {bn}, "bn_act", kFeat);
  b.output(s_act);
  b.output(bn_act);
  PassStats stats;
  ASSERT_TRUE(fuse_activations(b.g, stats).ok());
  expect_valid_sorted(b.g);
  EXPECT_EQ(stats.activations_fused, 5);
  ASSERT_EQ(b.g.nodes.size(), 5u);
  for (const Node& n : b.g.nodes) EXPECT_EQ(n.post_ops.size(), 1u) << n.describe();
  EXPECT_EQ(output_names(b.g), (std::vector<std::string>{"s_act", "bn_act"}));
}

TEST(PassesActivation, ChainsOfActivations) {
  GraphBuilder b;
  ValueId x = b.input("x", kFeat);
  ValueId c = add_conv(b, x, "c");
  ValueId r = b.op("Relu", {c}, "r", kFeat);
  b.output(b.op("Clip", {r, kNoValue, b.scalar("six", 6.f)}, "y", kFeat));
  PassStats stats;
  ASSERT_TRUE(fuse_activations(b.g, stats).ok());
  expect_valid_sorted(b.g);
  EXPECT_EQ(stats.activations_fused, 2);
  ASSERT_EQ(b.g.nodes.size(), 1u);
  ASSERT_EQ(b.g.nodes[0].post_ops.size(), 2u);
  EXPECT_EQ(b.g.nodes[0].post_ops[0].kind, PostOp::Kind::kRelu);
  EXPECT_EQ(b.g.nodes[0].post_ops[1].kind, PostOp::Kind::kClip);
  EXPECT_EQ(b.g.nodes[0].post_ops[1].beta, 6.f);
}

TEST(PassesActivation, FusedGeluBecomesPostOpOfMatMul) {
  GeluGraph t;
  build_gelu(t, GeluForm::kTorch);
  PassStats stats;
  ASSERT_TRUE(fuse_gelu(t.b.g, stats).ok());
  ASSERT_TRUE(fuse_activations(t.b.g, stats).ok());
  expect_valid_sorted(t.b.g);
  ASSERT_EQ(t.b.g.nodes.size(), 1u);
  EXPECT_EQ(t.b.g.nodes[0].op_type, "MatMul");
  ASSERT_EQ(t.b.g.nodes[0].post_ops.size(), 1u);
  EXPECT_EQ(t.b.g.nodes[0].post_ops[0].kind, PostOp::Kind::kGeluErf);
  EXPECT_EQ(output_names(t.b.g), std::vector<std::string>{"y"});
}

TEST(PassesActivationNot, ClipWithNonConstantBound) {
  GraphBuilder b;
  ValueId x = b.input("x", kFeat);
  ValueId lo = b.input("lo", {});
  ValueId c = add_conv(b, x, "c");
  b.output(b.op("Clip", {c, lo, b.scalar("six", 6.f)}, "y", kFeat));
  PassStats stats;
  ASSERT_TRUE(fuse_activations(b.g, stats).ok());
  EXPECT_EQ(stats.activations_fused, 0);
  EXPECT_EQ(b.g.nodes.size(), 2u);
}

TEST(PassesActivationNot, ProducerOutputHasAnotherConsumer) {
  GraphBuilder b;
  ValueId x = b.input("x", kFeat);
  ValueId c = add_conv(b, x, "c");
  b.output(b.op("Relu", {c}, "y", kFeat));
  b.output(b.op("Sigmoid", {c}, "z", kFeat));
  PassStats stats;
  ASSERT_TRUE(fuse_activations(b.g, stats).ok());
  EXPECT_EQ(stats.activations_fused, 0);
  EXPECT_EQ(b.g.nodes.size(), 3u);
}

TEST(PassesActivationNot, ProducerOutputIsGraphOutput) {
  GraphBuilder b;
  ValueId x = b.input("x", kFeat);
  ValueId c = add_conv(b, x, "c");
  b.output(b.op("Relu", {c}, "y", kFeat));
  b.output(c);
  PassStats stats;
  ASSERT_TRUE(fuse_activations(b.g, stats).ok());
  EXPECT_EQ(stats.activations_fused, 0);
}

TEST(PassesActivationNot, UnsupportedPairs) {
  GraphBuilder b;
  ValueId x = b.input("x", kFeat);
  // Gelu with the tanh approximation has no post-op.
  ValueId c = add_conv(b, x, "c");
  ValueId gt = b.op("Gelu", {c}, "gt", kFeat, {{"approximate", ir::Attribute{std::string("tanh")}}});
  // A producer that takes no post-ops.
  ValueId s = b.op("Sigmoid", {gt}, "s", kFeat);
  ValueId r = b.op("Relu", {s}, "r", kFeat);
  // Integer tensors.
  ValueId i = b.input("i", {4}, DType::kInt32);
  ValueId sum = b.op("Add", {i, i}, "sum", {4}, {}, DType::kInt32);
  b.output(r);
  b.output(b.op("Relu", {sum}, "ri", {4}, {}, DType::kInt32));
  PassStats stats;
  ASSERT_TRUE(fuse_activations(b.g, stats).ok());
  expect_valid_sorted(b.g);
  EXPECT_EQ(stats.activations_fused, 0);
  EXPECT_EQ(b.g.nodes.size(), 6u);
}

// ---------------------------------------------------------------------------------------------
// All passes on one graph: Conv -> BN -> Identity -> Add(skip) -> Relu.

TEST(PassesPipeline, ResNetBlockEndsAsOneConv) {
  ConvBnGraph t;
  GraphBuilder& b = t.b;
  const Shape out_shape{1, kM, kH - kK + 1, kW - kK + 1};
  build_conv_bn(t, false);
  b.g.outputs.clear();
  ValueId id = b.op("Identity", {t.y}, "id", out_shape);
  ValueId skip = b.input("skip", out_shape);
  ValueId s = b.op("Add", {skip, id}, "s", out_shape);
  b.output(b.op("Relu", {s}, "out", out_shape));
  PassStats stats;
  ASSERT_TRUE(eliminate_identities(b.g, stats).ok());
  ASSERT_TRUE(fold_batch_norm(b.g, stats).ok());
  ASSERT_TRUE(fuse_gelu(b.g, stats).ok());
  ASSERT_TRUE(fuse_residual_add(b.g, stats).ok());
  ASSERT_TRUE(fuse_activations(b.g, stats).ok());
  expect_valid_sorted(b.g);
  EXPECT_EQ(stats.identities_removed, 1);
  EXPECT_EQ(stats.batch_norms_folded, 1);
  EXPECT_EQ(stats.gelus_fused, 0);
  EXPECT_EQ(stats.residual_adds_fused, 1);
  EXPECT_EQ(stats.activations_fused, 1);
  ASSERT_EQ(b.g.nodes.size(), 1u);
  const Node& conv = b.g.nodes[0];
  EXPECT_EQ(input_names(b.g, conv)[3], "skip");
  ASSERT_EQ(conv.post_ops.size(), 2u);
  EXPECT_EQ(conv.post_ops[0].kind, PostOp::Kind::kSum);
  EXPECT_EQ(conv.post_ops[1].kind, PostOp::Kind::kRelu);
  EXPECT_EQ(output_names(b.g), std::vector<std::string>{"out"});
}

// ---------------------------------------------------------------------------------------------
// The rewritten graph computes what the original did, with the operators' references (ops/op.h).

// Runs `g` node by node with the reference implementations; also checks that every node still
// passes shape inference (arity, post-ops, residual) with the shapes the graph holds.
Result<std::vector<Tensor>> run_reference(const Graph& g, const std::vector<Tensor>& feeds) {
  std::vector<Tensor> vals(g.values.size());
  for (size_t i = 0; i < g.values.size(); ++i) {
    if (g.values[i].is_constant()) vals[i] = g.values[i].constant;
  }
  for (size_t i = 0; i < g.inputs.size(); ++i) vals[static_cast<size_t>(g.inputs[i])] = feeds.at(i);
  for (const Node& n : g.nodes) {
    const ops::OpSchema* schema = ops::find_op(n.op_type, g.opset);
    if (schema == nullptr) return not_found("{}: no operator", n.describe());
    std::vector<ops::InferInput> infer_in(n.inputs.size());
    std::vector<ConstTensorView> in(n.inputs.size());
    for (size_t i = 0; i < n.inputs.size(); ++i) {
      if (n.inputs[i] == kNoValue) continue;
      const ir::Value& v = g.value(n.inputs[i]);
      infer_in[i] = ops::InferInput{v.dtype, &v.shape, v.is_constant() ? &v.constant : nullptr};
      in[i] = std::as_const(vals[static_cast<size_t>(n.inputs[i])]).view();
    }
    std::vector<ops::InferOutput> infer_out;
    TENET_RETURN_IF_ERROR(ops::infer_node(n, g.opset, infer_in, infer_out));
    std::vector<TensorView> out(n.outputs.size());
    for (size_t k = 0; k < n.outputs.size(); ++k) {
      if (n.outputs[k] == kNoValue) continue;
      const ir::Value& v = g.value(n.outputs[k]);
      if (infer_out[k].dtype != v.dtype || infer_out[k].shape != v.shape) {
        return internal_error("{}: inferred {} {}, the graph holds {} {}", n.describe(), dtype_name(infer_out[k].dtype),
                              shape_to_string(infer_out[k].shape), dtype_name(v.dtype), shape_to_string(v.shape));
      }
      TENET_ASSIGN_OR_RETURN(vals[static_cast<size_t>(n.outputs[k])], Tensor::zeros(v.dtype, v.shape));
      out[k] = vals[static_cast<size_t>(n.outputs[k])].view();
    }
    TENET_RETURN_IF_ERROR(schema->reference(n, in, out));
  }
  std::vector<Tensor> results;
  for (ValueId id : g.outputs) results.push_back(vals[static_cast<size_t>(id)]);
  return results;
}

Status optimize(Graph& g, PassStats& stats) {
  TENET_RETURN_IF_ERROR(eliminate_identities(g, stats));
  TENET_RETURN_IF_ERROR(fold_batch_norm(g, stats));
  TENET_RETURN_IF_ERROR(fuse_gelu(g, stats));
  TENET_RETURN_IF_ERROR(fuse_residual_add(g, stats));
  return fuse_activations(g, stats);
}

// Optimizes a copy of `g` and compares both graphs' outputs on random inputs; returns the
// optimized graph.
Graph expect_same_results(const Graph& g, PassStats& stats) {
  std::vector<Tensor> feeds;
  for (size_t i = 0; i < g.inputs.size(); ++i) {
    const ir::Value& v = g.value(g.inputs[i]);
    feeds.push_back(Tensor::from_vector<float>(v.shape, pseudo_random(static_cast<size_t>(numel(v.shape)),
                                                                      static_cast<uint32_t>(100 + i), -3.f, 3.f)));
  }
  Graph optimized = g;
  Status s = optimize(optimized, stats);
  EXPECT_TRUE(s.ok()) << s.to_string();
  expect_valid_sorted(optimized);
  Result<std::vector<Tensor>> before = run_reference(g, feeds);
  Result<std::vector<Tensor>> after = run_reference(optimized, feeds);
  EXPECT_TRUE(before.ok()) << before.status().to_string();
  EXPECT_TRUE(after.ok()) << after.status().to_string();
  if (!before.ok() || !after.ok()) return optimized;
  EXPECT_EQ(output_names(g), output_names(optimized));
  EXPECT_EQ(before->size(), after->size());
  for (size_t o = 0; o < std::min(before->size(), after->size()); ++o) {
    const Tensor& want = (*before)[o];
    const Tensor& got = (*after)[o];
    EXPECT_EQ(want.shape(), got.shape());
    if (want.shape() != got.shape()) continue;
    float max_rel = 0.f;
    for (int64_t i = 0; i < want.numel(); ++i) {
      const float w = want.as<float>()[i];
      max_rel = std::max(max_rel, std::abs(got.as<float>()[i] - w) / (1.f + std::abs(w)));
    }
    EXPECT_LT(max_rel, 1e-5f) << "output " << name_of(g, g.outputs[o]);
  }
  return optimized;
}

TEST(PassesSemantics, ConvBatchNormIdentityResidualRelu6) {
  GraphBuilder b;
  const Shape in_shape{1, 3, 6, 6}, out_shape{1, 4, 6, 6};
  ValueId x = b.input("x", in_shape);
  ValueId skip = b.input("skip", out_shape);
  ValueId w = b.constant("w", {4, 3, 3, 3}, pseudo_random(108, 21, -1.f, 1.f));
  ValueId c = b.op("Conv", {x, w}, "c", out_shape, {{"pads", ir::Attribute{std::vector<int64_t>{1, 1, 1, 1}}}});
  ValueId bn = b.op("BatchNormalization",
                    {c, b.constant("scale", {4}, pseudo_random(4, 22, 0.5f, 2.f)),
                     b.constant("shift", {4}, pseudo_random(4, 23, -1.f, 1.f)),
                     b.constant("mean", {4}, pseudo_random(4, 24, -1.f, 1.f)),
                     b.constant("var", {4}, pseudo_random(4, 25, 0.2f, 2.f))},
                    "bn", out_shape);
  ValueId id = b.op("Identity", {bn}, "id", out_shape);
  ValueId s = b.op("Add", {id, skip}, "s", out_shape);
  b.output(b.op("Clip", {s, b.scalar("zero", 0.f), b.scalar("six", 6.f)}, "y", out_shape));
  PassStats stats;
  Graph optimized = expect_same_results(b.g, stats);
  EXPECT_EQ(optimized.nodes.size(), 1u);
  EXPECT_EQ(stats.batch_norms_folded, 1);
  EXPECT_EQ(stats.residual_adds_fused, 1);
  EXPECT_EQ(stats.activations_fused, 1);
}

TEST(PassesSemantics, ResidualProducedLaterWithoutBiasThenHardSigmoid) {
  GraphBuilder b;
  ValueId x = b.input("x", kFeat);
  ValueId c = add_conv(b, x, "c");
  ValueId r = b.op("Relu", {x}, "r", kFeat);
  ValueId s = b.op("Add", {r, c}, "s", kFeat);
  ValueId h = b.op("HardSigmoid", {s}, "h", kFeat, {{"alpha", ir::Attribute{0.3f}}, {"beta", ir::Attribute{0.4f}}});
  b.output(h);
  b.output(b.op("Sigmoid", {r}, "z", kFeat));
  PassStats stats;
  Graph optimized = expect_same_results(b.g, stats);
  EXPECT_EQ(optimized.nodes.size(), 3u);
  EXPECT_EQ(stats.residual_adds_fused, 1);
  EXPECT_EQ(stats.activations_fused, 1);
}

class PassesGeluSemantics : public ::testing::TestWithParam<GeluForm> {};

TEST_P(PassesGeluSemantics, MatchesTheSubgraph) {
  GeluGraph t;
  build_gelu(t, GetParam());
  PassStats stats;
  Graph optimized = expect_same_results(t.b.g, stats);
  EXPECT_EQ(stats.gelus_fused, 1);
  EXPECT_EQ(stats.activations_fused, 1);
  EXPECT_EQ(optimized.nodes.size(), 1u);
}

INSTANTIATE_TEST_SUITE_P(PassesForms, PassesGeluSemantics, ::testing::ValuesIn(kAllGeluForms), gelu_form_name);

// ---------------------------------------------------------------------------------------------
// crop_dead_conv_taps

struct ConvGeometry {
  int64_t c, h, w, m, kh, kw, stride, dilation;
  std::vector<int64_t> pads;  // top, left, bottom, right
  int64_t out(int d) const {
    const int64_t in = d == 0 ? h : w, k = d == 0 ? kh : kw;
    return (in + pads[d] + pads[d + 2] - (dilation * (k - 1) + 1)) / stride + 1;
  }
};

// Direct 2-D convolution with padding, stride and dilation, accumulated in double: dropping taps
// that only meet padding removes exact zeros, so the cropped layer gives the same bits.
std::vector<double> padded_conv(const std::vector<float>& x, const std::vector<float>& w, const ConvGeometry& g, int64_t kh,
                                int64_t kw, const std::vector<int64_t>& pads) {
  const int64_t oh = g.out(0), ow = g.out(1);
  std::vector<double> y(static_cast<size_t>(g.m * oh * ow));
  for (int64_t o = 0; o < g.m; ++o) {
    for (int64_t i = 0; i < oh; ++i) {
      for (int64_t j = 0; j < ow; ++j) {
        double acc = 0;
        for (int64_t ci = 0; ci < g.c; ++ci) {
          for (int64_t ki = 0; ki < kh; ++ki) {
            for (int64_t kj = 0; kj < kw; ++kj) {
              const int64_t r = i * g.stride - pads[0] + ki * g.dilation, q = j * g.stride - pads[1] + kj * g.dilation;
              if (r < 0 || r >= g.h || q < 0 || q >= g.w) continue;
              acc += static_cast<double>(x[static_cast<size_t>((ci * g.h + r) * g.w + q)]) *
                     w[static_cast<size_t>(((o * g.c + ci) * kh + ki) * kw + kj)];
            }
          }
        }
        y[static_cast<size_t>((o * oh + i) * ow + j)] = acc;
      }
    }
  }
  return y;
}

TEST(PassesConvTaps, CropsWhatMeetsOnlyPaddingAndKeepsTheOutput) {
  const ConvGeometry cases[] = {
      {4, 1, 1, 3, 3, 3, 1, 1, {1, 1, 1, 1}},  // ResNet's last stage at 32x32: the centre tap alone
      {4, 2, 2, 3, 3, 3, 2, 1, {1, 1, 1, 1}},  // stride 2 on 2x2: taps 1..2
      {2, 1, 3, 3, 3, 3, 1, 1, {1, 1, 1, 1}},  // one row: the middle kernel row, all columns
      {2, 3, 3, 2, 7, 7, 2, 1, {3, 3, 3, 3}},  // 7x7/2 stem on a 3x3 input
      {2, 2, 2, 2, 3, 3, 1, 2, {2, 2, 2, 2}},  // dilated
      {3, 2, 2, 2, 3, 3, 1, 1, {1, 1, 1, 1}},  // every tap live: untouched
  };
  for (const ConvGeometry& c : cases) {
    SCOPED_TRACE(::testing::Message() << c.h << "x" << c.w << " kernel " << c.kh << "x" << c.kw << " stride " << c.stride
                                      << " dilation " << c.dilation);
    GraphBuilder b;
    const ValueId x = b.input("x", {1, c.c, c.h, c.w});
    const std::vector<float> wv = pseudo_random(static_cast<size_t>(c.m * c.c * c.kh * c.kw), 3, -1.f, 1.f);
    const ValueId w = b.constant("w", {c.m, c.c, c.kh, c.kw}, wv);
    const ValueId y = b.op("Conv", {x, w}, "y", {1, c.m, c.out(0), c.out(1)},
                           {{"kernel_shape", ir::Attribute{std::vector<int64_t>{c.kh, c.kw}}},
                            {"pads", ir::Attribute{c.pads}},
                            {"strides", ir::Attribute{std::vector<int64_t>{c.stride, c.stride}}},
                            {"dilations", ir::Attribute{std::vector<int64_t>{c.dilation, c.dilation}}}});
    b.output(y);
    // A second reader of the weights: the crop must not write them in place.
    b.output(b.op("Identity", {w}, "w_out", {c.m, c.c, c.kh, c.kw}));
    PassStats stats;
    ASSERT_TRUE(crop_dead_conv_taps(b.g, stats).ok());
    expect_valid_sorted(b.g);
    const Node* conv = find_op(b.g, "Conv");
    ASSERT_NE(conv, nullptr);
    const Shape ws = b.g.value(conv->inputs[1]).constant.shape();
    const std::vector<int64_t> pads = conv->attr_ints("pads").value();
    const bool all_live = &c == &cases[std::size(cases) - 1];
    EXPECT_EQ(stats.conv_taps_cropped, all_live ? 0 : 1);
    EXPECT_EQ(ws[2] * ws[3] < c.kh * c.kw, !all_live);
    EXPECT_EQ(conv->attr_ints("kernel_shape").value(), (std::vector<int64_t>{ws[2], ws[3]}));
    for (int64_t p : pads) EXPECT_GE(p, 0);
    EXPECT_EQ(values_of(b.g, w), wv);
    const std::vector<float> xv = pseudo_random(static_cast<size_t>(c.c * c.h * c.w), 4, -2.f, 2.f);
    ConvGeometry cropped = c;
    cropped.kh = ws[2];
    cropped.kw = ws[3];
    cropped.pads = pads;
    ASSERT_EQ(cropped.out(0), c.out(0));
    ASSERT_EQ(cropped.out(1), c.out(1));
    EXPECT_EQ(padded_conv(xv, values_of(b.g, conv->inputs[1]), cropped, ws[2], ws[3], pads),
              padded_conv(xv, wv, c, c.kh, c.kw, c.pads));
  }
}

}  // namespace
}  // namespace tenet::passes
