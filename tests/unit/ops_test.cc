// Tests of the operator table (engine/ops): shape inference and the reference kernels against
// hand-computed values or plain loops, and hostile attributes/shapes that must fail with a
// Status naming the node (never crash).
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>
#include <set>

#include "engine/ops/op.h"

namespace tenet::ops {
namespace {

constexpr int64_t kInt64Max = std::numeric_limits<int64_t>::max();
constexpr int64_t kInt64Min = std::numeric_limits<int64_t>::min();

// ---- helpers ------------------------------------------------------------------------------------

ir::Attribute attr(int64_t v) { return ir::Attribute{v}; }
ir::Attribute attr(float v) { return ir::Attribute{v}; }
ir::Attribute attr(const char* v) { return ir::Attribute{std::string(v)}; }
ir::Attribute attr(std::vector<int64_t> v) { return ir::Attribute{std::move(v)}; }
ir::Attribute attr(std::vector<float> v) { return ir::Attribute{std::move(v)}; }
ir::Attribute attr(Tensor v) { return ir::Attribute{std::move(v)}; }

ir::Node make_node(std::string op_type, std::map<std::string, ir::Attribute> attrs = {}, int outputs = 1) {
  ir::Node n;
  n.name = "n";
  n.op_type = std::move(op_type);
  n.attrs = std::move(attrs);
  for (int i = 0; i < outputs; ++i) n.outputs.push_back(100 + i);
  return n;
}

Tensor f32(Shape shape, std::vector<float> v) { return Tensor::from_vector<float>(std::move(shape), v); }
Tensor i64(Shape shape, std::vector<int64_t> v) { return Tensor::from_vector<int64_t>(std::move(shape), v); }
Tensor i32(Shape shape, std::vector<int32_t> v) { return Tensor::from_vector<int32_t>(std::move(shape), v); }
Tensor boolean(Shape shape, std::vector<bool> v) {
  Tensor t = Tensor::zeros(DType::kBool, std::move(shape)).value();
  for (size_t i = 0; i < v.size(); ++i) t.as<uint8_t>()[i] = v[i] ? 1 : 0;
  return t;
}
Tensor ints(std::vector<int64_t> v) { return Tensor::vector_int64(v); }

Tensor random_f32(Shape shape, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(-1.f, 1.f);
  Tensor t = Tensor::zeros(DType::kFloat32, std::move(shape)).value();
  for (int64_t i = 0; i < t.numel(); ++i) t.as<float>()[i] = dist(rng);
  return t;
}

// Input descriptions as the shape-inference pass builds them: every defined tensor is a constant
// unless its index is in `runtime` (then only dtype and shape are known).
std::vector<InferInput> infer_inputs(const std::vector<Tensor>& inputs, const std::set<size_t>& runtime) {
  std::vector<InferInput> ins(inputs.size());
  for (size_t i = 0; i < inputs.size(); ++i) {
    if (!inputs[i].defined()) continue;
    ins[i] = InferInput{inputs[i].dtype(), &inputs[i].shape(), runtime.count(i) ? nullptr : &inputs[i]};
  }
  return ins;
}

void wire_inputs(ir::Node& n, const std::vector<Tensor>& inputs) {
  n.inputs.clear();
  for (size_t i = 0; i < inputs.size(); ++i) n.inputs.push_back(inputs[i].defined() ? static_cast<ir::ValueId>(i) : ir::kNoValue);
}

Result<std::vector<InferOutput>> infer(ir::Node n, const std::vector<Tensor>& inputs, int64_t opset = 17,
                                       const std::set<size_t>& runtime = {}) {
  wire_inputs(n, inputs);
  const std::vector<InferInput> ins = infer_inputs(inputs, runtime);
  std::vector<InferOutput> outs;
  TENET_RETURN_IF_ERROR(infer_node(n, opset, ins, outs));
  return outs;
}

// Infers, allocates the outputs and runs the reference.
Result<std::vector<Tensor>> run(ir::Node n, const std::vector<Tensor>& inputs, int64_t opset = 17,
                                const std::set<size_t>& runtime = {}) {
  wire_inputs(n, inputs);
  TENET_ASSIGN_OR_RETURN(const std::vector<InferOutput> outs, infer(n, inputs, opset, runtime));
  const OpSchema* schema = find_op(n.op_type, opset);
  if (schema == nullptr) return internal_error("no schema");
  std::vector<Tensor> results;
  std::vector<TensorView> views;
  for (const InferOutput& o : outs) {
    TENET_ASSIGN_OR_RETURN(Tensor t, Tensor::zeros(o.dtype, o.shape));
    results.push_back(std::move(t));
  }
  for (Tensor& t : results) views.push_back(t.view());
  std::vector<ConstTensorView> in_views(inputs.size());
  for (size_t i = 0; i < inputs.size(); ++i) {
    if (inputs[i].defined()) in_views[i] = inputs[i].view();
  }
  TENET_RETURN_IF_ERROR(schema->reference(n, in_views, views));
  return results;
}

template <typename T>
std::vector<T> values(const Tensor& t) {
  return std::vector<T>(t.as<T>(), t.as<T>() + t.numel());
}
std::vector<float> floats(const Tensor& t) { return values<float>(t); }
std::vector<bool> bools(const Tensor& t) {
  std::vector<bool> v;
  for (int64_t i = 0; i < t.numel(); ++i) v.push_back(t.as<uint8_t>()[i] != 0);
  return v;
}

void expect_near(const std::vector<float>& got, const std::vector<float>& want, float tol = 1e-5f) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) EXPECT_NEAR(got[i], want[i], tol) << "at " << i;
}

// The error is of the expected code and names the node.
template <typename R>
void expect_error(const R& r, StatusCode code) {
  ASSERT_FALSE(r.ok());
  const Status& s = [&]() -> const Status& {
    if constexpr (std::is_same_v<R, Status>) {
      return r;
    } else {
      return r.status();
    }
  }();
  EXPECT_EQ(s.code(), code) << s.to_string();
  EXPECT_NE(s.message().find("node 'n'"), std::string::npos) << s.to_string();
}

// ---- registry -----------------------------------------------------------------------------------

TEST(OpsRegistryTest, EveryOpHasInferAndReferenceAtEveryOpset) {
  const std::vector<std::string> names = supported_ops();
  ASSERT_FALSE(names.empty());
  EXPECT_TRUE(std::is_sorted(names.begin(), names.end()));
  EXPECT_EQ(std::set<std::string>(names.begin(), names.end()).size(), names.size());
  for (auto table : {nn_ops(), elementwise_ops(), tensor_ops(), reduce_ops()}) {
    for (const OpSchema& s : table) {
      EXPECT_NE(s.infer, nullptr) << s.op_type;
      EXPECT_NE(s.reference, nullptr) << s.op_type;
      EXPECT_GE(s.min_opset, 11) << s.op_type;
      EXPECT_LE(s.max_opset, 17) << s.op_type;
      EXPECT_LE(s.min_opset, s.max_opset) << s.op_type;
      for (int opset = s.min_opset; opset <= s.max_opset; ++opset) {
        EXPECT_EQ(find_op(s.op_type, opset), &s) << s.op_type << " opset " << opset;
        // An arity entry exists: a node with no inputs/outputs fails as a model error, not an
        // internal one.
        ir::Node n = make_node(std::string(s.op_type), {}, 0);
        std::vector<InferOutput> outs;
        Status st = infer_node(n, opset, {}, outs);
        EXPECT_FALSE(st.ok()) << s.op_type;
        EXPECT_NE(st.code(), StatusCode::kInternal) << s.op_type << ": " << st.to_string();
      }
    }
  }
  for (const char* op : {"Conv", "MatMul", "Reshape", "ReduceMean", "Gelu", "Where", "Cast"}) {
    EXPECT_NE(std::find(names.begin(), names.end(), op), names.end()) << op;
  }
}

TEST(OpsRegistryTest, OpsetRanges) {
  EXPECT_EQ(find_op("NoSuchOp", 13), nullptr);
  EXPECT_EQ(find_op("LayerNormalization", 16), nullptr);
  EXPECT_NE(find_op("LayerNormalization", 17), nullptr);
  EXPECT_EQ(find_op("HardSwish", 13), nullptr);
  EXPECT_NE(find_op("Softmax", 11), find_op("Softmax", 13));
  EXPECT_EQ(find_op("Conv", 18), nullptr);
  expect_error(infer(make_node("NoSuchOp"), {f32({1}, {1})}), StatusCode::kUnimplemented);
}

TEST(OpsRegistryTest, ArityChecked) {
  expect_error(infer(make_node("Add"), {f32({1}, {1})}), StatusCode::kInvalidArgument);
  expect_error(infer(make_node("Add"), {f32({1}, {1}), f32({1}, {1}), f32({1}, {1})}), StatusCode::kInvalidArgument);
  expect_error(infer(make_node("Conv"), {f32({1, 1, 1, 1}, {1}), Tensor()}), StatusCode::kInvalidArgument);
  expect_error(infer(make_node("Relu", {}, 2), {f32({1}, {1})}), StatusCode::kInvalidArgument);
  ir::Node absent_out = make_node("Relu");
  absent_out.outputs[0] = ir::kNoValue;
  expect_error(infer(absent_out, {f32({1}, {1})}), StatusCode::kInvalidArgument);
  // Opset 11 Squeeze takes axes as an attribute, not an input.
  expect_error(infer(make_node("Squeeze"), {f32({1, 2}, {1, 2}), ints({0})}, 11), StatusCode::kInvalidArgument);
}

// ---- post-ops -----------------------------------------------------------------------------------

TEST(OpsPostOpTest, AppliedInOrder) {
  using Kind = ir::PostOp::Kind;
  const float residual[] = {1.f, 1.f};
  float a[] = {-3.f, 1.f};
  const ir::PostOp sum_relu[] = {{Kind::kSum}, {Kind::kRelu}};
  apply_post_ops(sum_relu, a, 2, residual);
  EXPECT_EQ(a[0], 0.f);
  EXPECT_EQ(a[1], 2.f);
  float b[] = {-3.f, 1.f};
  const ir::PostOp relu_sum[] = {{Kind::kRelu}, {Kind::kSum}};
  apply_post_ops(relu_sum, b, 2, residual);
  EXPECT_EQ(b[0], 1.f);
  EXPECT_EQ(b[1], 2.f);

  float c[] = {-10.f, 0.f, 3.f, 10.f};
  const ir::PostOp clip[] = {{Kind::kClip, 0.f, 6.f}};
  apply_post_ops(clip, c, 4, nullptr);
  EXPECT_EQ(std::vector<float>(c, c + 4), (std::vector<float>{0.f, 0.f, 3.f, 6.f}));

  float sw[] = {-2.f, 0.f, 3.f};
  const ir::PostOp swish[] = {{Kind::kSwish}};
  apply_post_ops(swish, sw, 3, nullptr);
  expect_near(std::vector<float>(sw, sw + 3), {-2.f / (1.f + std::exp(2.f)), 0.f, 3.f / (1.f + std::exp(-3.f))});

  float d[] = {-3.f, 0.f, 3.f};
  const ir::PostOp hs[] = {{Kind::kHardSwish}};
  apply_post_ops(hs, d, 3, nullptr);
  expect_near(std::vector<float>(d, d + 3), {0.f, 0.f, 3.f});

  float e[] = {0.f, 10.f};
  const ir::PostOp hsig[] = {{Kind::kHardSigmoid, 0.2f, 0.5f}};
  apply_post_ops(hsig, e, 2, nullptr);
  expect_near(std::vector<float>(e, e + 2), {0.5f, 1.f});

  float f[] = {1.f, 0.f};
  const ir::PostOp gelu_sig[] = {{Kind::kGeluErf}, {Kind::kSigmoid}};
  apply_post_ops(gelu_sig, f, 2, nullptr);
  const float g1 = 0.5f * (1.f + std::erf(1.f / std::sqrt(2.f)));
  expect_near(std::vector<float>(f, f + 2), {1.f / (1.f + std::exp(-g1)), 0.5f});
}

TEST(OpsPostOpTest, ConvWithResidualAndRelu) {
  // Conv without bias + {sum, relu}: the third input is the residual, not a bias.
  ir::Node n = make_node("Conv");
  n.post_ops = {{ir::PostOp::Kind::kSum}, {ir::PostOp::Kind::kRelu}};
  const Tensor x = f32({1, 1, 2, 2}, {1, 2, 3, 4});
  const Tensor w = f32({1, 1, 1, 1}, {-1});
  const Tensor r = f32({1, 1, 2, 2}, {0.5f, 3.f, 2.f, 10.f});
  auto out = run(n, {x, w, r});
  ASSERT_TRUE(out.ok()) << out.status().to_string();
  expect_near(floats((*out)[0]), {0.f, 1.f, 0.f, 6.f});

  // With a bias the residual is the fourth input.
  auto with_bias = run(n, {x, w, f32({1}, {1}), r});
  ASSERT_TRUE(with_bias.ok()) << with_bias.status().to_string();
  expect_near(floats((*with_bias)[0]), {0.5f, 2.f, 0.f, 7.f});

  // Residual of the wrong shape.
  expect_error(run(n, {x, w, f32({1, 1, 1, 2}, {0, 0})}), StatusCode::kInvalidArgument);
}

TEST(OpsPostOpTest, OtherHostsAndRejections) {
  ir::Node add = make_node("Add");
  add.post_ops = {{ir::PostOp::Kind::kRelu}};
  auto out = run(add, {f32({2}, {1, -5}), f32({2}, {1, 1})});
  ASSERT_TRUE(out.ok()) << out.status().to_string();
  expect_near(floats((*out)[0]), {2.f, 0.f});

  ir::Node mm = make_node("MatMul");
  mm.post_ops = {{ir::PostOp::Kind::kClip, -1.f, 1.f}};
  auto mm_out = run(mm, {f32({1, 2}, {1, 2}), f32({2, 1}, {3, -4})});
  ASSERT_TRUE(mm_out.ok());
  expect_near(floats((*mm_out)[0]), {-1.f});

  ir::Node reshape = make_node("Reshape");
  reshape.post_ops = {{ir::PostOp::Kind::kRelu}};
  expect_error(infer(reshape, {f32({2}, {1, 2}), ints({2})}), StatusCode::kUnimplemented);

  ir::Node two_sums = make_node("Conv");
  two_sums.post_ops = {{ir::PostOp::Kind::kSum}, {ir::PostOp::Kind::kSum}};
  expect_error(infer(two_sums, {f32({1, 1, 1, 1}, {1}), f32({1, 1, 1, 1}, {1}), f32({1, 1, 1, 1}, {1})}),
               StatusCode::kUnimplemented);

  ir::Node int_add = make_node("Add");
  int_add.post_ops = {{ir::PostOp::Kind::kRelu}};
  expect_error(infer(int_add, {i64({1}, {1}), i64({1}, {1})}), StatusCode::kUnimplemented);
}

// ---- Conv ---------------------------------------------------------------------------------------

struct ConvCase {
  int64_t group = 1;
  int64_t sh = 1, sw = 1, dh = 1, dw = 1;
  int64_t pt = 0, pl = 0, pb = 0, pr = 0;
};

// Plain seven-loop convolution (float accumulation) for 4-D NCHW input.
std::vector<float> plain_conv(const Tensor& x, const Tensor& w, const Tensor* bias, const ConvCase& c, const Shape& out) {
  const int64_t n_ = x.shape()[0], ci = x.shape()[1], h = x.shape()[2], wd = x.shape()[3];
  const int64_t m_ = w.shape()[0], cg = w.shape()[1], kh = w.shape()[2], kw = w.shape()[3];
  const int64_t oh = out[2], ow = out[3];
  std::vector<float> y(static_cast<size_t>(n_ * m_ * oh * ow));
  for (int64_t n = 0; n < n_; ++n) {
    for (int64_t m = 0; m < m_; ++m) {
      const int64_t g = m / (m_ / c.group);
      for (int64_t oy = 0; oy < oh; ++oy) {
        for (int64_t ox = 0; ox < ow; ++ox) {
          float acc = bias ? bias->as<float>()[m] : 0.f;
          for (int64_t k = 0; k < cg; ++k) {
            for (int64_t ky = 0; ky < kh; ++ky) {
              for (int64_t kx = 0; kx < kw; ++kx) {
                const int64_t iy = oy * c.sh - c.pt + ky * c.dh;
                const int64_t ix = ox * c.sw - c.pl + kx * c.dw;
                if (iy < 0 || iy >= h || ix < 0 || ix >= wd) continue;
                acc += x.as<float>()[((n * ci + g * cg + k) * h + iy) * wd + ix] * w.as<float>()[((m * cg + k) * kh + ky) * kw + kx];
              }
            }
          }
          y[static_cast<size_t>(((n * m_ + m) * oh + oy) * ow + ox)] = acc;
        }
      }
    }
  }
  return y;
}

ir::Node conv_node(const ConvCase& c) {
  return make_node("Conv", {{"group", attr(c.group)},
                            {"strides", attr(std::vector<int64_t>{c.sh, c.sw})},
                            {"dilations", attr(std::vector<int64_t>{c.dh, c.dw})},
                            {"pads", attr(std::vector<int64_t>{c.pt, c.pl, c.pb, c.pr})}});
}

void check_conv(const Shape& xs, const Shape& ws, bool with_bias, const ConvCase& c, const Shape& want_shape) {
  const Tensor x = random_f32(xs, 1);
  const Tensor w = random_f32(ws, 2);
  const Tensor b = random_f32({ws[0]}, 3);
  auto out = run(conv_node(c), {x, w, with_bias ? b : Tensor()});
  ASSERT_TRUE(out.ok()) << out.status().to_string();
  ASSERT_EQ((*out)[0].shape(), want_shape);
  expect_near(floats((*out)[0]), plain_conv(x, w, with_bias ? &b : nullptr, c, want_shape), 1e-4f);
}

TEST(OpsConvTest, MatchesPlainLoops) {
  check_conv({1, 2, 5, 5}, {3, 2, 3, 3}, true, {1, 1, 1, 1, 1, 1, 1, 1, 1}, {1, 3, 5, 5});
  // Grouped, strided, dilated, asymmetric pads: H = (7+1+2-3)/2+1 = 4, W = (6+0+1-3)/1+1 = 5.
  check_conv({2, 4, 7, 6}, {4, 2, 3, 2}, false, {2, 2, 1, 1, 2, 1, 0, 2, 1}, {2, 4, 4, 5});
  // Depthwise.
  check_conv({1, 3, 4, 4}, {3, 1, 3, 3}, true, {3, 1, 1, 1, 1, 1, 1, 1, 1}, {1, 3, 4, 4});
  // Output larger than input through padding.
  check_conv({1, 1, 2, 2}, {2, 1, 1, 1}, true, {1, 1, 1, 1, 1, 1, 1, 1, 1}, {1, 2, 4, 4});
}

TEST(OpsConvTest, AutoPad) {
  const Tensor x = random_f32({1, 1, 5, 5}, 4);
  const Tensor w = random_f32({1, 1, 2, 2}, 5);
  // ceil(5 / 2) = 3 outputs; total pad (3-1)*2 + 2 - 5 = 1: at the end (UPPER) or start (LOWER).
  for (const char* mode : {"SAME_UPPER", "SAME_LOWER"}) {
    ir::Node n = make_node("Conv", {{"auto_pad", attr(mode)}, {"strides", attr(std::vector<int64_t>{2, 2})}});
    auto out = run(n, {x, w});
    ASSERT_TRUE(out.ok()) << out.status().to_string();
    ASSERT_EQ((*out)[0].shape(), (Shape{1, 1, 3, 3}));
    const bool upper = std::string(mode) == "SAME_UPPER";
    ConvCase c{1, 2, 2, 1, 1, upper ? 0 : 1, upper ? 0 : 1, upper ? 1 : 0, upper ? 1 : 0};
    expect_near(floats((*out)[0]), plain_conv(x, w, nullptr, c, {1, 1, 3, 3}), 1e-5f);
  }
  ir::Node valid = make_node("Conv", {{"auto_pad", attr("VALID")}, {"strides", attr(std::vector<int64_t>{2, 2})}});
  auto out = infer(valid, {x, random_f32({1, 1, 3, 3}, 6)});
  ASSERT_TRUE(out.ok());
  EXPECT_EQ((*out)[0].shape, (Shape{1, 1, 2, 2}));
  // Explicit pads together with auto_pad are ambiguous.
  ir::Node both = make_node("Conv", {{"auto_pad", attr("SAME_UPPER")}, {"pads", attr(std::vector<int64_t>{1, 1, 1, 1})}});
  expect_error(infer(both, {x, w}), StatusCode::kInvalidArgument);
  ir::Node bad = make_node("Conv", {{"auto_pad", attr("SAME")}});
  expect_error(infer(bad, {x, w}), StatusCode::kInvalidArgument);
}

TEST(OpsConvTest, OneDimensional) {
  const Tensor x = random_f32({1, 2, 6}, 7);
  const Tensor w = random_f32({2, 2, 3}, 8);
  ir::Node n = make_node("Conv", {{"pads", attr(std::vector<int64_t>{1, 1})}});
  auto out = run(n, {x, w});
  ASSERT_TRUE(out.ok()) << out.status().to_string();
  ASSERT_EQ((*out)[0].shape(), (Shape{1, 2, 6}));
  const Tensor x4 = x.reshaped({1, 2, 1, 6}).value();
  const Tensor w4 = w.reshaped({2, 2, 1, 3}).value();
  expect_near(floats((*out)[0]), plain_conv(x4, w4, nullptr, {1, 1, 1, 1, 1, 0, 1, 0, 1}, {1, 2, 1, 6}), 1e-5f);
}

TEST(OpsConvTest, HostileAttributesAndShapes) {
  const Tensor x = random_f32({1, 4, 4, 4}, 9);
  const Tensor w = random_f32({2, 4, 3, 3}, 10);
  auto conv = [&](std::map<std::string, ir::Attribute> attrs, const Tensor& xx, const Tensor& ww) {
    return infer(make_node("Conv", std::move(attrs)), {xx, ww});
  };
  // Kernel larger than the (unpadded) input.
  expect_error(conv({}, random_f32({1, 4, 2, 2}, 1), w), StatusCode::kInvalidArgument);
  expect_error(conv({{"pads", attr(std::vector<int64_t>{-1, 0, 0, 0})}}, x, w), StatusCode::kInvalidArgument);
  expect_error(conv({{"pads", attr(std::vector<int64_t>{1, 1})}}, x, w), StatusCode::kInvalidArgument);
  expect_error(conv({{"strides", attr(std::vector<int64_t>{0, 1})}}, x, w), StatusCode::kInvalidArgument);
  expect_error(conv({{"strides", attr(std::vector<int64_t>{-2, 1})}}, x, w), StatusCode::kInvalidArgument);
  expect_error(conv({{"strides", attr(std::vector<float>{1.f, 1.f})}}, x, w), StatusCode::kInvalidArgument);
  expect_error(conv({{"strides", attr(int64_t{1})}}, x, w), StatusCode::kInvalidArgument);
  expect_error(conv({{"dilations", attr(std::vector<int64_t>{0, 1})}}, x, w), StatusCode::kInvalidArgument);
  expect_error(conv({{"group", attr(int64_t{3})}}, x, random_f32({3, 1, 3, 3}, 1)), StatusCode::kInvalidArgument);
  expect_error(conv({{"group", attr(int64_t{0})}}, x, w), StatusCode::kInvalidArgument);
  expect_error(conv({{"group", attr(int64_t{2})}}, x, w), StatusCode::kInvalidArgument);  // W needs C/group = 2
  expect_error(conv({{"kernel_shape", attr(std::vector<int64_t>{2, 2})}}, x, w), StatusCode::kInvalidArgument);
  expect_error(conv({}, x, random_f32({2, 4, 3}, 1)), StatusCode::kInvalidArgument);  // rank mismatch
  expect_error(conv({}, random_f32({4, 4}, 1), random_f32({2, 4}, 1)), StatusCode::kInvalidArgument);
  expect_error(conv({}, random_f32({1, 1, 2, 2, 2}, 1), random_f32({1, 1, 1, 1, 1}, 1)), StatusCode::kUnimplemented);
  // Pads that overflow int64, and an output whose element count overflows.
  expect_error(conv({{"pads", attr(std::vector<int64_t>{kInt64Max, 0, kInt64Max, 0})}}, x, w), StatusCode::kInvalidArgument);
  expect_error(conv({{"dilations", attr(std::vector<int64_t>{kInt64Max, 1})}}, x, w), StatusCode::kInvalidArgument);
  const int64_t big = int64_t{1} << 40;
  auto huge = conv({{"pads", attr(std::vector<int64_t>{big, big, big, big})}}, x, w);
  ASSERT_FALSE(huge.ok());
  EXPECT_NE(huge.status().message().find("node 'n'"), std::string::npos);
  // Bias of the wrong length; integer input.
  expect_error(infer(make_node("Conv"), {x, w, random_f32({3}, 1)}), StatusCode::kInvalidArgument);
  expect_error(infer(make_node("Conv"), {i64({1, 1, 1, 1}, {1}), random_f32({1, 1, 1, 1}, 1)}), StatusCode::kUnimplemented);
}

// ---- pooling ------------------------------------------------------------------------------------

Tensor iota_f32(Shape shape, float start = 0.f) {
  Tensor t = Tensor::zeros(DType::kFloat32, std::move(shape)).value();
  for (int64_t i = 0; i < t.numel(); ++i) t.as<float>()[i] = start + static_cast<float>(i);
  return t;
}

TEST(OpsPoolTest, MaxPool) {
  ir::Node n = make_node("MaxPool", {{"kernel_shape", attr(std::vector<int64_t>{2, 2})}, {"strides", attr(std::vector<int64_t>{2, 2})}});
  auto out = run(n, {iota_f32({1, 1, 4, 4})});
  ASSERT_TRUE(out.ok()) << out.status().to_string();
  EXPECT_EQ((*out)[0].shape(), (Shape{1, 1, 2, 2}));
  expect_near(floats((*out)[0]), {5, 7, 13, 15});

  // ceil_mode adds a last partial window.
  n.attrs["ceil_mode"] = attr(int64_t{1});
  auto ceil = run(n, {iota_f32({1, 1, 5, 5})});
  ASSERT_TRUE(ceil.ok());
  EXPECT_EQ((*ceil)[0].shape(), (Shape{1, 1, 3, 3}));
  expect_near(floats((*ceil)[0]), {6, 8, 9, 16, 18, 19, 21, 23, 24});

  // ... but not one that would start in the right padding (PyTorch / ONNX Runtime rule).
  ir::Node edge = make_node("MaxPool", {{"kernel_shape", attr(std::vector<int64_t>{1, 2})},
                                        {"strides", attr(std::vector<int64_t>{1, 3})},
                                        {"pads", attr(std::vector<int64_t>{0, 0, 0, 1})},
                                        {"ceil_mode", attr(int64_t{1})}});
  auto e = infer(edge, {iota_f32({1, 1, 1, 5})});
  ASSERT_TRUE(e.ok());
  EXPECT_EQ((*e)[0].shape, (Shape{1, 1, 1, 2}));

  // Padding never wins a max (even over negative values).
  ir::Node padded = make_node("MaxPool", {{"kernel_shape", attr(std::vector<int64_t>{2, 2})},
                                          {"pads", attr(std::vector<int64_t>{1, 1, 1, 1})},
                                          {"strides", attr(std::vector<int64_t>{2, 2})}});
  auto p = run(padded, {iota_f32({1, 1, 2, 2}, -10.f)});
  ASSERT_TRUE(p.ok());
  expect_near(floats((*p)[0]), {-10, -9, -8, -7});

  // 1-D with dilation: windows {0,2}, {1,3}, {2,4}.
  ir::Node d1 = make_node("MaxPool", {{"kernel_shape", attr(std::vector<int64_t>{2})}, {"dilations", attr(std::vector<int64_t>{2})}});
  auto q = run(d1, {f32({1, 1, 5}, {5, 1, 0, 7, 2})});
  ASSERT_TRUE(q.ok());
  expect_near(floats((*q)[0]), {5, 7, 2});
}

TEST(OpsPoolTest, AveragePoolCountIncludePad) {
  const Tensor x = iota_f32({1, 1, 3, 3}, 1.f);
  for (int64_t include : {0, 1}) {
    ir::Node n = make_node("AveragePool", {{"kernel_shape", attr(std::vector<int64_t>{2, 2})},
                                           {"strides", attr(std::vector<int64_t>{2, 2})},
                                           {"pads", attr(std::vector<int64_t>{1, 1, 1, 1})},
                                           {"count_include_pad", attr(include)}});
    auto out = run(n, {x});
    ASSERT_TRUE(out.ok()) << out.status().to_string();
    if (include == 0) {
      expect_near(floats((*out)[0]), {1.f, 2.5f, 5.5f, 7.f});
    } else {
      expect_near(floats((*out)[0]), {0.25f, 1.25f, 2.75f, 7.f});
    }
  }
  auto g = run(make_node("GlobalAveragePool"), {iota_f32({1, 2, 2, 2})});
  ASSERT_TRUE(g.ok());
  EXPECT_EQ((*g)[0].shape(), (Shape{1, 2, 1, 1}));
  expect_near(floats((*g)[0]), {1.5f, 5.5f});
}

TEST(OpsPoolTest, Hostile) {
  const Tensor x = iota_f32({1, 1, 4, 4});
  auto pool = [&](const char* op, std::map<std::string, ir::Attribute> attrs, int outputs = 1) {
    return infer(make_node(op, std::move(attrs), outputs), {x});
  };
  const auto k2 = attr(std::vector<int64_t>{2, 2});
  expect_error(pool("MaxPool", {}), StatusCode::kInvalidArgument);  // kernel_shape missing
  expect_error(pool("MaxPool", {{"kernel_shape", attr(std::vector<int64_t>{0, 2})}}), StatusCode::kInvalidArgument);
  expect_error(pool("MaxPool", {{"kernel_shape", attr(std::vector<int64_t>{5, 5})}}), StatusCode::kInvalidArgument);
  expect_error(pool("MaxPool", {{"kernel_shape", attr(std::vector<int64_t>{2})}}), StatusCode::kInvalidArgument);
  expect_error(pool("MaxPool", {{"kernel_shape", k2}, {"pads", attr(std::vector<int64_t>{2, 0, 0, 0})}}), StatusCode::kInvalidArgument);
  expect_error(pool("MaxPool", {{"kernel_shape", k2}, {"strides", attr(std::vector<int64_t>{0, 0})}}), StatusCode::kInvalidArgument);
  expect_error(pool("MaxPool", {{"kernel_shape", k2}, {"ceil_mode", attr(int64_t{2})}}), StatusCode::kInvalidArgument);
  expect_error(pool("MaxPool", {{"kernel_shape", k2}, {"storage_order", attr(int64_t{1})}}), StatusCode::kUnimplemented);
  expect_error(pool("MaxPool", {{"kernel_shape", k2}}, 2), StatusCode::kUnimplemented);  // Indices
  expect_error(pool("AveragePool", {{"kernel_shape", k2}, {"count_include_pad", attr(int64_t{7})}}), StatusCode::kInvalidArgument);
  expect_error(infer(make_node("GlobalAveragePool"), {f32({2, 2}, {1, 2, 3, 4})}), StatusCode::kInvalidArgument);

  // An absent Indices output slot is fine.
  ir::Node n = make_node("MaxPool", {{"kernel_shape", k2}}, 2);
  n.outputs[1] = ir::kNoValue;
  EXPECT_TRUE(run(n, {x}).ok());
}

// ---- BatchNormalization -------------------------------------------------------------------------

TEST(OpsBatchNormTest, Inference) {
  ir::Node n = make_node("BatchNormalization", {{"epsilon", attr(0.f)}});
  const std::vector<Tensor> in = {f32({1, 2, 1, 2}, {1, 2, 3, 4}), f32({2}, {1, 2}), f32({2}, {0, 1}), f32({2}, {1, 2}),
                                  f32({2}, {4, 1})};
  auto out = run(n, in);
  ASSERT_TRUE(out.ok()) << out.status().to_string();
  expect_near(floats((*out)[0]), {0.f, 0.5f, 3.f, 5.f});

  // Rank 2 input and a relu post-op.
  n.post_ops = {{ir::PostOp::Kind::kRelu}};
  auto r2 = run(n, {f32({2, 2}, {0, 1, 3, 1}), in[1], in[2], in[3], in[4]});
  ASSERT_TRUE(r2.ok());
  expect_near(floats((*r2)[0]), {0.f, 0.f, 1.f, 0.f});
}

TEST(OpsBatchNormTest, Hostile) {
  const Tensor c2 = f32({2}, {1, 1});
  const Tensor x = f32({1, 2, 1, 1}, {1, 2});
  expect_error(infer(make_node("BatchNormalization"), {x, f32({3}, {1, 1, 1}), c2, c2, c2}), StatusCode::kInvalidArgument);
  expect_error(infer(make_node("BatchNormalization"), {f32({2}, {1, 2}), c2, c2, c2, c2}), StatusCode::kInvalidArgument);
  expect_error(infer(make_node("BatchNormalization", {{"training_mode", attr(int64_t{1})}}), {x, c2, c2, c2, c2}),
               StatusCode::kUnimplemented);
  expect_error(infer(make_node("BatchNormalization", {}, 3), {x, c2, c2, c2, c2}), StatusCode::kUnimplemented);
  expect_error(infer(make_node("BatchNormalization", {{"epsilon", attr(int64_t{1})}}), {x, c2, c2, c2, c2}),
               StatusCode::kInvalidArgument);
}

// ---- Gemm, MatMul -------------------------------------------------------------------------------

std::vector<float> plain_matmul(const float* a, const float* b, int64_t m, int64_t k, int64_t n) {
  std::vector<float> y(static_cast<size_t>(m * n), 0.f);
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t j = 0; j < n; ++j) {
      for (int64_t kk = 0; kk < k; ++kk) y[static_cast<size_t>(i * n + j)] += a[i * k + kk] * b[kk * n + j];
    }
  }
  return y;
}

TEST(OpsGemmTest, TransposesAlphaBetaAndBroadcastC) {
  const Tensor a = f32({2, 3}, {1, 2, 3, 4, 5, 6});
  const Tensor at = f32({3, 2}, {1, 4, 2, 5, 3, 6});
  const Tensor b = f32({3, 2}, {1, -1, 0, 2, 1, 1});
  const Tensor bt = f32({2, 3}, {1, 0, 1, -1, 2, 1});
  const std::vector<float> ab = plain_matmul(a.as<float>(), b.as<float>(), 2, 3, 2);  // {4, 6, 10, 12}
  auto plain = run(make_node("Gemm"), {a, b});
  ASSERT_TRUE(plain.ok()) << plain.status().to_string();
  expect_near(floats((*plain)[0]), ab);

  ir::Node n = make_node("Gemm", {{"transA", attr(int64_t{1})}, {"transB", attr(int64_t{1})}, {"alpha", attr(2.f)}, {"beta", attr(0.5f)}});
  auto out = run(n, {at, bt, f32({2}, {10, 20})});
  ASSERT_TRUE(out.ok()) << out.status().to_string();
  expect_near(floats((*out)[0]), {2 * ab[0] + 5, 2 * ab[1] + 10, 2 * ab[2] + 5, 2 * ab[3] + 10});

  auto col = run(make_node("Gemm"), {a, b, f32({2, 1}, {1, 2})});
  ASSERT_TRUE(col.ok());
  expect_near(floats((*col)[0]), {ab[0] + 1, ab[1] + 1, ab[2] + 2, ab[3] + 2});
}

TEST(OpsGemmTest, Hostile) {
  const Tensor a = f32({2, 3}, {1, 2, 3, 4, 5, 6});
  expect_error(infer(make_node("Gemm"), {a, a}), StatusCode::kInvalidArgument);
  expect_error(infer(make_node("Gemm"), {a, f32({3, 2}, {0, 0, 0, 0, 0, 0}), f32({3}, {0, 0, 0})}), StatusCode::kInvalidArgument);
  expect_error(infer(make_node("Gemm"), {f32({1, 2, 3}, {1, 2, 3, 4, 5, 6}), a}), StatusCode::kInvalidArgument);
  expect_error(infer(make_node("Gemm", {{"transA", attr(int64_t{2})}}), {a, a}), StatusCode::kInvalidArgument);
  expect_error(infer(make_node("Gemm", {{"alpha", attr("x")}}), {a, f32({3, 1}, {0, 0, 0})}), StatusCode::kInvalidArgument);
}

TEST(OpsMatMulTest, BatchedBroadcastAndVectors) {
  const Tensor a = random_f32({2, 1, 2, 3}, 11);
  const Tensor b = random_f32({3, 3, 2}, 12);
  auto out = run(make_node("MatMul"), {a, b});
  ASSERT_TRUE(out.ok()) << out.status().to_string();
  ASSERT_EQ((*out)[0].shape(), (Shape{2, 3, 2, 2}));
  const std::vector<float> all = floats((*out)[0]);
  for (int64_t i = 0; i < 2; ++i) {
    for (int64_t j = 0; j < 3; ++j) {
      const std::vector<float> want = plain_matmul(a.as<float>() + i * 6, b.as<float>() + j * 6, 2, 3, 2);
      const std::vector<float> got(all.begin() + (i * 3 + j) * 4, all.begin() + (i * 3 + j + 1) * 4);
      expect_near(got, want);
    }
  }
  const Tensor v = f32({3}, {1, 2, 3});
  const Tensor m = f32({3, 2}, {1, 0, 0, 1, 1, 1});
  auto vm = run(make_node("MatMul"), {v, m});
  ASSERT_TRUE(vm.ok());
  EXPECT_EQ((*vm)[0].shape(), (Shape{2}));
  expect_near(floats((*vm)[0]), {4, 5});
  auto mv = run(make_node("MatMul"), {f32({2, 3}, {1, 0, 1, 0, 1, 0}), v});
  ASSERT_TRUE(mv.ok());
  EXPECT_EQ((*mv)[0].shape(), (Shape{2}));
  expect_near(floats((*mv)[0]), {4, 2});
  auto vv = run(make_node("MatMul"), {v, v});
  ASSERT_TRUE(vv.ok());
  EXPECT_EQ((*vv)[0].shape(), (Shape{}));
  expect_near(floats((*vv)[0]), {14});
}

TEST(OpsMatMulTest, Hostile) {
  expect_error(infer(make_node("MatMul"), {random_f32({2, 3}, 1), random_f32({2, 3}, 1)}), StatusCode::kInvalidArgument);
  expect_error(infer(make_node("MatMul"), {random_f32({2, 2, 3}, 1), random_f32({3, 3, 2}, 1)}), StatusCode::kInvalidArgument);
  expect_error(infer(make_node("MatMul"), {f32({}, {1}), random_f32({1, 1}, 1)}), StatusCode::kInvalidArgument);
  expect_error(infer(make_node("MatMul"), {i64({1, 1}, {1}), i64({1, 1}, {1})}), StatusCode::kUnimplemented);
}

TEST(OpsMatMulTest, FusedScaleBiasAndPostOps) {
  const Tensor a = random_f32({2, 3, 4}, 21);
  const Tensor b = random_f32({4, 5}, 22);
  const Tensor bias = random_f32({5}, 23);
  auto plain = run(make_node("MatMul"), {a, b});
  ASSERT_TRUE(plain.ok());
  ir::Node n = make_node("FusedMatMul", {{"alpha", ir::Attribute{0.25f}}});
  n.post_ops.push_back(ir::PostOp{ir::PostOp::Kind::kRelu});
  auto fused = run(n, {a, b, bias});
  ASSERT_TRUE(fused.ok()) << fused.status().to_string();
  ASSERT_EQ((*fused)[0].shape(), (Shape{2, 3, 5}));
  std::vector<float> want = floats((*plain)[0]);
  for (size_t i = 0; i < want.size(); ++i) want[i] = std::max(0.f, 0.25f * want[i] + bias.as<float>()[i % 5]);
  expect_near(floats((*fused)[0]), want);
  // Without a bias it is a scaled MatMul.
  auto scaled = run(make_node("FusedMatMul", {{"alpha", ir::Attribute{2.f}}}), {a, b});
  ASSERT_TRUE(scaled.ok());
  want = floats((*plain)[0]);
  for (float& v : want) v *= 2.f;
  expect_near(floats((*scaled)[0]), want);
}

TEST(OpsMatMulTest, FusedHostile) {
  // A bias that would widen the output, or of the wrong dtype.
  expect_error(infer(make_node("FusedMatMul"), {random_f32({2, 3}, 1), random_f32({3, 4}, 1), random_f32({3, 4}, 1)}),
               StatusCode::kInvalidArgument);
  expect_error(infer(make_node("FusedMatMul"), {random_f32({2, 3}, 1), random_f32({3, 4}, 1), i64({4}, {1, 2, 3, 4})}),
               StatusCode::kUnimplemented);
  expect_error(infer(make_node("FusedMatMul", {{"alpha", ir::Attribute{int64_t{2}}}}), {random_f32({2, 3}, 1), random_f32({3, 4}, 1)}),
               StatusCode::kInvalidArgument);
}

// ---- Softmax, LayerNormalization, Gelu ----------------------------------------------------------

std::vector<float> softmax_of(std::vector<float> v) {
  float mx = *std::max_element(v.begin(), v.end());
  double sum = 0;
  for (float& x : v) sum += std::exp(x - mx);
  for (float& x : v) x = static_cast<float>(std::exp(x - mx) / sum);
  return v;
}

TEST(OpsSoftmaxTest, AxisSemanticsByOpset) {
  const Tensor x = f32({2, 3}, {1, 2, 3, -1, 0, 5});
  auto out = run(make_node("Softmax"), {x}, 13);
  ASSERT_TRUE(out.ok()) << out.status().to_string();
  std::vector<float> want = softmax_of({1, 2, 3});
  for (float v : softmax_of({-1, 0, 5})) want.push_back(v);
  expect_near(floats((*out)[0]), want);

  auto axis0 = run(make_node("Softmax", {{"axis", attr(int64_t{0})}}), {x}, 13);
  ASSERT_TRUE(axis0.ok());
  const std::vector<float> c0 = softmax_of({1, -1});
  EXPECT_NEAR(floats((*axis0)[0])[0], c0[0], 1e-6f);
  EXPECT_NEAR(floats((*axis0)[0])[3], c0[1], 1e-6f);

  // Opset 11: axis defaults to 1 and the input is flattened to [2, 4] around it.
  const Tensor x3 = f32({2, 2, 2}, {1, 2, 3, 4, 0, 0, 0, 0});
  auto flat = run(make_node("Softmax"), {x3}, 11);
  ASSERT_TRUE(flat.ok());
  std::vector<float> want_flat = softmax_of({1, 2, 3, 4});
  for (int i = 0; i < 4; ++i) want_flat.push_back(0.25f);
  expect_near(floats((*flat)[0]), want_flat);
  // Opset 13 with axis=1 normalizes only along dim 1.
  auto per_axis = run(make_node("Softmax", {{"axis", attr(int64_t{1})}}), {x3}, 13);
  ASSERT_TRUE(per_axis.ok());
  EXPECT_NEAR(floats((*per_axis)[0])[0] + floats((*per_axis)[0])[2], 1.f, 1e-6f);

  expect_error(infer(make_node("Softmax", {{"axis", attr(int64_t{2})}}), {x}, 13), StatusCode::kInvalidArgument);
  expect_error(infer(make_node("Softmax", {{"axis", attr(int64_t{-3})}}), {x}, 11), StatusCode::kInvalidArgument);
}

TEST(OpsLayerNormTest, NormalizesTrailingAxes) {
  const Tensor x = f32({2, 4}, {1, 2, 3, 4, -1, 0, 1, 6});
  const Tensor scale = f32({4}, {1, 2, 1, 0.5f});
  const Tensor bias = f32({4}, {0, 1, 0, -1});
  auto out = run(make_node("LayerNormalization", {{"epsilon", attr(1e-3f)}}), {x, scale, bias});
  ASSERT_TRUE(out.ok()) << out.status().to_string();
  std::vector<float> want;
  for (int r = 0; r < 2; ++r) {
    const float* row = x.as<float>() + r * 4;
    double mean = (row[0] + row[1] + row[2] + row[3]) / 4.0;
    double var = 0;
    for (int i = 0; i < 4; ++i) var += (row[i] - mean) * (row[i] - mean) / 4.0;
    for (int i = 0; i < 4; ++i) {
      want.push_back(static_cast<float>((row[i] - mean) / std::sqrt(var + 1e-3) * scale.as<float>()[i] + bias.as<float>()[i]));
    }
  }
  expect_near(floats((*out)[0]), want, 1e-5f);

  // axis=0 normalizes everything; no bias.
  auto all = run(make_node("LayerNormalization", {{"axis", attr(int64_t{0})}}), {x, f32({2, 4}, {1, 1, 1, 1, 1, 1, 1, 1})});
  ASSERT_TRUE(all.ok()) << all.status().to_string();
}

TEST(OpsLayerNormTest, Hostile) {
  const Tensor x = f32({2, 4}, {1, 2, 3, 4, -1, 0, 1, 6});
  const Tensor scale = f32({4}, {1, 1, 1, 1});
  expect_error(infer(make_node("LayerNormalization", {}, 2), {x, scale}), StatusCode::kUnimplemented);
  ir::Node skip_stats = make_node("LayerNormalization", {}, 3);
  skip_stats.outputs[1] = skip_stats.outputs[2] = ir::kNoValue;
  EXPECT_TRUE(run(skip_stats, {x, scale}).ok());
  expect_error(infer(make_node("LayerNormalization"), {x, f32({3}, {1, 1, 1})}), StatusCode::kInvalidArgument);
  expect_error(infer(make_node("LayerNormalization", {{"axis", attr(int64_t{2})}}), {x, scale}), StatusCode::kInvalidArgument);
  expect_error(infer(make_node("LayerNormalization", {{"stash_type", attr(int64_t{0})}}), {x, scale}), StatusCode::kUnimplemented);
  expect_error(infer(make_node("LayerNormalization"), {x, scale}, 16), StatusCode::kUnimplemented);
}

TEST(OpsGeluTest, ErfAndTanh) {
  const Tensor x = f32({3}, {-1, 0, 2});
  auto erf = run(make_node("Gelu"), {x});
  ASSERT_TRUE(erf.ok());
  auto gelu = [](double v) { return static_cast<float>(0.5 * v * (1 + std::erf(v / std::sqrt(2.0)))); };
  expect_near(floats((*erf)[0]), {gelu(-1), 0.f, gelu(2)});
  auto tanh = run(make_node("Gelu", {{"approximate", attr("tanh")}}), {x});
  ASSERT_TRUE(tanh.ok());
  auto gelu_tanh = [](double v) {
    return static_cast<float>(0.5 * v * (1 + std::tanh(std::sqrt(2 / M_PI) * (v + 0.044715 * v * v * v))));
  };
  expect_near(floats((*tanh)[0]), {gelu_tanh(-1), 0.f, gelu_tanh(2)});
  expect_error(infer(make_node("Gelu", {{"approximate", attr("fast")}}), {x}), StatusCode::kInvalidArgument);
}

// ---- elementwise --------------------------------------------------------------------------------

std::vector<float> unary(const char* op, std::vector<float> in, std::map<std::string, ir::Attribute> attrs = {}) {
  auto out = run(make_node(op, std::move(attrs)), {f32({static_cast<int64_t>(in.size())}, in)});
  EXPECT_TRUE(out.ok()) << op << ": " << out.status().to_string();
  return out.ok() ? floats((*out)[0]) : std::vector<float>{};
}

TEST(OpsElementwiseTest, Unary) {
  expect_near(unary("Relu", {-1, 0, 2}), {0, 0, 2});
  expect_near(unary("Sigmoid", {0, 100, -100}), {0.5f, 1.f, 0.f});
  expect_near(unary("HardSigmoid", {0, 10, -10, 1}), {0.5f, 1.f, 0.f, 0.7f});
  expect_near(unary("HardSigmoid", {1}, {{"alpha", attr(0.5f)}, {"beta", attr(0.f)}}), {0.5f});
  expect_near(unary("HardSwish", {-4, 0, 1, 4}), {0.f, 0.f, 1.f * (1.f / 6 + 0.5f), 4.f});
  expect_near(unary("Tanh", {0, 1}), {0.f, std::tanh(1.f)});
  expect_near(unary("Erf", {0, 1}), {0.f, std::erf(1.f)});
  expect_near(unary("Sqrt", {4, 2}), {2.f, std::sqrt(2.f)});
  expect_near(unary("Exp", {0, 1}), {1.f, std::exp(1.f)});
  expect_near(unary("Neg", {1, -2}), {-1, 2});
  expect_near(unary("Reciprocal", {2, -4}), {0.5f, -0.25f});
  expect_near(unary("Abs", {-3, 2}), {3, 2});
  expect_near(unary("Identity", {1, 2}), {1, 2});

  auto neg = run(make_node("Neg"), {i64({2}, {5, kInt64Min})});
  ASSERT_TRUE(neg.ok());
  EXPECT_EQ(values<int64_t>((*neg)[0]), (std::vector<int64_t>{-5, kInt64Min}));  // wraps, no UB
  auto abs = run(make_node("Abs"), {i32({2}, {-7, 7})});
  ASSERT_TRUE(abs.ok());
  EXPECT_EQ(values<int32_t>((*abs)[0]), (std::vector<int32_t>{7, 7}));

  expect_error(infer(make_node("Sigmoid"), {i64({1}, {1})}), StatusCode::kUnimplemented);
  expect_error(infer(make_node("HardSigmoid", {{"alpha", attr("x")}}), {f32({1}, {1})}), StatusCode::kInvalidArgument);
}

TEST(OpsElementwiseTest, Clip) {
  auto both = run(make_node("Clip"), {f32({4}, {-5, 0, 3, 9}), f32({}, {0}), f32({}, {6})});
  ASSERT_TRUE(both.ok()) << both.status().to_string();
  expect_near(floats((*both)[0]), {0, 0, 3, 6});
  auto max_only = run(make_node("Clip"), {f32({2}, {-5, 9}), Tensor(), f32({}, {1})});
  ASSERT_TRUE(max_only.ok());
  expect_near(floats((*max_only)[0]), {-5, 1});
  auto none = run(make_node("Clip"), {f32({2}, {-5, 9})}, 11);
  ASSERT_TRUE(none.ok());
  expect_near(floats((*none)[0]), {-5, 9});
  auto ints_clip = run(make_node("Clip"), {i64({3}, {-5, 2, 9}), i64({}, {0}), i64({}, {3})});
  ASSERT_TRUE(ints_clip.ok());
  EXPECT_EQ(values<int64_t>((*ints_clip)[0]), (std::vector<int64_t>{0, 2, 3}));

  expect_error(infer(make_node("Clip"), {f32({1}, {1}), f32({}, {0})}, 13, {1}), StatusCode::kUnimplemented);
  expect_error(infer(make_node("Clip"), {f32({1}, {1}), f32({2}, {0, 1})}), StatusCode::kInvalidArgument);
  expect_error(infer(make_node("Clip"), {f32({1}, {1}), i64({}, {0})}), StatusCode::kInvalidArgument);
}

TEST(OpsElementwiseTest, BinaryBroadcasting) {
  auto add = run(make_node("Add"), {f32({2, 3}, {1, 2, 3, 4, 5, 6}), f32({3}, {10, 20, 30})});
  ASSERT_TRUE(add.ok()) << add.status().to_string();
  expect_near(floats((*add)[0]), {11, 22, 33, 14, 25, 36});
  auto outer = run(make_node("Mul"), {f32({2, 1}, {1, 2}), f32({1, 3}, {1, 2, 3})});
  ASSERT_TRUE(outer.ok());
  EXPECT_EQ((*outer)[0].shape(), (Shape{2, 3}));
  expect_near(floats((*outer)[0]), {1, 2, 3, 2, 4, 6});
  auto scalar = run(make_node("Sub"), {f32({}, {10}), f32({2, 2}, {1, 2, 3, 4})});
  ASSERT_TRUE(scalar.ok());
  expect_near(floats((*scalar)[0]), {9, 8, 7, 6});
  auto div = run(make_node("Div"), {f32({2}, {1, 1}), f32({2}, {4, 0})});
  ASSERT_TRUE(div.ok());
  EXPECT_EQ(floats((*div)[0])[0], 0.25f);
  EXPECT_TRUE(std::isinf(floats((*div)[0])[1]));
  auto pow_f = run(make_node("Pow"), {f32({3}, {2, 3, 4}), f32({}, {0.5f})});
  ASSERT_TRUE(pow_f.ok());
  expect_near(floats((*pow_f)[0]), {std::sqrt(2.f), std::sqrt(3.f), 2.f});
  auto pow_i = run(make_node("Pow"), {f32({2}, {2, -3}), i64({2}, {3, 2})});
  ASSERT_TRUE(pow_i.ok());
  expect_near(floats((*pow_i)[0]), {8, 9});

  expect_error(infer(make_node("Add"), {f32({2, 3}, {1, 2, 3, 4, 5, 6}), f32({2}, {1, 2})}), StatusCode::kInvalidArgument);
  expect_error(infer(make_node("Add"), {f32({1}, {1}), i64({1}, {1})}), StatusCode::kInvalidArgument);
  expect_error(infer(make_node("Add"), {boolean({1}, {true}), boolean({1}, {true})}), StatusCode::kUnimplemented);
  expect_error(infer(make_node("Pow"), {i64({1}, {2}), i64({1}, {2})}), StatusCode::kUnimplemented);
}

TEST(OpsElementwiseTest, IntegerArithmetic) {
  const Tensor a = i64({4}, {7, -7, 6, kInt64Max});
  const Tensor b = i64({4}, {2, 2, -4, 1});
  auto add = run(make_node("Add"), {a, b});
  ASSERT_TRUE(add.ok());
  EXPECT_EQ(values<int64_t>((*add)[0]), (std::vector<int64_t>{9, -5, 2, kInt64Min}));  // wraps
  auto sub = run(make_node("Sub"), {a, b});
  ASSERT_TRUE(sub.ok());
  EXPECT_EQ(values<int64_t>((*sub)[0]), (std::vector<int64_t>{5, -9, 10, kInt64Max - 1}));
  auto mul = run(make_node("Mul"), {i32({2}, {3, -4}), i32({}, {5})});
  ASSERT_TRUE(mul.ok());
  EXPECT_EQ(values<int32_t>((*mul)[0]), (std::vector<int32_t>{15, -20}));
  auto div = run(make_node("Div"), {a, b});
  ASSERT_TRUE(div.ok());
  EXPECT_EQ(values<int64_t>((*div)[0]), (std::vector<int64_t>{3, -3, -1, kInt64Max}));  // truncates
  auto min_div = run(make_node("Div"), {i64({1}, {kInt64Min}), i64({1}, {-1})});
  ASSERT_TRUE(min_div.ok());  // no SIGFPE

  // Division by zero is an error at run time (the divisor is not known at compile time).
  ir::Node n = make_node("Div");
  ASSERT_TRUE(infer(n, {a, i64({4}, {1, 0, 1, 1})}, 17, {1}).ok());
  expect_error(run(n, {a, i64({4}, {1, 0, 1, 1})}, 17, {1}), StatusCode::kInvalidArgument);
}

TEST(OpsElementwiseTest, MinMaxComparisonsWhere) {
  auto mx = run(make_node("Max"), {f32({2, 1}, {1, 5}), f32({3}, {0, 2, 7}), f32({}, {3})});
  ASSERT_TRUE(mx.ok()) << mx.status().to_string();
  EXPECT_EQ((*mx)[0].shape(), (Shape{2, 3}));
  expect_near(floats((*mx)[0]), {3, 3, 7, 5, 5, 7});
  auto mn = run(make_node("Min"), {i64({3}, {4, -1, 9}), i64({1}, {2})});
  ASSERT_TRUE(mn.ok());
  EXPECT_EQ(values<int64_t>((*mn)[0]), (std::vector<int64_t>{2, -1, 2}));
  auto single = run(make_node("Max"), {f32({2}, {1, 2})});
  ASSERT_TRUE(single.ok());
  expect_near(floats((*single)[0]), {1, 2});
  expect_error(infer(make_node("Max"), {f32({2}, {1, 2}), i64({2}, {1, 2})}), StatusCode::kInvalidArgument);

  auto eq = run(make_node("Equal"), {i64({3}, {1, 2, 3}), i64({1}, {2})});
  ASSERT_TRUE(eq.ok());
  EXPECT_EQ((*eq)[0].dtype(), DType::kBool);
  EXPECT_EQ(bools((*eq)[0]), (std::vector<bool>{false, true, false}));
  auto eq_b = run(make_node("Equal"), {boolean({2}, {true, false}), boolean({2}, {true, true})});
  ASSERT_TRUE(eq_b.ok());
  EXPECT_EQ(bools((*eq_b)[0]), (std::vector<bool>{true, false}));
  auto lt = run(make_node("Less"), {f32({3}, {1, 2, 3}), f32({3}, {2, 2, 2})});
  ASSERT_TRUE(lt.ok());
  EXPECT_EQ(bools((*lt)[0]), (std::vector<bool>{true, false, false}));
  auto gt = run(make_node("Greater"), {i32({3}, {1, 2, 3}), i32({}, {2})});
  ASSERT_TRUE(gt.ok());
  EXPECT_EQ(bools((*gt)[0]), (std::vector<bool>{false, false, true}));
  auto nt = run(make_node("Not"), {boolean({2}, {true, false})});
  ASSERT_TRUE(nt.ok());
  EXPECT_EQ(bools((*nt)[0]), (std::vector<bool>{false, true}));
  expect_error(infer(make_node("Not"), {f32({1}, {1})}), StatusCode::kUnimplemented);

  auto where = run(make_node("Where"), {boolean({2, 1}, {true, false}), i64({3}, {1, 2, 3}), i64({}, {-1})});
  ASSERT_TRUE(where.ok()) << where.status().to_string();
  EXPECT_EQ((*where)[0].shape(), (Shape{2, 3}));
  EXPECT_EQ(values<int64_t>((*where)[0]), (std::vector<int64_t>{1, 2, 3, -1, -1, -1}));
  auto where_f = run(make_node("Where"), {boolean({2}, {false, true}), f32({2}, {1, 2}), f32({2}, {3, 4})});
  ASSERT_TRUE(where_f.ok());
  expect_near(floats((*where_f)[0]), {3, 2});
  expect_error(infer(make_node("Where"), {f32({1}, {1}), f32({1}, {1}), f32({1}, {1})}), StatusCode::kInvalidArgument);
  expect_error(infer(make_node("Where"), {boolean({1}, {true}), f32({1}, {1}), i64({1}, {1})}), StatusCode::kInvalidArgument);
  expect_error(infer(make_node("Where"), {boolean({2}, {true, true}), f32({3}, {1, 1, 1}), f32({1}, {1})}),
               StatusCode::kInvalidArgument);
}

TEST(OpsElementwiseTest, DropoutAndCast) {
  auto d = run(make_node("Dropout", {}, 2), {f32({3}, {1, 2, 3})}, 11);
  ASSERT_TRUE(d.ok()) << d.status().to_string();
  expect_near(floats((*d)[0]), {1, 2, 3});
  EXPECT_EQ(bools((*d)[1]), (std::vector<bool>{true, true, true}));
  auto d13 = run(make_node("Dropout"), {f32({1}, {4}), f32({}, {0.3f}), boolean({}, {false})}, 13);
  ASSERT_TRUE(d13.ok()) << d13.status().to_string();
  expect_error(infer(make_node("Dropout"), {f32({1}, {4}), f32({}, {0.3f}), boolean({}, {true})}, 13), StatusCode::kUnimplemented);
  expect_error(infer(make_node("Dropout"), {f32({1}, {4}), f32({}, {0.3f}), boolean({}, {false})}, 13, {2}),
               StatusCode::kUnimplemented);

  auto cast = [](const Tensor& x, int64_t to) { return run(make_node("Cast", {{"to", attr(to)}}), {x}); };
  auto to_i64 = cast(f32({5}, {1.7f, -1.7f, std::nanf(""), 1e30f, -1e30f}), 7);
  ASSERT_TRUE(to_i64.ok()) << to_i64.status().to_string();
  EXPECT_EQ(values<int64_t>((*to_i64)[0]), (std::vector<int64_t>{1, -1, 0, kInt64Max, kInt64Min}));
  auto to_i32 = cast(f32({2}, {3e9f, -3e9f}), 6);
  ASSERT_TRUE(to_i32.ok());
  EXPECT_EQ(values<int32_t>((*to_i32)[0]), (std::vector<int32_t>{INT32_MAX, INT32_MIN}));
  auto to_f = cast(i64({2}, {3, -4}), 1);
  ASSERT_TRUE(to_f.ok());
  expect_near(floats((*to_f)[0]), {3, -4});
  auto to_b = cast(f32({3}, {0, 0.5f, -2}), 9);
  ASSERT_TRUE(to_b.ok());
  EXPECT_EQ(bools((*to_b)[0]), (std::vector<bool>{false, true, true}));
  auto from_b = cast(boolean({2}, {true, false}), 1);
  ASSERT_TRUE(from_b.ok());
  expect_near(floats((*from_b)[0]), {1, 0});
  auto i32_to_i64 = cast(i32({1}, {-9}), 7);
  ASSERT_TRUE(i32_to_i64.ok());
  EXPECT_EQ(values<int64_t>((*i32_to_i64)[0]), (std::vector<int64_t>{-9}));
  expect_error(cast(f32({1}, {1}), 10), StatusCode::kUnimplemented);  // float16
  expect_error(cast(f32({1}, {1}), 8), StatusCode::kUnimplemented);   // string
  expect_error(cast(f32({1}, {1}), int64_t{1} << 40), StatusCode::kUnimplemented);
  expect_error(infer(make_node("Cast"), {f32({1}, {1})}), StatusCode::kInvalidArgument);  // 'to' missing
}

// ---- tensor ops ---------------------------------------------------------------------------------

TEST(OpsTensorTest, ConcatFlattenTranspose) {
  auto c = run(make_node("Concat", {{"axis", attr(int64_t{-1})}}), {i64({2, 1}, {1, 2}), i64({2, 2}, {3, 4, 5, 6}), i64({2, 0}, {})});
  ASSERT_TRUE(c.ok()) << c.status().to_string();
  EXPECT_EQ((*c)[0].shape(), (Shape{2, 3}));
  EXPECT_EQ(values<int64_t>((*c)[0]), (std::vector<int64_t>{1, 3, 4, 2, 5, 6}));
  expect_error(infer(make_node("Concat", {{"axis", attr(int64_t{0})}}), {i64({2, 1}, {1, 2}), i64({2, 2}, {3, 4, 5, 6})}),
               StatusCode::kInvalidArgument);
  expect_error(infer(make_node("Concat", {{"axis", attr(int64_t{2})}}), {i64({2}, {1, 2})}), StatusCode::kInvalidArgument);
  expect_error(infer(make_node("Concat"), {i64({2}, {1, 2})}), StatusCode::kInvalidArgument);
  expect_error(infer(make_node("Concat", {{"axis", attr("0")}}), {i64({2}, {1, 2})}), StatusCode::kInvalidArgument);
  expect_error(infer(make_node("Concat", {{"axis", attr(int64_t{0})}}), {i64({2}, {1, 2}), f32({1}, {1})}),
               StatusCode::kInvalidArgument);
  expect_error(infer(make_node("Concat", {{"axis", attr(int64_t{0})}}), {i64({2}, {1, 2}), i64({1, 2}, {1, 2})}),
               StatusCode::kInvalidArgument);

  auto f = infer(make_node("Flatten", {{"axis", attr(int64_t{2})}}), {random_f32({2, 3, 4, 5}, 1)});
  ASSERT_TRUE(f.ok());
  EXPECT_EQ((*f)[0].shape, (Shape{6, 20}));
  auto f0 = infer(make_node("Flatten", {{"axis", attr(int64_t{0})}}), {random_f32({2, 3}, 1)});
  ASSERT_TRUE(f0.ok());
  EXPECT_EQ((*f0)[0].shape, (Shape{1, 6}));
  expect_error(infer(make_node("Flatten", {{"axis", attr(int64_t{3})}}), {random_f32({2, 3}, 1)}), StatusCode::kInvalidArgument);

  auto t = run(make_node("Transpose"), {f32({2, 3}, {1, 2, 3, 4, 5, 6})});
  ASSERT_TRUE(t.ok());
  EXPECT_EQ((*t)[0].shape(), (Shape{3, 2}));
  expect_near(floats((*t)[0]), {1, 4, 2, 5, 3, 6});
  const Tensor x3 = iota_f32({2, 3, 4});
  auto t3 = run(make_node("Transpose", {{"perm", attr(std::vector<int64_t>{1, 2, 0})}}), {x3});
  ASSERT_TRUE(t3.ok());
  EXPECT_EQ((*t3)[0].shape(), (Shape{3, 4, 2}));
  for (int64_t i = 0; i < 3; ++i) {
    for (int64_t j = 0; j < 4; ++j) {
      for (int64_t k = 0; k < 2; ++k) EXPECT_EQ((*t3)[0].as<float>()[(i * 4 + j) * 2 + k], x3.as<float>()[(k * 3 + i) * 4 + j]);
    }
  }
  for (auto perm : {std::vector<int64_t>{0, 0, 1}, std::vector<int64_t>{0, 1}, std::vector<int64_t>{0, 1, 3},
                    std::vector<int64_t>{-1, 0, 1}}) {
    expect_error(infer(make_node("Transpose", {{"perm", attr(perm)}}), {x3}), StatusCode::kInvalidArgument);
  }
  expect_error(infer(make_node("Transpose", {{"perm", attr(std::vector<float>{0, 1, 2})}}), {x3}), StatusCode::kInvalidArgument);
}

TEST(OpsTensorTest, Reshape) {
  const Tensor x = iota_f32({2, 3, 4});
  auto shape_of = [&](std::vector<int64_t> s, std::map<std::string, ir::Attribute> attrs = {}) {
    return infer(make_node("Reshape", std::move(attrs)), {x, ints(std::move(s))});
  };
  auto r = shape_of({0, -1});
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_EQ((*r)[0].shape, (Shape{2, 12}));
  auto r2 = shape_of({-1, 4, 1});
  ASSERT_TRUE(r2.ok());
  EXPECT_EQ((*r2)[0].shape, (Shape{6, 4, 1}));
  auto run_r = run(make_node("Reshape"), {x, ints({4, 6})});
  ASSERT_TRUE(run_r.ok());
  EXPECT_EQ(floats((*run_r)[0]), floats(x));
  auto zero = infer(make_node("Reshape", {{"allowzero", attr(int64_t{1})}}), {Tensor::zeros(DType::kFloat32, {0, 3}).value(), ints({3, 0})});
  ASSERT_TRUE(zero.ok());
  EXPECT_EQ((*zero)[0].shape, (Shape{3, 0}));

  expect_error(shape_of({-1, -1}), StatusCode::kInvalidArgument);
  expect_error(shape_of({5, -1}), StatusCode::kInvalidArgument);
  expect_error(shape_of({2, 3, 5}), StatusCode::kInvalidArgument);
  expect_error(shape_of({-2, 12}), StatusCode::kInvalidArgument);
  expect_error(shape_of({0, 0, 0, 0}), StatusCode::kInvalidArgument);  // copies a dim the input lacks
  expect_error(shape_of({int64_t{1} << 40, int64_t{1} << 40}), StatusCode::kInvalidArgument);
  expect_error(shape_of({kInt64Max, kInt64Max, -1}), StatusCode::kInvalidArgument);
  expect_error(shape_of({1, 1, 1, 1, 1, 1, 1, 1, 2, 3, 4}), StatusCode::kInvalidArgument);
  expect_error(shape_of({0, -1}, {{"allowzero", attr(int64_t{1})}}), StatusCode::kInvalidArgument);
  expect_error(infer(make_node("Reshape"), {x, f32({2}, {2, 12})}), StatusCode::kInvalidArgument);
  expect_error(infer(make_node("Reshape"), {x, ints({2, 12})}, 17, {1}), StatusCode::kUnimplemented);
}

TEST(OpsTensorTest, Gather) {
  const Tensor data = f32({3, 2}, {1, 2, 3, 4, 5, 6});
  auto g0 = run(make_node("Gather"), {data, i64({2, 2}, {0, 2, -1, 1})});
  ASSERT_TRUE(g0.ok()) << g0.status().to_string();
  EXPECT_EQ((*g0)[0].shape(), (Shape{2, 2, 2}));
  expect_near(floats((*g0)[0]), {1, 2, 5, 6, 5, 6, 3, 4});
  auto g1 = run(make_node("Gather", {{"axis", attr(int64_t{1})}}), {data, i32({}, {-1})});
  ASSERT_TRUE(g1.ok());
  EXPECT_EQ((*g1)[0].shape(), (Shape{3}));
  expect_near(floats((*g1)[0]), {2, 4, 6});
  auto shape_gather = run(make_node("Gather"), {i64({4}, {1, 3, 224, 224}), i64({}, {0})});
  ASSERT_TRUE(shape_gather.ok());
  EXPECT_EQ(values<int64_t>((*shape_gather)[0]), (std::vector<int64_t>{1}));

  // Out-of-range indices: at compile time when constant, at run time otherwise.
  expect_error(infer(make_node("Gather"), {data, i64({1}, {3})}), StatusCode::kOutOfRange);
  expect_error(infer(make_node("Gather"), {data, i64({1}, {-4})}), StatusCode::kOutOfRange);
  ASSERT_TRUE(infer(make_node("Gather"), {data, i64({1}, {3})}, 17, {1}).ok());
  expect_error(run(make_node("Gather"), {data, i64({2}, {0, kInt64Max})}, 17, {1}), StatusCode::kOutOfRange);
  expect_error(run(make_node("Gather"), {data, i64({1}, {kInt64Min})}, 17, {1}), StatusCode::kOutOfRange);
  expect_error(infer(make_node("Gather", {{"axis", attr(int64_t{2})}}), {data, i64({1}, {0})}), StatusCode::kInvalidArgument);
  expect_error(infer(make_node("Gather"), {data, f32({1}, {0})}), StatusCode::kInvalidArgument);
  expect_error(infer(make_node("Gather"), {f32({}, {1}), i64({1}, {0})}), StatusCode::kInvalidArgument);
  // Output rank above the maximum.
  expect_error(infer(make_node("Gather"), {iota_f32({1, 1, 1, 1, 1}), Tensor::zeros(DType::kInt64, {1, 1, 1, 1, 1}).value()}),
               StatusCode::kOutOfRange);
}

TEST(OpsTensorTest, Slice) {
  const Tensor x = iota_f32({3, 4});
  auto slice = [&](std::vector<int64_t> starts, std::vector<int64_t> ends, std::vector<int64_t> axes, std::vector<int64_t> steps) {
    std::vector<Tensor> in = {x, ints(std::move(starts)), ints(std::move(ends))};
    in.push_back(axes.empty() ? Tensor() : ints(std::move(axes)));
    in.push_back(steps.empty() ? Tensor() : ints(std::move(steps)));
    return run(make_node("Slice"), in);
  };
  auto a = slice({1}, {kInt64Max}, {1}, {});
  ASSERT_TRUE(a.ok()) << a.status().to_string();
  EXPECT_EQ((*a)[0].shape(), (Shape{3, 3}));
  expect_near(floats((*a)[0]), {1, 2, 3, 5, 6, 7, 9, 10, 11});
  auto rev = slice({-1, -1}, {kInt64Min, kInt64Min}, {0, 1}, {-1, -2});
  ASSERT_TRUE(rev.ok()) << rev.status().to_string();
  EXPECT_EQ((*rev)[0].shape(), (Shape{3, 2}));
  expect_near(floats((*rev)[0]), {11, 9, 7, 5, 3, 1});
  auto clamped = slice({-100, 2}, {100, 3}, {}, {});
  ASSERT_TRUE(clamped.ok());
  EXPECT_EQ((*clamped)[0].shape(), (Shape{3, 1}));
  expect_near(floats((*clamped)[0]), {2, 6, 10});
  auto empty = slice({2}, {1}, {0}, {});
  ASSERT_TRUE(empty.ok());
  EXPECT_EQ((*empty)[0].shape(), (Shape{0, 4}));
  auto huge_step = slice({0}, {kInt64Max}, {-1}, {kInt64Max});
  ASSERT_TRUE(huge_step.ok());
  EXPECT_EQ((*huge_step)[0].shape(), (Shape{3, 1}));
  auto min_step = slice({kInt64Max}, {kInt64Min}, {1}, {kInt64Min});
  ASSERT_TRUE(min_step.ok()) << min_step.status().to_string();
  EXPECT_EQ((*min_step)[0].shape(), (Shape{3, 1}));
  expect_near(floats((*min_step)[0]), {3, 7, 11});
  auto i32_params = run(make_node("Slice"), {x, i32({1}, {1}), i32({1}, {2})});
  ASSERT_TRUE(i32_params.ok());
  EXPECT_EQ((*i32_params)[0].shape(), (Shape{1, 4}));

  expect_error(slice({0}, {1}, {0}, {0}), StatusCode::kInvalidArgument);
  expect_error(slice({0, 0}, {1, 1}, {0, 0}, {}), StatusCode::kInvalidArgument);
  expect_error(slice({0}, {1}, {2}, {}), StatusCode::kInvalidArgument);
  expect_error(slice({0, 0}, {1}, {}, {}), StatusCode::kInvalidArgument);
  expect_error(slice({0}, {1}, {0, 1}, {}), StatusCode::kInvalidArgument);
  expect_error(infer(make_node("Slice"), {x, ints({0}), ints({1})}, 17, {1}), StatusCode::kUnimplemented);
}

TEST(OpsTensorTest, Split) {
  const Tensor x = iota_f32({2, 6});
  auto s13 = run(make_node("Split", {{"axis", attr(int64_t{1})}}, 3), {x, ints({1, 2, 3})}, 13);
  ASSERT_TRUE(s13.ok()) << s13.status().to_string();
  EXPECT_EQ((*s13)[0].shape(), (Shape{2, 1}));
  EXPECT_EQ((*s13)[2].shape(), (Shape{2, 3}));
  expect_near(floats((*s13)[1]), {1, 2, 7, 8});
  expect_near(floats((*s13)[2]), {3, 4, 5, 9, 10, 11});
  auto even = run(make_node("Split", {{"axis", attr(int64_t{-1})}}, 2), {x}, 13);
  ASSERT_TRUE(even.ok());
  expect_near(floats((*even)[1]), {3, 4, 5, 9, 10, 11});
  auto s11 = run(make_node("Split", {{"split", attr(std::vector<int64_t>{1, 1})}}, 2), {x}, 11);
  ASSERT_TRUE(s11.ok());
  expect_near(floats((*s11)[1]), {6, 7, 8, 9, 10, 11});

  expect_error(infer(make_node("Split", {{"axis", attr(int64_t{1})}}, 4), {x}, 13), StatusCode::kInvalidArgument);
  expect_error(infer(make_node("Split", {{"axis", attr(int64_t{1})}}, 2), {x, ints({1, 2})}, 13), StatusCode::kInvalidArgument);
  expect_error(infer(make_node("Split", {{"axis", attr(int64_t{1})}}, 2), {x, ints({-1, 7})}, 13), StatusCode::kInvalidArgument);
  expect_error(infer(make_node("Split", {{"axis", attr(int64_t{1})}}, 2), {x, ints({6})}, 13), StatusCode::kInvalidArgument);
  expect_error(infer(make_node("Split", {{"axis", attr(int64_t{1})}}, 2), {x, ints({kInt64Max, kInt64Max})}, 13),
               StatusCode::kInvalidArgument);
  expect_error(infer(make_node("Split", {{"axis", attr(int64_t{2})}}, 2), {x}, 13), StatusCode::kInvalidArgument);
  expect_error(infer(make_node("Split", {}, 2), {x, ints({1, 1})}, 13, {1}), StatusCode::kUnimplemented);
}

TEST(OpsTensorTest, SqueezeUnsqueeze) {
  const Tensor x = iota_f32({1, 3, 1, 2});
  auto sq = infer(make_node("Squeeze"), {x, ints({0, -2})}, 13);
  ASSERT_TRUE(sq.ok()) << sq.status().to_string();
  EXPECT_EQ((*sq)[0].shape, (Shape{3, 2}));
  auto sq_all = run(make_node("Squeeze"), {x}, 13);
  ASSERT_TRUE(sq_all.ok());
  EXPECT_EQ((*sq_all)[0].shape(), (Shape{3, 2}));
  EXPECT_EQ(floats((*sq_all)[0]), floats(x));
  auto sq11 = infer(make_node("Squeeze", {{"axes", attr(std::vector<int64_t>{2})}}), {x}, 11);
  ASSERT_TRUE(sq11.ok());
  EXPECT_EQ((*sq11)[0].shape, (Shape{1, 3, 2}));
  expect_error(infer(make_node("Squeeze"), {x, ints({1})}, 13), StatusCode::kInvalidArgument);
  expect_error(infer(make_node("Squeeze"), {x, ints({4})}, 13), StatusCode::kInvalidArgument);
  expect_error(infer(make_node("Squeeze"), {x, ints({0, 0})}, 13), StatusCode::kInvalidArgument);

  auto un = run(make_node("Unsqueeze"), {i64({2}, {7, 8}), ints({0, -1})}, 13);
  ASSERT_TRUE(un.ok()) << un.status().to_string();
  EXPECT_EQ((*un)[0].shape(), (Shape{1, 2, 1}));
  EXPECT_EQ(values<int64_t>((*un)[0]), (std::vector<int64_t>{7, 8}));
  auto un_scalar = infer(make_node("Unsqueeze", {{"axes", attr(std::vector<int64_t>{0})}}), {i64({}, {7})}, 11);
  ASSERT_TRUE(un_scalar.ok());
  EXPECT_EQ((*un_scalar)[0].shape, (Shape{1}));
  expect_error(infer(make_node("Unsqueeze"), {x, ints({5})}, 13), StatusCode::kInvalidArgument);
  expect_error(infer(make_node("Unsqueeze"), {x, ints({1, 1})}, 13), StatusCode::kInvalidArgument);
  expect_error(infer(make_node("Unsqueeze"), {x, ints({0, 1, 2, 3, 4})}, 13), StatusCode::kInvalidArgument);  // rank 9
  expect_error(infer(make_node("Unsqueeze"), {x}, 11), StatusCode::kInvalidArgument);  // axes missing
  expect_error(infer(make_node("Unsqueeze"), {x, ints({0})}, 13, {1}), StatusCode::kUnimplemented);
}

TEST(OpsTensorTest, Pad) {
  const Tensor x = f32({2, 3}, {1, 2, 3, 4, 5, 6});
  auto pad = [&](std::vector<int64_t> pads, const char* mode, Tensor value = Tensor()) {
    return run(make_node("Pad", {{"mode", attr(mode)}}), {x, ints(std::move(pads)), value});
  };
  auto c = pad({0, 1, 1, 0}, "constant", f32({}, {9}));
  ASSERT_TRUE(c.ok()) << c.status().to_string();
  EXPECT_EQ((*c)[0].shape(), (Shape{3, 4}));
  expect_near(floats((*c)[0]), {9, 1, 2, 3, 9, 4, 5, 6, 9, 9, 9, 9});
  auto r = pad({0, 2, 0, 1}, "reflect");
  ASSERT_TRUE(r.ok());
  expect_near(floats((*r)[0]), {3, 2, 1, 2, 3, 2, 6, 5, 4, 5, 6, 5});
  auto e = pad({1, 1, 0, 0}, "edge");
  ASSERT_TRUE(e.ok());
  EXPECT_EQ((*e)[0].shape(), (Shape{3, 4}));
  expect_near(floats((*e)[0]), {1, 1, 2, 3, 1, 1, 2, 3, 4, 4, 5, 6});
  auto crop = pad({0, -1, -1, 1}, "constant");  // negative pads crop
  ASSERT_TRUE(crop.ok()) << crop.status().to_string();
  EXPECT_EQ((*crop)[0].shape(), (Shape{1, 3}));
  expect_near(floats((*crop)[0]), {2, 3, 0});
  auto ints_pad = run(make_node("Pad"), {i64({2}, {1, 2}), ints({1, 0}), i64({}, {-1})});
  ASSERT_TRUE(ints_pad.ok());
  EXPECT_EQ(values<int64_t>((*ints_pad)[0]), (std::vector<int64_t>{-1, 1, 2}));

  expect_error(pad({0, 3, 0, 0}, "reflect"), StatusCode::kInvalidArgument);
  expect_error(pad({0, -4, 0, 0}, "constant"), StatusCode::kInvalidArgument);
  expect_error(pad({0, kInt64Max, 0, kInt64Max}, "constant"), StatusCode::kInvalidArgument);
  expect_error(pad({0, 1}, "constant"), StatusCode::kInvalidArgument);
  expect_error(pad({0, 1, 0, 0}, "wrap"), StatusCode::kUnimplemented);
  expect_error(pad({0, 0, 0, 0}, "constant", i64({}, {1})), StatusCode::kInvalidArgument);
  expect_error(pad({int64_t{1} << 40, 0, 0, 0}, "constant"), StatusCode::kOutOfRange);
  expect_error(infer(make_node("Pad"), {x, ints({0, 0, 0, 0})}, 17, {1}), StatusCode::kUnimplemented);
}

TEST(OpsTensorTest, ShapeConstantExpandRangeTile) {
  const Tensor x = iota_f32({2, 3, 4});
  auto s = run(make_node("Shape"), {x});
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(values<int64_t>((*s)[0]), (std::vector<int64_t>{2, 3, 4}));
  auto s15 = run(make_node("Shape", {{"start", attr(int64_t{-2})}, {"end", attr(int64_t{100})}}), {x}, 15);
  ASSERT_TRUE(s15.ok());
  EXPECT_EQ(values<int64_t>((*s15)[0]), (std::vector<int64_t>{3, 4}));
  auto s_empty = run(make_node("Shape", {{"start", attr(int64_t{2})}, {"end", attr(int64_t{1})}}), {x}, 15);
  ASSERT_TRUE(s_empty.ok());
  EXPECT_EQ((*s_empty)[0].shape(), (Shape{0}));
  // Shape needs no data: only the input's shape.
  ir::Node shape_node = make_node("Shape");
  wire_inputs(shape_node, {x});
  Tensor out = Tensor::zeros(DType::kInt64, {3}).value();
  std::vector<ConstTensorView> in_views = {ConstTensorView{DType::kFloat32, {2, 3, 4}, nullptr}};
  std::vector<TensorView> out_views = {out.view()};
  ASSERT_TRUE(find_op("Shape", 17)->reference(shape_node, in_views, out_views).ok());
  EXPECT_EQ(values<int64_t>(out), (std::vector<int64_t>{2, 3, 4}));

  auto c1 = run(make_node("Constant", {{"value", attr(f32({2}, {1, 2}))}}), {});
  ASSERT_TRUE(c1.ok()) << c1.status().to_string();
  expect_near(floats((*c1)[0]), {1, 2});
  auto c2 = run(make_node("Constant", {{"value_ints", attr(std::vector<int64_t>{4, 5})}}), {});
  ASSERT_TRUE(c2.ok());
  EXPECT_EQ(values<int64_t>((*c2)[0]), (std::vector<int64_t>{4, 5}));
  auto c3 = run(make_node("Constant", {{"value_float", attr(2.5f)}}), {});
  ASSERT_TRUE(c3.ok());
  EXPECT_EQ((*c3)[0].shape(), (Shape{}));
  auto c4 = run(make_node("Constant", {{"value_int", attr(int64_t{-3})}}), {});
  ASSERT_TRUE(c4.ok());
  EXPECT_EQ(values<int64_t>((*c4)[0]), (std::vector<int64_t>{-3}));
  auto c5 = run(make_node("Constant", {{"value_floats", attr(std::vector<float>{1, 2, 3})}}), {});
  ASSERT_TRUE(c5.ok());
  EXPECT_EQ((*c5)[0].shape(), (Shape{3}));
  expect_error(infer(make_node("Constant"), {}), StatusCode::kInvalidArgument);
  expect_error(infer(make_node("Constant", {{"value_int", attr(int64_t{1})}, {"value_float", attr(1.f)}}), {}),
               StatusCode::kInvalidArgument);
  expect_error(infer(make_node("Constant", {{"value_int", attr(1.f)}}), {}), StatusCode::kInvalidArgument);
  expect_error(infer(make_node("Constant", {{"value_string", attr("s")}}), {}), StatusCode::kUnimplemented);

  auto cos = run(make_node("ConstantOfShape", {{"value", attr(i64({1}, {7}))}}), {ints({2, 2})});
  ASSERT_TRUE(cos.ok()) << cos.status().to_string();
  EXPECT_EQ(values<int64_t>((*cos)[0]), (std::vector<int64_t>{7, 7, 7, 7}));
  auto cos_default = run(make_node("ConstantOfShape"), {ints({3})});
  ASSERT_TRUE(cos_default.ok());
  expect_near(floats((*cos_default)[0]), {0, 0, 0});
  auto cos_scalar = run(make_node("ConstantOfShape"), {Tensor::zeros(DType::kInt64, {0}).value()});
  ASSERT_TRUE(cos_scalar.ok());
  EXPECT_EQ((*cos_scalar)[0].shape(), (Shape{}));
  expect_error(infer(make_node("ConstantOfShape"), {ints({2, -1})}), StatusCode::kInvalidArgument);
  expect_error(infer(make_node("ConstantOfShape"), {ints({int64_t{1} << 40, int64_t{1} << 40})}), StatusCode::kOutOfRange);
  expect_error(infer(make_node("ConstantOfShape", {{"value", attr(f32({2}, {1, 2}))}}), {ints({2})}), StatusCode::kInvalidArgument);

  auto ex = run(make_node("Expand"), {f32({3, 1}, {1, 2, 3}), ints({2, 1, 2})});
  ASSERT_TRUE(ex.ok()) << ex.status().to_string();
  EXPECT_EQ((*ex)[0].shape(), (Shape{2, 3, 2}));
  expect_near(floats((*ex)[0]), {1, 1, 2, 2, 3, 3, 1, 1, 2, 2, 3, 3});
  auto ex_keep = infer(make_node("Expand"), {f32({3, 4}, std::vector<float>(12, 0.f)), ints({1, 1})});
  ASSERT_TRUE(ex_keep.ok());
  EXPECT_EQ((*ex_keep)[0].shape, (Shape{3, 4}));  // bidirectional
  expect_error(infer(make_node("Expand"), {f32({3}, {1, 2, 3}), ints({2})}), StatusCode::kInvalidArgument);
  expect_error(infer(make_node("Expand"), {f32({1}, {1}), ints({int64_t{1} << 40, 4})}), StatusCode::kOutOfRange);

  auto rf = run(make_node("Range"), {f32({}, {1}), f32({}, {2}), f32({}, {0.25f})});
  ASSERT_TRUE(rf.ok()) << rf.status().to_string();
  expect_near(floats((*rf)[0]), {1, 1.25f, 1.5f, 1.75f});
  auto ri = run(make_node("Range"), {i64({}, {10}), i64({}, {3}), i64({}, {-3})});
  ASSERT_TRUE(ri.ok());
  EXPECT_EQ(values<int64_t>((*ri)[0]), (std::vector<int64_t>{10, 7, 4}));
  auto r_empty = run(make_node("Range"), {i32({}, {5}), i32({}, {1}), i32({}, {1})});
  ASSERT_TRUE(r_empty.ok());
  EXPECT_EQ((*r_empty)[0].shape(), (Shape{0}));
  expect_error(infer(make_node("Range"), {i64({}, {0}), i64({}, {5}), i64({}, {0})}), StatusCode::kInvalidArgument);
  expect_error(infer(make_node("Range"), {i64({}, {kInt64Min}), i64({}, {kInt64Max}), i64({}, {1})}), StatusCode::kInvalidArgument);
  expect_error(infer(make_node("Range"), {f32({}, {0}), f32({}, {INFINITY}), f32({}, {1})}), StatusCode::kInvalidArgument);
  expect_error(infer(make_node("Range"), {f32({}, {0}), i64({}, {5}), f32({}, {1})}), StatusCode::kInvalidArgument);
  expect_error(infer(make_node("Range"), {i64({}, {0}), i64({}, {5}), i64({}, {1})}, 17, {1}), StatusCode::kUnimplemented);

  auto tile = run(make_node("Tile"), {f32({2, 1}, {1, 2}), ints({2, 3})});
  ASSERT_TRUE(tile.ok()) << tile.status().to_string();
  EXPECT_EQ((*tile)[0].shape(), (Shape{4, 3}));
  expect_near(floats((*tile)[0]), {1, 1, 1, 2, 2, 2, 1, 1, 1, 2, 2, 2});
  expect_error(infer(make_node("Tile"), {f32({2, 1}, {1, 2}), ints({2})}), StatusCode::kInvalidArgument);
  expect_error(infer(make_node("Tile"), {f32({2, 1}, {1, 2}), ints({2, -1})}), StatusCode::kInvalidArgument);
  expect_error(infer(make_node("Tile"), {f32({2, 1}, {1, 2}), ints({kInt64Max, 2})}), StatusCode::kInvalidArgument);
  expect_error(infer(make_node("Tile"), {f32({2, 1}, {1, 2}), ints({int64_t{1} << 40, 1})}), StatusCode::kOutOfRange);
}

// ---- reductions ---------------------------------------------------------------------------------

TEST(OpsReduceTest, AxesKeepdimsAndKinds) {
  const Tensor x = f32({2, 3}, {1, 2, 3, 4, 5, 6});
  auto mean = run(make_node("ReduceMean", {{"axes", attr(std::vector<int64_t>{1})}}), {x});
  ASSERT_TRUE(mean.ok()) << mean.status().to_string();
  EXPECT_EQ((*mean)[0].shape(), (Shape{2, 1}));
  expect_near(floats((*mean)[0]), {2, 5});
  auto mean_all = run(make_node("ReduceMean", {{"keepdims", attr(int64_t{0})}}), {x});
  ASSERT_TRUE(mean_all.ok());
  EXPECT_EQ((*mean_all)[0].shape(), (Shape{}));
  expect_near(floats((*mean_all)[0]), {3.5f});

  auto sum13 = run(make_node("ReduceSum", {{"keepdims", attr(int64_t{0})}}), {x, ints({-2})}, 13);
  ASSERT_TRUE(sum13.ok());
  EXPECT_EQ((*sum13)[0].shape(), (Shape{3}));
  expect_near(floats((*sum13)[0]), {5, 7, 9});
  auto sum_all = run(make_node("ReduceSum"), {x}, 13);
  ASSERT_TRUE(sum_all.ok());
  EXPECT_EQ((*sum_all)[0].shape(), (Shape{1, 1}));
  expect_near(floats((*sum_all)[0]), {21});
  auto noop = run(make_node("ReduceSum", {{"noop_with_empty_axes", attr(int64_t{1})}}), {x, Tensor::zeros(DType::kInt64, {0}).value()}, 13);
  ASSERT_TRUE(noop.ok());
  EXPECT_EQ((*noop)[0].shape(), (Shape{2, 3}));
  expect_near(floats((*noop)[0]), floats(x));
  auto sum11 = run(make_node("ReduceSum", {{"axes", attr(std::vector<int64_t>{0})}}), {x}, 11);
  ASSERT_TRUE(sum11.ok());
  expect_near(floats((*sum11)[0]), {5, 7, 9});

  const Tensor xi = i64({2, 2}, {3, -1, 4, 2});
  auto prod = run(make_node("ReduceProd", {{"axes", attr(std::vector<int64_t>{0})}, {"keepdims", attr(int64_t{0})}}), {xi});
  ASSERT_TRUE(prod.ok());
  EXPECT_EQ(values<int64_t>((*prod)[0]), (std::vector<int64_t>{12, -2}));
  auto mx = run(make_node("ReduceMax", {{"axes", attr(std::vector<int64_t>{1})}}), {xi});
  ASSERT_TRUE(mx.ok());
  EXPECT_EQ(values<int64_t>((*mx)[0]), (std::vector<int64_t>{3, 4}));
  auto mn = run(make_node("ReduceMin", {{"axes", attr(std::vector<int64_t>{-1})}}), {x});
  ASSERT_TRUE(mn.ok());
  expect_near(floats((*mn)[0]), {1, 4});
  auto mid = run(make_node("ReduceSum", {{"axes", attr(std::vector<int64_t>{1})}, {"keepdims", attr(int64_t{0})}}),
                 {iota_f32({2, 3, 2})}, 11);
  ASSERT_TRUE(mid.ok());
  expect_near(floats((*mid)[0]), {6, 9, 24, 27});
}

TEST(OpsReduceTest, Hostile) {
  const Tensor x = f32({2, 3}, {1, 2, 3, 4, 5, 6});
  expect_error(infer(make_node("ReduceMean", {{"axes", attr(std::vector<int64_t>{2})}}), {x}), StatusCode::kInvalidArgument);
  expect_error(infer(make_node("ReduceMean", {{"axes", attr(std::vector<int64_t>{0, -2})}}), {x}), StatusCode::kInvalidArgument);
  expect_error(infer(make_node("ReduceMean", {{"keepdims", attr(int64_t{2})}}), {x}), StatusCode::kInvalidArgument);
  expect_error(infer(make_node("ReduceMean", {{"axes", attr(int64_t{0})}}), {x}), StatusCode::kInvalidArgument);
  expect_error(infer(make_node("ReduceSum"), {x, ints({0})}, 13, {1}), StatusCode::kUnimplemented);
  expect_error(infer(make_node("ReduceSum"), {x, ints({0})}, 12), StatusCode::kInvalidArgument);  // opset 12: attribute
  expect_error(infer(make_node("ReduceMax"), {boolean({1}, {true})}), StatusCode::kUnimplemented);
}

}  // namespace
}  // namespace tenet::ops
