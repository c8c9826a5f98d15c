// Hostile models: each must be rejected with a clear error (never a crash or an out-of-bounds
// read). The fuzz target fuzz/onnx_import_fuzz.cc explores the same space at random.
#include <gtest/gtest.h>

#include "engine/cpu/compiled_model.h"
#include "engine/onnx/importer.h"
#include "model_builder.h"

namespace tenet {
namespace {

using testing::ModelBuilder;
using MB = ModelBuilder;

Result<ir::Graph> import(const std::string& bytes) {
  return onnx_import::import_model_bytes(std::span<const std::byte>(reinterpret_cast<const std::byte*>(bytes.data()), bytes.size()));
}

// Imports and compiles for the given shapes; returns the first error.
Status import_and_compile(const std::string& bytes, std::map<std::string, Shape> shapes = {}) {
  auto g = import(bytes);
  if (!g.ok()) return g.status();
  auto m = cpu::compile_model(*g, shapes, cpu::CompileOptions{});
  return m.status();
}

void expect_error(const Status& s, const std::string& fragment) {
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find(fragment), std::string::npos) << "message was: " << s.to_string();
}

ModelBuilder small_conv_model() {
  MB b;
  b.input("x", {1, 3, 8, 8}).random_initializer("W", {4, 3, 3, 3});
  auto& n = b.node("Conv", {"x", "W"}, {"y"});
  MB::attr(n, "pads", std::vector<int64_t>{1, 1, 1, 1});
  b.output("y");
  return b;
}

TEST(ImporterTest, ValidModelImports) {
  auto g = import(small_conv_model().bytes());
  ASSERT_TRUE(g.ok()) << g.status().to_string();
  EXPECT_EQ(g->nodes.size(), 1u);
  EXPECT_EQ(g->opset, 17);
  EXPECT_TRUE(import_and_compile(small_conv_model().bytes()).ok());
}

TEST(ImporterTest, EveryTruncationIsRejectedOrValid) {
  const std::string bytes = small_conv_model().bytes();
  for (size_t len = 0; len < bytes.size(); len += 7) {
    auto g = import(bytes.substr(0, len));
    if (g.ok()) (void)import_and_compile(bytes.substr(0, len));
  }
  expect_error(import(bytes.substr(0, bytes.size() / 2)).status(), "");
}

TEST(ImporterTest, GarbageIsDataLoss) {
  std::string junk(1000, '\xff');
  auto g = import(junk);
  ASSERT_FALSE(g.ok());
  EXPECT_EQ(g.status().code(), StatusCode::kDataLoss);
}

TEST(ImporterTest, CorruptedBytesNeverCrash) {
  const std::string bytes = small_conv_model().bytes();
  std::mt19937 rng(3);
  for (int i = 0; i < 300; ++i) {
    std::string b = bytes;
    for (int k = 0; k < 3; ++k) b[rng() % b.size()] = static_cast<char>(rng());
    (void)import_and_compile(b);
  }
}

TEST(ImporterTest, WrongInitializerSize) {
  MB b = small_conv_model();
  auto* t = b.proto().mutable_graph()->mutable_initializer(0);
  t->set_raw_data(t->raw_data().substr(0, 10));
  expect_error(import(b.bytes()).status(), "raw data");
}

TEST(ImporterTest, OverflowingInitializerDims) {
  MB b;
  b.input("x", {1, 4}).output("y");
  auto* t = b.proto().mutable_graph()->add_initializer();
  t->set_name("W");
  t->set_data_type(1);
  t->add_dims(int64_t{1} << 40);
  t->add_dims(int64_t{1} << 40);
  b.node("Add", {"x", "W"}, {"y"});
  expect_error(import(b.bytes()).status(), "2^40");
}

// Found by the fuzzer: a huge declared initializer with no data must fail before allocating.
TEST(ImporterTest, HugeInitializerWithoutDataFailsBeforeAllocating) {
  MB b;
  b.input("x", {1, 4}).output("y");
  auto* t = b.proto().mutable_graph()->add_initializer();
  t->set_name("W");
  t->set_data_type(1);
  t->add_dims(int64_t{1} << 20);
  t->add_dims(int64_t{1} << 18);
  b.node("Add", {"x", "W"}, {"y"});
  expect_error(import(b.bytes()).status(), "declares");
}

TEST(ImporterTest, NegativeDims) {
  MB b;
  b.input("x", {1, 4}).output("y");
  auto* t = b.proto().mutable_graph()->add_initializer();
  t->set_name("W");
  t->set_data_type(1);
  t->add_dims(-3);
  b.node("Add", {"x", "W"}, {"y"});
  EXPECT_FALSE(import(b.bytes()).ok());
}

TEST(ImporterTest, Cycle) {
  MB b;
  b.input("x", {1, 4});
  b.node("Add", {"x", "b"}, {"a"});
  b.node("Relu", {"a"}, {"b"});
  b.output("b");
  expect_error(import(b.bytes()).status(), "cycle");
}

TEST(ImporterTest, MissingInput) {
  MB b;
  b.input("x", {1, 4});
  b.node("Add", {"x", "nowhere"}, {"y"});
  b.output("y");
  expect_error(import(b.bytes()).status(), "nowhere");
}

TEST(ImporterTest, UnsupportedOperatorNamesNodeOpAndOpset) {
  MB b;
  b.input("x", {1, 4});
  b.node("Einsum", {"x"}, {"y"}).set_name("my_einsum");
  b.output("y");
  Status s = import(b.bytes()).status();
  expect_error(s, "my_einsum");
  expect_error(s, "Einsum");
  expect_error(s, "17");
  EXPECT_EQ(s.code(), StatusCode::kUnimplemented);
}

TEST(ImporterTest, OpsetOutOfRange) {
  MB b(9);
  b.input("x", {1, 4});
  b.node("Relu", {"x"}, {"y"});
  b.output("y");
  expect_error(import(b.bytes()).status(), "opset 9");
  MB c(18);
  c.input("x", {1, 4});
  c.node("Relu", {"x"}, {"y"});
  c.output("y");
  expect_error(import(c.bytes()).status(), "opset 18");
}

TEST(ImporterTest, ExternalDataRejected) {
  MB b = small_conv_model();
  auto* t = b.proto().mutable_graph()->mutable_initializer(0);
  t->clear_raw_data();
  t->set_data_location(onnx::TensorProto::EXTERNAL);
  expect_error(import(b.bytes()).status(), "external data");
}

TEST(ImporterTest, OutputProducedTwice) {
  MB b;
  b.input("x", {1, 4});
  b.node("Relu", {"x"}, {"y"});
  b.node("Sigmoid", {"x"}, {"y"});
  b.output("y");
  expect_error(import(b.bytes()).status(), "already defined");
}

TEST(ImporterTest, AbsurdConvAttributes) {
  struct Bad {
    const char* name;
    std::vector<int64_t> value;
  };
  for (const Bad& bad : {Bad{"strides", {0, 1}}, Bad{"strides", {-1, 1}}, Bad{"pads", {-1, 0, 0, 0}}, Bad{"dilations", {0, 0}},
                         Bad{"kernel_shape", {1 << 30, 1 << 30}}, Bad{"pads", {1, 1}}, Bad{"strides", {1, 1, 1, 1, 1}}}) {
    MB b = small_conv_model();
    MB::attr(*b.proto().mutable_graph()->mutable_node(0), bad.name, bad.value);
    // Attributes given twice are an error too, so replace instead: rebuild a fresh node.
    auto* n = b.proto().mutable_graph()->mutable_node(0);
    n->clear_attribute();
    MB::attr(*n, bad.name, bad.value);
    Status s = import_and_compile(b.bytes());
    EXPECT_FALSE(s.ok()) << bad.name;
  }
}

TEST(ImporterTest, GroupNotDividingChannels) {
  MB b;
  b.input("x", {1, 6, 8, 8}).random_initializer("W", {4, 3, 3, 3});
  auto& n = b.node("Conv", {"x", "W"}, {"y"});
  MB::attr(n, "group", int64_t{4});
  b.output("y");
  EXPECT_FALSE(import_and_compile(b.bytes()).ok());
}

TEST(ImporterTest, ReshapeToOverflowingShape) {
  MB b;
  b.input("x", {1, 4}).initializer_i64("s", {3}, {int64_t{1} << 40, int64_t{1} << 40, 4});
  b.node("Reshape", {"x", "s"}, {"y"});
  b.output("y");
  EXPECT_FALSE(import_and_compile(b.bytes()).ok());
}

TEST(ImporterTest, ConstantOfShapeHugeIsRejectedOrNotFolded) {
  MB b;
  b.input("x", {1, 4}).initializer_i64("s", {2}, {int64_t{1} << 35, int64_t{1} << 35});
  b.node("ConstantOfShape", {"s"}, {"c"});
  b.node("Add", {"x", "c"}, {"y"});
  b.output("y");
  EXPECT_FALSE(import_and_compile(b.bytes()).ok());
}

TEST(ImporterTest, InputShapeMismatchIsClear) {
  Status s = import_and_compile(small_conv_model().bytes(), {{"x", {1, 3, 9, 8}}});
  expect_error(s, "fixed to 8");
  s = import_and_compile(small_conv_model().bytes(), {{"nope", {1}}});
  expect_error(s, "no input named 'nope'");
  s = import_and_compile(small_conv_model().bytes(), {{"x", {1, 3, 8}}});
  expect_error(s, "rank");
}

TEST(ImporterTest, DynamicDimsMustBeBound) {
  MB b;
  b.input("x", {-1, 4});
  b.node("Relu", {"x"}, {"y"});
  b.output("y");
  expect_error(import_and_compile(b.bytes()), "dynamic");
  EXPECT_TRUE(import_and_compile(b.bytes(), {{"x", {3, 4}}}).ok());
}

TEST(ImporterTest, MissingFileIsNotFound) {
  auto g = onnx_import::import_model_file("/nonexistent/model.onnx");
  ASSERT_FALSE(g.ok());
  EXPECT_EQ(g.status().code(), StatusCode::kNotFound);
}

}  // namespace
}  // namespace tenet
