// libFuzzer target: the KServe v2 REST infer-request parser (JSON and binary tensor data), then
// binding to a fixed model and output selection. Input layout: byte 0 selects the mode (even:
// whole body is JSON; odd: bytes 1-2 are a little-endian Inference-Header-Content-Length and the
// rest is the body).
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "serving/kserve_rest.h"

namespace {

class FuzzModel final : public tenet::serving::ServedModel {
 public:
  const std::string& name() const override { return name_; }
  const std::string& version() const override { return version_; }
  const std::string& platform() const override { return platform_; }
  const std::vector<tenet::serving::TensorSpec>& inputs() const override { return in_; }
  const std::vector<tenet::serving::TensorSpec>& outputs() const override { return out_; }
  int max_batch_size() const override { return 4; }
  uint64_t max_queue_delay_us() const override { return 0; }
  bool ready() const override { return true; }
  tenet::Result<std::vector<tenet::Tensor>> infer(std::vector<tenet::Tensor>) override {
    return tenet::unimplemented("fuzz model does not run");
  }
  tenet::serving::ModelStats stats() const override { return {}; }

 private:
  std::string name_ = "m", version_ = "1", platform_ = "onnx_onnxv1";
  std::vector<tenet::serving::TensorSpec> in_ = {{"x", tenet::DType::kFloat32, {-1, 4}}, {"i", tenet::DType::kInt64, {-1}}};
  std::vector<tenet::serving::TensorSpec> out_ = {{"y", tenet::DType::kFloat32, {-1, 4}}};
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  std::optional<size_t> header_length;
  std::string_view body(reinterpret_cast<const char*>(data) + 1, size - 1);
  if (data[0] & 1) {
    if (size < 3) return 0;
    header_length = static_cast<size_t>(data[1]) | (static_cast<size_t>(data[2]) << 8);
    body = std::string_view(reinterpret_cast<const char*>(data) + 3, size - 3);
  }
  auto req = tenet::serving::parse_infer_request(body, header_length);
  if (!req.ok()) return 0;
  static FuzzModel model;
  auto sel = tenet::serving::select_outputs(model, *req);
  auto bound = tenet::serving::bind_inputs(model, *req);
  if (bound.ok()) {
    for (auto& t : *bound) tenet::serving::wipe_tensor(t);
  }
  req->wipe();
  (void)sel;
  return 0;
}
