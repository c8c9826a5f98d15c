// KServe v2 REST parsing and encoding: well-formed JSON and binary requests, and every hostile
// case the server must refuse cleanly.
#include <cstring>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "serving/kserve_rest.h"
#include "serving_test_util.h"

namespace tenet::serving {
namespace {

using testing::FakeModel;

std::shared_ptr<FakeModel> fake_model() {
  return std::make_shared<FakeModel>(std::vector<TensorSpec>{{"x", DType::kFloat32, {-1, 4}}},
                                     std::vector<TensorSpec>{{"y", DType::kFloat32, {-1, 4}}, {"z", DType::kFloat32, {-1, 4}}}, 8);
}

std::string binary_body(const std::string& header, const std::vector<float>& values) {
  std::string body = header;
  body.append(reinterpret_cast<const char*>(values.data()), values.size() * sizeof(float));
  return body;
}

TEST(KserveRest, ParsesFlatJson) {
  auto r = parse_infer_request(R"({"id":"r1","inputs":[{"name":"x","shape":[1,4],"datatype":"FP32","data":[1,2.5,-3,4e2]}]})",
                               std::nullopt);
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_EQ(r->id, "r1");
  ASSERT_EQ(r->inputs.size(), 1u);
  EXPECT_EQ(r->inputs[0].shape, (Shape{1, 4}));
  const float* p = r->inputs[0].data.as<float>();
  EXPECT_EQ(p[0], 1.f);
  EXPECT_EQ(p[1], 2.5f);
  EXPECT_EQ(p[2], -3.f);
  EXPECT_EQ(p[3], 400.f);
}

TEST(KserveRest, ParsesNestedJsonAndIntegers) {
  auto r = parse_infer_request(
      R"({"inputs":[{"name":"a","shape":[2,2],"datatype":"INT64","data":[[1,-2],[3,9007199254740993]]},
                    {"name":"b","shape":[3],"datatype":"BOOL","data":[true,false,true]},
                    {"name":"c","shape":[2],"datatype":"UINT8","data":[0,255]}]})",
      std::nullopt);
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_EQ(r->inputs[0].data.as<int64_t>()[3], 9007199254740993LL);
  EXPECT_EQ(r->inputs[1].data.as<uint8_t>()[1], 0);
  EXPECT_EQ(r->inputs[2].data.as<uint8_t>()[1], 255);
}

TEST(KserveRest, ParsesBinaryExtension) {
  const std::string header =
      R"({"inputs":[{"name":"x","shape":[2,2],"datatype":"FP32","parameters":{"binary_data_size":16}}],)"
      R"("outputs":[{"name":"y","parameters":{"binary_data":true}}]})";
  const std::string body = binary_body(header, {1, 2, 3, 4});
  auto r = parse_infer_request(body, header.size());
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_EQ(r->inputs[0].data.as<float>()[3], 4.f);
  ASSERT_EQ(r->outputs.size(), 1u);
  EXPECT_EQ(r->outputs[0].binary, true);
}

void expect_invalid(std::string_view body, std::optional<size_t> header_length, const char* fragment) {
  auto r = parse_infer_request(body, header_length);
  ASSERT_FALSE(r.ok()) << "accepted: " << body.substr(0, 200);
  EXPECT_EQ(http_status_for(r.status()), 400) << r.status().to_string();
  EXPECT_NE(r.status().message().find(fragment), std::string::npos) << r.status().message();
}

TEST(KserveRest, RejectsMalformedJson) {
  expect_invalid("", std::nullopt, "empty");
  expect_invalid("{", std::nullopt, "malformed");
  expect_invalid("[1,2]", std::nullopt, "JSON object");
  expect_invalid(R"({"inputs":5})", std::nullopt, "'inputs' must be an array");
  expect_invalid(R"({"inputs":[]})", std::nullopt, "no 'inputs'");
  expect_invalid(R"({"inputs":[{"shape":[1],"datatype":"FP32","data":[1]}]})", std::nullopt, "no 'name'");
  expect_invalid(R"({"inputs":[{"name":"x","datatype":"FP32","data":[1]}]})", std::nullopt, "no 'shape'");
  expect_invalid(R"({"inputs":[{"name":"x","shape":[1],"data":[1]}]})", std::nullopt, "no 'datatype'");
  expect_invalid(R"({"inputs":[{"name":"x","shape":[1],"datatype":"FP32"}]})", std::nullopt, "no 'data'");
  expect_invalid(R"({"inputs":[{"name":"x","shape":"1","datatype":"FP32","data":[1]}]})", std::nullopt, "'shape'");
  expect_invalid(R"({"inputs":[{"name":"x","shape":[-1],"datatype":"FP32","data":[1]}]})", std::nullopt, "non-negative");
  expect_invalid(R"({"inputs":[{"name":"x","shape":[1],"datatype":"FP32","data":[1]},{"name":"x","shape":[1],"datatype":"FP32","data":[1]}]})",
                 std::nullopt, "twice");
}

TEST(KserveRest, RejectsWrongDatatypeAndValues) {
  expect_invalid(R"({"inputs":[{"name":"x","shape":[1],"datatype":"BYTES","data":["a"]}]})", std::nullopt, "not supported");
  expect_invalid(R"({"inputs":[{"name":"x","shape":[1],"datatype":"fp32","data":[1]}]})", std::nullopt, "not supported");
  expect_invalid(R"({"inputs":[{"name":"x","shape":[1],"datatype":"FP32","data":["1"]}]})", std::nullopt, "numbers");
  expect_invalid(R"({"inputs":[{"name":"x","shape":[1],"datatype":"FP32","data":[1e300]}]})", std::nullopt, "FP32 range");
  expect_invalid(R"({"inputs":[{"name":"x","shape":[1],"datatype":"INT8","data":[300]}]})", std::nullopt, "range");
  expect_invalid(R"({"inputs":[{"name":"x","shape":[1],"datatype":"INT32","data":[1.5]}]})", std::nullopt, "integers");
  expect_invalid(R"({"inputs":[{"name":"x","shape":[1],"datatype":"BOOL","data":[1]}]})", std::nullopt, "booleans");
  expect_invalid(R"({"inputs":[{"name":"x","shape":[1],"datatype":"FP16","data":[1]}]})", std::nullopt, "binary");
}

TEST(KserveRest, RejectsElementCountMismatch) {
  expect_invalid(R"({"inputs":[{"name":"x","shape":[2,2],"datatype":"FP32","data":[1,2,3]}]})", std::nullopt, "elements");
  expect_invalid(R"({"inputs":[{"name":"x","shape":[1,2],"datatype":"FP32","data":[1,2,3]}]})", std::nullopt, "elements");
  // More elements than the body could possibly hold: refused before allocating.
  expect_invalid(R"({"inputs":[{"name":"x","shape":[100000,100000],"datatype":"FP32","data":[1]}]})", std::nullopt,
                 "more elements than the request body");
}

TEST(KserveRest, RejectsOverflowingShapes) {
  expect_invalid(R"({"inputs":[{"name":"x","shape":[4294967296,4294967296,4294967296],"datatype":"FP32","data":[1]}]})",
                 std::nullopt, "too many elements");
  expect_invalid(R"({"inputs":[{"name":"x","shape":[9223372036854775807,2],"datatype":"FP32","data":[1]}]})", std::nullopt,
                 "too many elements");
  expect_invalid(R"({"inputs":[{"name":"x","shape":[18446744073709551615],"datatype":"FP32","data":[1]}]})", std::nullopt,
                 "non-negative");
  expect_invalid(R"({"inputs":[{"name":"x","shape":[1,1,1,1,1,1,1,1,1],"datatype":"FP32","data":[1]}]})", std::nullopt, "rank");
  const std::string header =
      R"({"inputs":[{"name":"x","shape":[1099511627776,16],"datatype":"FP32","parameters":{"binary_data_size":64}}]})";
  expect_invalid(binary_body(header, std::vector<float>(16)), header.size(), "too many elements");
}

TEST(KserveRest, RejectsBinarySizeMismatches) {
  const std::string h1 = R"({"inputs":[{"name":"x","shape":[2,2],"datatype":"FP32","parameters":{"binary_data_size":12}}]})";
  expect_invalid(binary_body(h1, {1, 2, 3}), h1.size(), "does not match");
  const std::string h2 = R"({"inputs":[{"name":"x","shape":[2,2],"datatype":"FP32","parameters":{"binary_data_size":16}}]})";
  expect_invalid(binary_body(h2, {1, 2, 3}), h2.size(), "past the end");
  expect_invalid(binary_body(h2, {1, 2, 3, 4, 5}), h2.size(), "after the header");
  expect_invalid(binary_body(h2, {1, 2, 3, 4}), std::nullopt, "malformed");  // binary bytes parsed as JSON
  expect_invalid(h2, h2.size() + 1, "exceeds the body size");
  const std::string h3 = R"({"inputs":[{"name":"x","shape":[1],"datatype":"FP32","parameters":{"binary_data_size":4}}]})";
  expect_invalid(h3, std::nullopt, "Inference-Header-Content-Length");
  const std::string h4 = R"({"inputs":[{"name":"x","shape":[1],"datatype":"FP32","data":[1],"parameters":{"binary_data_size":4}}]})";
  expect_invalid(binary_body(h4, {1}), h4.size(), "both");
  EXPECT_FALSE(parse_header_length("-1").ok());
  EXPECT_FALSE(parse_header_length("99999999999999999999999").ok());
  EXPECT_FALSE(parse_header_length("12abc").ok());
  EXPECT_EQ(parse_header_length("42").value(), 42u);
}

TEST(KserveRest, ErrorMessagesNeverEchoData) {
  auto r = parse_infer_request(R"({"inputs":[{"name":"x","shape":[2],"datatype":"INT8","data":[12345, 67890]}]})", std::nullopt);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message().find("12345"), std::string::npos);
  EXPECT_EQ(r.status().message().find("67890"), std::string::npos);
}

TEST(KserveRest, BindsByNameAndChecksModel) {
  auto model = fake_model();
  auto ok = parse_infer_request(R"({"inputs":[{"name":"x","shape":[2,4],"datatype":"FP32","data":[1,2,3,4,5,6,7,8]}]})", std::nullopt);
  ASSERT_TRUE(ok.ok());
  auto t = bind_inputs(*model, *ok);
  ASSERT_TRUE(t.ok()) << t.status().to_string();
  EXPECT_EQ((*t)[0].shape(), (Shape{2, 4}));

  auto expect_bind_error = [&](const char* body, const char* fragment) {
    auto r = parse_infer_request(body, std::nullopt);
    ASSERT_TRUE(r.ok()) << r.status().to_string();
    auto b = bind_inputs(*model, *r);
    ASSERT_FALSE(b.ok()) << body;
    EXPECT_EQ(http_status_for(b.status()), 400);
    EXPECT_NE(b.status().message().find(fragment), std::string::npos) << b.status().message();
  };
  expect_bind_error(R"({"inputs":[{"name":"q","shape":[1,4],"datatype":"FP32","data":[1,2,3,4]}]})", "no input 'q'");
  expect_bind_error(R"({"inputs":[{"name":"x","shape":[1,4],"datatype":"INT32","data":[1,2,3,4]}]})", "must be FP32");
  expect_bind_error(R"({"inputs":[{"name":"x","shape":[1,3],"datatype":"FP32","data":[1,2,3]}]})", "must have shape");
  expect_bind_error(R"({"inputs":[{"name":"x","shape":[4],"datatype":"FP32","data":[1,2,3,4]}]})", "must have shape");
  expect_bind_error(R"({"inputs":[{"name":"x","shape":[9,4],"datatype":"FP32","data":[0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0]}]})",
                    "batch size 9");
  expect_bind_error(R"({"inputs":[{"name":"x","shape":[1,4],"datatype":"FP32","data":[1,2,3,4]},{"name":"w","shape":[1],"datatype":"FP32","data":[1]}]})",
                    "no input 'w'");
  auto r = parse_infer_request(R"({"inputs":[{"name":"x","shape":[1,4],"datatype":"FP32","data":[1,2,3,4]}],"outputs":[{"name":"nope"}]})",
                               std::nullopt);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(http_status_for(select_outputs(*model, *r).status()), 400);
  auto c = parse_infer_request(
      R"({"inputs":[{"name":"x","shape":[1,4],"datatype":"FP32","data":[1,2,3,4]}],"outputs":[{"name":"y","parameters":{"classification":2}}]})",
      std::nullopt);
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(http_status_for(c.status()), 501);
}

TEST(KserveRest, JsonResponseHasFixedSize) {
  auto model = fake_model();
  auto encode = [&](std::vector<float> values, const char* id) {
    std::vector<Tensor> outs = {Tensor::from_vector<float>({1, 4}, values), Tensor::from_vector<float>({1, 4}, values)};
    std::vector<OutputSelection> sel = {{0, false}, {1, false}};
    return encode_infer_response(*model, id, outs, sel, 0).value().body;
  };
  const std::string a = encode({0.f, 1.f, 2.f, 3.f}, "r");
  const std::string b = encode({-1.2345678e-30f, 3.4028235e38f, -123456.7f, std::numeric_limits<float>::quiet_NaN()}, "r");
  EXPECT_EQ(a.size(), b.size());
  auto j = nlohmann::json::parse(b);
  EXPECT_EQ(j["outputs"][0]["datatype"], "FP32");
  EXPECT_FLOAT_EQ(j["outputs"][0]["data"][2].get<float>(), -123456.7f);
  EXPECT_TRUE(j["outputs"][0]["data"][3].is_null());
  auto ja = nlohmann::json::parse(a);
  EXPECT_EQ(ja["outputs"][1]["data"][3].get<float>(), 3.f);
  // With padding, ids of different lengths give the same size too.
  std::vector<Tensor> outs = {Tensor::from_vector<float>({1, 4}, {1, 2, 3, 4}), Tensor::from_vector<float>({1, 4}, {1, 2, 3, 4})};
  std::vector<OutputSelection> sel = {{0, false}, {1, false}};
  EXPECT_EQ(encode_infer_response(*model, "a", outs, sel, 1024)->body.size(),
            encode_infer_response(*model, "a-much-longer-request-id", outs, sel, 1024)->body.size());
  EXPECT_EQ(encode_infer_response(*model, "a", outs, sel, 1024)->body.size() % 1024, 0u);
}

TEST(KserveRest, BinaryResponseLayout) {
  auto model = fake_model();
  std::vector<Tensor> outs = {Tensor::from_vector<float>({1, 4}, {1, 2, 3, 4}), Tensor::from_vector<float>({1, 4}, {5, 6, 7, 8})};
  std::vector<OutputSelection> sel = {{1, true}, {0, false}};
  auto r = encode_infer_response(*model, "", outs, sel, 512);
  ASSERT_TRUE(r.ok());
  ASSERT_TRUE(r->header_length.has_value());
  EXPECT_EQ(*r->header_length % 512, 0u);
  EXPECT_EQ(r->body.size(), *r->header_length + 16);
  auto j = nlohmann::json::parse(r->body.substr(0, *r->header_length));
  EXPECT_EQ(j["outputs"][0]["name"], "z");
  EXPECT_EQ(j["outputs"][0]["parameters"]["binary_data_size"], 16);
  float v[4];
  std::memcpy(v, r->body.data() + *r->header_length, 16);
  EXPECT_EQ(v[0], 5.f);
  EXPECT_EQ(v[3], 8.f);
}

TEST(KserveRest, MetadataDocuments) {
  auto model = fake_model();
  auto md = nlohmann::json::parse(model_metadata_json(*model));
  EXPECT_EQ(md["name"], "fake");
  EXPECT_EQ(md["platform"], "onnx_onnxv1");
  EXPECT_EQ(md["inputs"][0]["shape"], nlohmann::json::array({-1, 4}));
  auto cfg = nlohmann::json::parse(model_config_json(*model));
  EXPECT_EQ(cfg["max_batch_size"], 8);
  EXPECT_EQ(cfg["input"][0]["dims"], nlohmann::json::array({4}));
  EXPECT_EQ(cfg["input"][0]["data_type"], "TYPE_FP32");
  auto st = nlohmann::json::parse(model_stats_json({model}));
  EXPECT_EQ(st["model_stats"][0]["inference_stats"]["success"]["count"], 0);
  EXPECT_EQ(nlohmann::json::parse(server_metadata_json())["name"], "tenet");
}

TEST(KserveRest, StatusMapping) {
  EXPECT_EQ(http_status_for(invalid_argument("x")), 400);
  EXPECT_EQ(http_status_for(not_found("x")), 404);
  EXPECT_EQ(http_status_for(unimplemented("x")), 501);
  EXPECT_EQ(http_status_for(resource_exhausted("x")), 503);
  EXPECT_EQ(http_status_for(internal_error("x")), 500);
  EXPECT_EQ(nlohmann::json::parse(error_json(invalid_argument("a \"quoted\"\n")))["error"], "a \"quoted\"\n");
}

}  // namespace
}  // namespace tenet::serving
