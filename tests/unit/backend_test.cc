// One harness for every CPU kernel: each case is a small ONNX model compiled twice, once on the
// plain reference kernels (the oracle) and once on the optimized path (oneDNN, blocked layouts,
// fusions), and run on the same random inputs. Tolerance: max |opt - ref| <= 1e-4 * max(|ref|, 1)
// (fp32 with different summation orders); each case also states the kernel it must exercise, so
// a silent fallback to the reference is a failure, and may name an op that must run no step (it
// became a view, a post-op or an in-place concat).
#include <gtest/gtest.h>

#include <cmath>
#include <functional>

#include "engine/cpu/compiled_model.h"
#include "engine/onnx/importer.h"
#include "model_builder.h"

namespace tenet {
namespace {

using testing::ModelBuilder;

struct BackendCase {
  std::string name;
  std::function<void(ModelBuilder&)> build;
  std::map<std::string, Shape> inputs;
  std::string expect_kernel;  // a step with this kernel must exist in the optimized model
  std::string absent_op;      // if set, no step of the optimized model may run this op
  double tolerance = 1e-4;
};

std::vector<float> run_model(const std::string& bytes, const std::map<std::string, Shape>& shapes, bool reference,
                             std::vector<cpu::StepInfo>* steps) {
  auto g = onnx_import::import_model_bytes(std::span<const std::byte>(reinterpret_cast<const std::byte*>(bytes.data()), bytes.size()));
  EXPECT_TRUE(g.ok()) << g.status().to_string();
  if (!g.ok()) return {};
  cpu::CompileOptions opt;
  opt.threads = 2;
  opt.reference_only = reference;
  auto m = cpu::compile_model(*g, shapes, opt);
  EXPECT_TRUE(m.ok()) << m.status().to_string();
  if (!m.ok()) return {};
  if (steps) *steps = (*m)->steps();
  EXPECT_TRUE(plan::verify_plan((*m)->buffers(), (*m)->arena_plan()).ok());
  std::vector<Tensor> feeds;
  std::vector<ConstTensorView> views;
  uint32_t seed = 1;
  for (const auto& info : (*m)->inputs()) {
    auto values = testing::random_values(numel(info.shape), seed++);
    feeds.push_back(Tensor::from_vector<float>(info.shape, values));
    views.push_back(feeds.back().view());
  }
  std::vector<Tensor> outs;
  Status s = (*m)->run(views, outs);
  EXPECT_TRUE(s.ok()) << s.to_string();
  if (!s.ok() || outs.empty()) return {};
  // Run twice: the second run must give the same result (no state leaks between runs).
  std::vector<Tensor> outs2;
  EXPECT_TRUE((*m)->run(views, outs2).ok());
  EXPECT_EQ(0, std::memcmp(outs[0].data(), outs2[0].data(), outs[0].size_bytes()));
  const float* p = outs[0].as<float>();
  return std::vector<float>(p, p + outs[0].numel());
}

class BackendTest : public ::testing::TestWithParam<BackendCase> {};

TEST_P(BackendTest, OptimizedMatchesReference) {
  const BackendCase& c = GetParam();
  ModelBuilder b;
  c.build(b);
  const std::string bytes = b.bytes();
  std::vector<cpu::StepInfo> steps;
  std::vector<float> ref = run_model(bytes, c.inputs, true, nullptr);
  std::vector<float> opt = run_model(bytes, c.inputs, false, &steps);
  ASSERT_FALSE(ref.empty());
  ASSERT_EQ(ref.size(), opt.size());
  double scale = 1.0, max_err = 0.0;
  for (float v : ref) scale = std::max(scale, static_cast<double>(std::fabs(v)));
  for (size_t i = 0; i < ref.size(); ++i) max_err = std::max(max_err, static_cast<double>(std::fabs(ref[i] - opt[i])));
  EXPECT_LE(max_err, c.tolerance * scale) << c.name;
  bool found = false, absent_found = false;
  std::string kernels;
  for (const auto& s : steps) {
    found = found || s.kernel == c.expect_kernel;
    absent_found = absent_found || (!c.absent_op.empty() && s.op_type == c.absent_op);
    kernels += s.op_type + ":" + s.kernel + "[" + s.post_ops + "] ";
  }
  EXPECT_TRUE(found) << c.name << " did not use " << c.expect_kernel << "; steps: " << kernels;
  EXPECT_FALSE(absent_found) << c.name << " runs " << c.absent_op << "; steps: " << kernels;
}

using MB = ModelBuilder;

BackendCase conv_case(std::string name, Shape x, Shape w, int64_t group, std::vector<int64_t> strides, std::vector<int64_t> pads,
                      std::vector<int64_t> dilations, bool bias, const std::string& act = "") {
  BackendCase c;
  c.name = name;
  c.inputs = {{"x", x}};
  c.expect_kernel = "dnnl_conv";
  c.build = [=](MB& b) {
    b.input("x", x).random_initializer("W", w, 0.2f);
    std::vector<std::string> ins = {"x", "W"};
    if (bias) {
      b.random_initializer("B", {w[0]});
      ins.push_back("B");
    }
    auto& n = b.node("Conv", ins, {act.empty() ? "y" : "c"});
    MB::attr(n, "group", group);
    MB::attr(n, "strides", strides);
    MB::attr(n, "pads", pads);
    MB::attr(n, "dilations", dilations);
    MB::attr(n, "kernel_shape", std::vector<int64_t>{w[2], w[3]});
    if (!act.empty()) b.node(act, {"c"}, {"y"});
    b.output("y");
  };
  return c;
}

std::vector<BackendCase> cases() {
  std::vector<BackendCase> v;
  v.push_back(conv_case("conv3x3", {1, 3, 17, 17}, {16, 3, 3, 3}, 1, {1, 1}, {1, 1, 1, 1}, {1, 1}, true));
  v.push_back(conv_case("conv_stride2_nobias", {2, 8, 16, 16}, {16, 8, 3, 3}, 1, {2, 2}, {1, 1, 1, 1}, {1, 1}, false));
  v.push_back(conv_case("conv_asym_pads", {1, 8, 15, 13}, {8, 8, 3, 5}, 1, {1, 2}, {0, 2, 1, 1}, {1, 1}, true));
  v.push_back(conv_case("conv_dilated", {1, 8, 20, 20}, {8, 8, 3, 3}, 1, {1, 1}, {2, 2, 2, 2}, {2, 2}, true));
  v.push_back(conv_case("conv_grouped", {1, 16, 12, 12}, {32, 4, 3, 3}, 4, {1, 1}, {1, 1, 1, 1}, {1, 1}, true));
  v.push_back(conv_case("conv_depthwise_relu", {1, 32, 14, 14}, {32, 1, 3, 3}, 32, {2, 2}, {1, 1, 1, 1}, {1, 1}, true, "Relu"));
  v.push_back(conv_case("conv1x1_sigmoid", {1, 24, 7, 7}, {40, 24, 1, 1}, 1, {1, 1}, {0, 0, 0, 0}, {1, 1}, true, "Sigmoid"));
  v.push_back(conv_case("conv_hardswish", {1, 16, 9, 9}, {16, 16, 3, 3}, 1, {1, 1}, {1, 1, 1, 1}, {1, 1}, true, "HardSwish"));
  {
    // EfficientNet's SiLU: Conv -> Sigmoid -> Mul(conv, sigmoid) is one conv with a swish post-op.
    BackendCase c;
    c.name = "conv_swish";
    c.inputs = {{"x", {1, 8, 9, 9}}};
    c.expect_kernel = "dnnl_conv";
    c.absent_op = "Mul";
    c.build = [](MB& b) {
      b.input("x", {1, 8, 9, 9}).random_initializer("W", {16, 8, 3, 3}, 0.3f).random_initializer("B", {16});
      auto& n = b.node("Conv", {"x", "W", "B"}, {"c"});
      MB::attr(n, "pads", std::vector<int64_t>{1, 1, 1, 1});
      b.node("Sigmoid", {"c"}, {"s"});
      b.node("Mul", {"c", "s"}, {"y"});
      b.output("y");
    };
    v.push_back(c);
  }
  v.push_back(conv_case("conv_hardsigmoid", {1, 16, 1, 1}, {16, 16, 1, 1}, 1, {1, 1}, {0, 0, 0, 0}, {1, 1}, true, "HardSigmoid"));
  {
    BackendCase c;
    c.name = "conv_residual_relu";
    c.inputs = {{"x", {1, 16, 10, 10}}};
    c.expect_kernel = "dnnl_conv";
    c.build = [](MB& b) {
      b.input("x", {-1, 16, 10, 10}).random_initializer("W1", {16, 16, 3, 3}, 0.1f).random_initializer("W2", {16, 16, 3, 3}, 0.1f);
      b.random_initializer("B1", {16}).random_initializer("B2", {16});
      auto& c1 = b.node("Conv", {"x", "W1", "B1"}, {"c1"});
      MB::attr(c1, "pads", std::vector<int64_t>{1, 1, 1, 1});
      b.node("Relu", {"c1"}, {"r1"});
      auto& c2 = b.node("Conv", {"r1", "W2", "B2"}, {"c2"});
      MB::attr(c2, "pads", std::vector<int64_t>{1, 1, 1, 1});
      b.node("Add", {"c2", "x"}, {"s"});
      b.node("Relu", {"s"}, {"y"});
      b.output("y");
    };
    v.push_back(c);
  }
  {
    BackendCase c;
    c.name = "conv_bn_clip6";
    c.inputs = {{"x", {1, 8, 12, 12}}};
    c.expect_kernel = "dnnl_conv";
    c.build = [](MB& b) {
      b.input("x", {1, 8, 12, 12}).random_initializer("W", {16, 8, 3, 3}, 0.2f);
      b.random_initializer("s", {16}, 0.3f, 1.f).random_initializer("bb", {16}).random_initializer("mu", {16});
      b.random_initializer("var", {16}, 0.1f, 1.f);
      b.initializer("lo", {}, {0.f}).initializer("hi", {}, {6.f});
      b.node("Conv", {"x", "W"}, {"c"});
      b.node("BatchNormalization", {"c", "s", "bb", "mu", "var"}, {"n"});
      b.node("Clip", {"n", "lo", "hi"}, {"y"});
      b.output("y");
    };
    v.push_back(c);
  }
  {
    // The residual of a fused sum is read again later: the sum must not be accumulated into its
    // buffer.
    BackendCase c;
    c.name = "residual_still_live";
    c.inputs = {{"x", {1, 8, 6, 6}}};
    c.expect_kernel = "dnnl_conv";
    c.build = [](MB& b) {
      b.input("x", {1, 8, 6, 6}).random_initializer("W1", {8, 8, 1, 1}).random_initializer("W2", {8, 8, 1, 1});
      b.node("Conv", {"x", "W1"}, {"c1"});
      b.node("Conv", {"x", "W2"}, {"c2"});
      b.node("Add", {"c2", "c1"}, {"s"});
      b.node("Mul", {"s", "c1"}, {"y"});
      b.output("y");
    };
    v.push_back(c);
  }
  auto pool = [](std::string name, std::string op, Shape x, std::vector<int64_t> k, std::vector<int64_t> s, std::vector<int64_t> p,
                 int64_t ceil, int64_t include) {
    BackendCase c;
    c.name = name;
    c.inputs = {{"x", x}};
    c.expect_kernel = "dnnl_pool";
    c.build = [=](MB& b) {
      b.input("x", x);
      auto& n = b.node(op, {"x"}, {"y"});
      MB::attr(n, "kernel_shape", k);
      MB::attr(n, "strides", s);
      MB::attr(n, "pads", p);
      MB::attr(n, "ceil_mode", ceil);
      if (op == "AveragePool") MB::attr(n, "count_include_pad", include);
      b.output("y");
    };
    return c;
  };
  v.push_back(pool("maxpool3x3s2", "MaxPool", {1, 8, 15, 15}, {3, 3}, {2, 2}, {1, 1, 1, 1}, 0, 0));
  v.push_back(pool("maxpool_ceil", "MaxPool", {1, 8, 14, 14}, {3, 3}, {2, 2}, {0, 0, 0, 0}, 1, 0));
  v.push_back(pool("avgpool_include", "AveragePool", {1, 8, 9, 9}, {3, 3}, {1, 1}, {1, 1, 1, 1}, 0, 1));
  v.push_back(pool("avgpool_exclude", "AveragePool", {1, 8, 9, 9}, {3, 3}, {2, 2}, {1, 1, 1, 1}, 0, 0));
  {
    BackendCase c;
    c.name = "global_avg_after_conv";
    c.inputs = {{"x", {2, 8, 7, 7}}};
    c.expect_kernel = "dnnl_pool";
    c.build = [](MB& b) {
      b.input("x", {2, 8, 7, 7}).random_initializer("W", {16, 8, 1, 1});
      b.node("Conv", {"x", "W"}, {"c"});
      b.node("GlobalAveragePool", {"c"}, {"p"});
      b.node("Flatten", {"p"}, {"y"});
      b.output("y");
    };
    v.push_back(c);
  }
  {
    BackendCase c;
    c.name = "reduce_mean_spatial_after_conv";
    c.inputs = {{"x", {2, 8, 7, 7}}};
    c.expect_kernel = "dnnl_pool";
    c.build = [](MB& b) {
      b.input("x", {2, 8, 7, 7}).random_initializer("W", {16, 8, 1, 1});
      b.node("Conv", {"x", "W"}, {"c"});
      auto& r = b.node("ReduceMean", {"c"}, {"y"});
      MB::attr(r, "axes", std::vector<int64_t>{-1, 2});
      MB::attr(r, "keepdims", int64_t{0});
      b.output("y");
    };
    v.push_back(c);
  }
  {
    BackendCase c;
    // Batch 2: the inputs are not contiguous blocks of the output, so the concat kernel runs.
    c.name = "concat_blocked";
    c.inputs = {{"x", {2, 8, 6, 6}}};
    c.expect_kernel = "dnnl_concat";
    c.build = [](MB& b) {
      b.input("x", {2, 8, 6, 6}).random_initializer("W1", {16, 8, 1, 1}).random_initializer("W2", {24, 8, 3, 3}, 0.1f);
      b.node("Conv", {"x", "W1"}, {"a"});
      auto& c2 = b.node("Conv", {"x", "W2"}, {"bb"});
      MB::attr(c2, "pads", std::vector<int64_t>{1, 1, 1, 1});
      auto& n = b.node("Concat", {"a", "bb"}, {"y"});
      MB::attr(n, "axis", int64_t{1});
      b.output("y");
    };
    v.push_back(c);
  }
  {
    BackendCase c;
    c.name = "se_block_mul_broadcast";
    c.inputs = {{"x", {1, 16, 8, 8}}};
    c.expect_kernel = "dnnl_binary";
    c.build = [](MB& b) {
      b.input("x", {1, 16, 8, 8}).random_initializer("W", {16, 16, 3, 3}, 0.1f).random_initializer("F", {16, 16, 1, 1}, 0.1f);
      auto& c1 = b.node("Conv", {"x", "W"}, {"c"});
      MB::attr(c1, "pads", std::vector<int64_t>{1, 1, 1, 1});
      b.node("GlobalAveragePool", {"c"}, {"p"});
      b.node("Conv", {"p", "F"}, {"f"});
      b.node("HardSigmoid", {"f"}, {"h"});
      b.node("Mul", {"h", "c"}, {"y"});
      b.output("y");
    };
    v.push_back(c);
  }
  {
    // RegNet's block: a grouped conv (8 channels per group; oneDNN may pick nChw8c for it, whose
    // broadcast Mul has no JIT binary on AVX-512) gated by an SE scale.
    BackendCase c;
    c.name = "grouped_conv_se_gate";
    c.inputs = {{"x", {1, 16, 14, 14}}};
    c.expect_kernel = "dnnl_binary";
    c.build = [](MB& b) {
      b.input("x", {1, 16, 14, 14}).random_initializer("W1", {48, 16, 1, 1}, 0.2f).random_initializer("W2", {48, 8, 3, 3}, 0.2f);
      b.random_initializer("F1", {12, 48, 1, 1}, 0.2f).random_initializer("F2", {48, 12, 1, 1}, 0.2f);
      b.node("Conv", {"x", "W1"}, {"a"});
      auto& g = b.node("Conv", {"a", "W2"}, {"gc"});
      MB::attr(g, "group", int64_t{6});
      MB::attr(g, "pads", std::vector<int64_t>{1, 1, 1, 1});
      b.node("Relu", {"gc"}, {"r"});
      b.node("GlobalAveragePool", {"r"}, {"p"});
      b.node("Conv", {"p", "F1"}, {"f1"});
      b.node("Relu", {"f1"}, {"f1r"});
      b.node("Conv", {"f1r", "F2"}, {"f2"});
      b.node("Sigmoid", {"f2"}, {"s"});
      b.node("Mul", {"r", "s"}, {"y"});
      b.output("y");
    };
    v.push_back(c);
  }
  {
    BackendCase c;
    c.name = "standalone_bn_relu";
    c.inputs = {{"x", {1, 16, 5, 5}}};
    c.expect_kernel = "dnnl_batch_norm";
    c.build = [](MB& b) {
      b.input("x", {1, 16, 5, 5}).random_initializer("s", {16}, 0.3f, 1.f).random_initializer("bb", {16});
      b.random_initializer("mu", {16}).random_initializer("var", {16}, 0.1f, 1.f);
      b.node("BatchNormalization", {"x", "s", "bb", "mu", "var"}, {"n"});
      b.node("Relu", {"n"}, {"y"});
      b.output("y");
    };
    v.push_back(c);
  }
  {
    BackendCase c;
    c.name = "gemm_transb_bias";
    c.inputs = {{"x", {4, 64}}};
    c.expect_kernel = "dnnl_gemm";
    c.build = [](MB& b) {
      b.input("x", {-1, 64}).random_initializer("W", {10, 64}, 0.1f).random_initializer("B", {10});
      auto& n = b.node("Gemm", {"x", "W", "B"}, {"y"});
      MB::attr(n, "transB", int64_t{1});
      MB::attr(n, "alpha", 0.5f);
      MB::attr(n, "beta", 2.0f);
      b.output("y");
    };
    v.push_back(c);
  }
  // One input row: tenet's matrix-vector kernel (every weight layout and epilogue it takes).
  {
    BackendCase c;
    c.name = "gemv_gemm_transb_alpha_beta_relu";
    c.inputs = {{"x", {1, 1000}}};  // K not a multiple of 64: the tail path too
    c.expect_kernel = "tenet_gemv";
    c.build = [](MB& b) {
      b.input("x", {-1, 1000}).random_initializer("W", {77, 1000}, 0.1f).random_initializer("B", {77});
      auto& n = b.node("Gemm", {"x", "W", "B"}, {"g"});
      MB::attr(n, "transB", int64_t{1});
      MB::attr(n, "alpha", 0.5f);
      MB::attr(n, "beta", 2.0f);
      b.node("Relu", {"g"}, {"y"});
      b.output("y");
    };
    v.push_back(c);
  }
  {
    BackendCase c;
    c.name = "gemv_gemm_kn_scalar_bias";
    c.inputs = {{"x", {1, 256}}};
    c.expect_kernel = "tenet_gemv";
    c.build = [](MB& b) {
      b.input("x", {-1, 256}).random_initializer("W", {256, 130}, 0.1f).random_initializer("B", {1});
      b.node("Gemm", {"x", "W", "B"}, {"y"});
      b.output("y");
    };
    v.push_back(c);
  }
  {
    BackendCase c;
    c.name = "gemv_matmul_rank3";
    c.inputs = {{"x", {1, 1, 96}}};
    c.expect_kernel = "tenet_gemv";
    c.build = [](MB& b) {
      b.input("x", {1, -1, 96}).random_initializer("W", {96, 33}, 0.1f);
      b.node("MatMul", {"x", "W"}, {"y"});
      b.output("y");
    };
    v.push_back(c);
  }
  {
    BackendCase c;
    c.name = "attention_core";
    c.inputs = {{"x", {2, 16, 32}}};
    c.expect_kernel = "dnnl_matmul";
    c.build = [](MB& b) {
      b.input("x", {-1, 16, 32}).random_initializer("Wq", {32, 32}, 0.2f).random_initializer("Wk", {32, 32}, 0.2f);
      b.random_initializer("g", {32}, 0.1f, 1.f).random_initializer("be", {32});
      b.node("MatMul", {"x", "Wq"}, {"q"});
      b.node("MatMul", {"x", "Wk"}, {"k"});
      auto& t = b.node("Transpose", {"k"}, {"kt"});
      MB::attr(t, "perm", std::vector<int64_t>{0, 2, 1});
      b.node("MatMul", {"q", "kt"}, {"s"});
      auto& sm = b.node("Softmax", {"s"}, {"p"});
      MB::attr(sm, "axis", int64_t{-1});
      b.node("MatMul", {"p", "x"}, {"o"});
      auto& ln = b.node("LayerNormalization", {"o", "g", "be"}, {"y"});
      MB::attr(ln, "axis", int64_t{-1});
      b.output("y");
    };
    v.push_back(c);
  }
  {
    BackendCase c;
    c.name = "gelu_mlp";
    c.inputs = {{"x", {1, 8, 32}}};
    c.expect_kernel = "dnnl_matmul";
    c.build = [](MB& b) {
      b.input("x", {1, 8, 32}).random_initializer("W", {32, 64}, 0.3f).random_initializer("B", {64});
      b.initializer("sq", {}, {1.4142135f}).initializer("one", {}, {1.f}).initializer("half", {}, {0.5f});
      b.node("MatMul", {"x", "W"}, {"m0"});
      b.node("Add", {"B", "m0"}, {"m"});
      b.node("Div", {"m", "sq"}, {"d"});
      b.node("Erf", {"d"}, {"e"});
      b.node("Add", {"e", "one"}, {"a"});
      b.node("Mul", {"m", "a"}, {"mm"});
      b.node("Mul", {"mm", "half"}, {"y"});
      b.output("y");
    };
    v.push_back(c);
  }
  {
    // A DenseNet-like block in plain layout: every concat's inputs are contiguous blocks of the
    // next one (leading dims 1), so all of them share one buffer and no Concat step runs; c2's
    // first two inputs are c1's parts and join as c1.
    auto dense = [](MB& b, const Shape& x) {
      b.input("x", x).random_initializer("W1", {8, 8}, 0.3f).random_initializer("W2", {8, 8}, 0.3f);
      b.random_initializer("W3", {8, 8}, 0.3f).random_initializer("W4", {8, 8}, 0.3f);
      b.node("MatMul", {"x", "W1"}, {"a"});
      b.node("MatMul", {"a", "W2"}, {"bb"});
      auto& c1 = b.node("Concat", {"a", "bb"}, {"c1"});
      MB::attr(c1, "axis", int64_t{1});
      b.node("MatMul", {"c1", "W3"}, {"d"});
      auto& c2 = b.node("Concat", {"a", "bb", "d"}, {"c2"});
      MB::attr(c2, "axis", int64_t{1});
      b.node("MatMul", {"c2", "W4"}, {"e"});
      b.node("Relu", {"c2"}, {"r"});
      b.node("Add", {"e", "r"}, {"y"});
      b.output("y");
    };
    BackendCase c;
    c.name = "concat_in_place_dense_block";
    c.inputs = {{"x", {1, 4, 8}}};
    c.expect_kernel = "dnnl_matmul";
    c.absent_op = "Concat";
    c.build = [=](MB& b) { dense(b, {1, 4, 8}); };
    v.push_back(c);
    c.name = "concat_batch2_copies";
    c.inputs = {{"x", {2, 4, 8}}};
    c.expect_kernel = "dnnl_concat";
    c.absent_op = "";
    c.build = [=](MB& b) { dense(b, {2, 4, 8}); };
    v.push_back(c);
  }
  {
    // Batch 1: producers write straight into the concat's channel blocks when oneDNN picks a
    // channel-blocked layout (nChw8c/16c); with nhwc (AVX-512) the concat kernel runs. Either way
    // the result must match; the 12-channel input is last, so it may end in a partial block.
    BackendCase c;
    c.name = "concat_blocked_batch1";
    c.inputs = {{"x", {1, 8, 6, 6}}};
    c.expect_kernel = "dnnl_conv";
    c.build = [](MB& b) {
      b.input("x", {1, 8, 6, 6}).random_initializer("W1", {16, 8, 1, 1}).random_initializer("W2", {12, 8, 3, 3}, 0.1f);
      b.random_initializer("W3", {8, 28, 1, 1}, 0.2f);
      b.node("Conv", {"x", "W1"}, {"a"});
      auto& c2 = b.node("Conv", {"x", "W2"}, {"bb"});
      MB::attr(c2, "pads", std::vector<int64_t>{1, 1, 1, 1});
      auto& n = b.node("Concat", {"a", "bb"}, {"c"});
      MB::attr(n, "axis", int64_t{1});
      b.node("Conv", {"c", "W3"}, {"y"});
      b.output("y");
    };
    v.push_back(c);
  }
  {
    BackendCase c;
    c.name = "transpose_reorder";
    c.inputs = {{"x", {2, 3, 4, 5}}};
    c.expect_kernel = "dnnl_reorder";
    c.build = [](MB& b) {
      b.input("x", {2, 3, 4, 5});
      auto& t = b.node("Transpose", {"x"}, {"y"});
      MB::attr(t, "perm", std::vector<int64_t>{0, 2, 3, 1});
      b.output("y");
    };
    v.push_back(c);
  }
  {
    // Batch 1: [seq, 1, d] -> [1, seq, d] moves no bytes.
    BackendCase c;
    c.name = "transpose_of_unit_dim_is_a_view";
    c.inputs = {{"x", {6, 1, 4}}};
    c.expect_kernel = "dnnl_matmul";
    c.absent_op = "Transpose";
    c.build = [](MB& b) {
      b.input("x", {6, 1, 4}).random_initializer("W", {4, 8});
      auto& t = b.node("Transpose", {"x"}, {"t"});
      MB::attr(t, "perm", std::vector<int64_t>{1, 0, 2});
      b.node("MatMul", {"t", "W"}, {"y"});
      b.output("y");
    };
    v.push_back(c);
  }
  auto slice = [](std::string name, std::vector<int64_t> starts, std::vector<int64_t> ends, std::vector<int64_t> steps,
                  std::string kernel) {
    BackendCase c;
    c.name = name;
    c.inputs = {{"x", {2, 12, 10}}};
    c.expect_kernel = kernel;
    c.build = [=](MB& b) {
      b.input("x", {2, 12, 10});
      b.initializer_i64("starts", {2}, starts).initializer_i64("ends", {2}, ends);
      b.initializer_i64("axes", {2}, {1, 2}).initializer_i64("steps", {2}, steps);
      b.node("Slice", {"x", "starts", "ends", "axes", "steps"}, {"y"});
      b.output("y");
    };
    return c;
  };
  v.push_back(slice("slice_strided", {1, 2}, {11, 9}, {2, 3}, "dnnl_reorder"));
  v.push_back(slice("slice_reversed_runs_reference", {-1, 0}, {-100, 10}, {-1, 1}, "reference"));
  {
    // A transformer MLP: bias and GELU fused into the first matmul, bias and the residual Add
    // into the second (sum post-op into the residual's buffer, which is read again: a copy).
    BackendCase c;
    c.name = "matmul_bias_gelu_residual";
    c.inputs = {{"x", {1, 8, 32}}};
    c.expect_kernel = "dnnl_matmul";
    c.absent_op = "Add";
    c.build = [](MB& b) {
      b.input("x", {1, 8, 32}).random_initializer("W1", {32, 64}, 0.2f).random_initializer("B1", {64});
      b.random_initializer("W2", {64, 32}, 0.2f).random_initializer("B2", {32});
      b.node("MatMul", {"x", "W1"}, {"m1"});
      b.node("Add", {"m1", "B1"}, {"a1"});
      b.node("Gelu", {"a1"}, {"g"});
      b.node("MatMul", {"g", "W2"}, {"m2"});
      b.node("Add", {"B2", "m2"}, {"a2"});
      b.node("Add", {"x", "a2"}, {"s"});
      b.node("Mul", {"s", "x"}, {"y"});
      b.output("y");
    };
    v.push_back(c);
  }
  {
    // Attention scores: the 1/sqrt(d) on q becomes the matmul's output scale (both operands are
    // activations), the scale on v is folded the same way.
    BackendCase c;
    c.name = "attention_scaled_operands";
    c.inputs = {{"q", {2, 16, 8}}, {"k", {2, 8, 16}}, {"v", {2, 16, 8}}};
    c.expect_kernel = "dnnl_matmul";
    c.absent_op = "Div";
    c.build = [](MB& b) {
      b.input("q", {2, 16, 8}).input("k", {2, 8, 16}).input("v", {2, 16, 8});
      b.initializer("s", {}, {2.8284271f}).initializer("h", {1}, {0.5f});
      b.node("Div", {"q", "s"}, {"qs"});
      b.node("MatMul", {"qs", "k"}, {"sc"});
      auto& sm = b.node("Softmax", {"sc"}, {"p"});
      MB::attr(sm, "axis", int64_t{-1});
      b.node("Mul", {"h", "v"}, {"vs"});
      b.node("MatMul", {"p", "vs"}, {"y"});
      b.output("y");
    };
    v.push_back(c);
  }
  return v;
}

INSTANTIATE_TEST_SUITE_P(Kernels, BackendTest, ::testing::ValuesIn(cases()),
                         [](const ::testing::TestParamInfo<BackendCase>& i) { return i.param.name; });

}  // namespace
}  // namespace tenet
