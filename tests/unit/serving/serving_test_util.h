// Helpers for the serving tests: a tiny engine model built in memory, a fake ServedModel for the
// parser tests, and a self-signed TLS certificate made with OpenSSL.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "engine/cpu/compiled_model.h"
#include "engine/onnx/importer.h"
#include "model_builder.h"
#include "serving/model_repository.h"

namespace tenet::serving::testing {

// y = Gemm(x, W, b) (x: [N, 4] FP32, y: [N, 3]); z = Relu(y). N is dynamic.
inline ir::Graph tiny_graph() {
  tenet::testing::ModelBuilder b;
  b.input("x", {-1, 4});
  b.random_initializer("W", {4, 3});
  b.random_initializer("b", {3});
  b.node("Gemm", {"x", "W", "b"}, {"y"});
  b.node("Relu", {"y"}, {"z"});
  b.output("y");
  b.output("z");
  const std::string bytes = b.bytes();
  return onnx_import::import_model_bytes(std::span<const std::byte>(reinterpret_cast<const std::byte*>(bytes.data()), bytes.size()))
      .value();
}

// The engine run directly, for reference outputs.
inline std::vector<Tensor> run_direct(const ir::Graph& g, const Tensor& x) {
  auto m = cpu::compile_model(g, {{"x", x.shape()}}, cpu::CompileOptions{}).value();
  std::vector<Tensor> outs;
  ConstTensorView v = x.view();
  EXPECT_TRUE(m->run(std::span<const ConstTensorView>(&v, 1), outs).ok());
  std::vector<Tensor> copies;
  for (const Tensor& t : outs) copies.push_back(t.clone());
  return copies;
}

// A ServedModel with fixed specs that echoes its first input as every output (parser tests).
class FakeModel : public ServedModel {
 public:
  FakeModel(std::vector<TensorSpec> in, std::vector<TensorSpec> out, int max_batch)
      : in_(std::move(in)), out_(std::move(out)), max_batch_(max_batch) {}
  const std::string& name() const override { return name_; }
  const std::string& version() const override { return version_; }
  const std::string& platform() const override { return platform_; }
  const std::vector<TensorSpec>& inputs() const override { return in_; }
  const std::vector<TensorSpec>& outputs() const override { return out_; }
  int max_batch_size() const override { return max_batch_; }
  uint64_t max_queue_delay_us() const override { return 0; }
  bool ready() const override { return true; }
  Result<std::vector<Tensor>> infer(std::vector<Tensor> inputs) override {
    std::vector<Tensor> outs;
    for (size_t i = 0; i < out_.size(); ++i) outs.push_back(inputs[0].clone());
    return outs;
  }
  ModelStats stats() const override { return {}; }

 private:
  std::string name_ = "fake", version_ = "1", platform_ = "onnx_onnxv1";
  std::vector<TensorSpec> in_, out_;
  int max_batch_;
};

// Self-signed P-256 certificate for CN=localhost, SAN DNS:localhost, IP:127.0.0.1.
inline std::pair<std::string, std::string> self_signed_cert_pem() {
  EVP_PKEY* key = EVP_EC_gen("P-256");
  X509* x = X509_new();
  X509_set_version(x, 2);
  ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
  X509_gmtime_adj(X509_getm_notBefore(x), -60);
  X509_gmtime_adj(X509_getm_notAfter(x), 3600);
  X509_set_pubkey(x, key);
  X509_NAME* name = X509_get_subject_name(x);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, reinterpret_cast<const unsigned char*>("localhost"), -1, -1, 0);
  X509_set_issuer_name(x, name);
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, x, x, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, NID_subject_alt_name, "DNS:localhost,IP:127.0.0.1");
  X509_add_ext(x, ext, -1);
  X509_EXTENSION_free(ext);
  X509_sign(x, key, EVP_sha256());
  BIO* cb = BIO_new(BIO_s_mem());
  PEM_write_bio_X509(cb, x);
  BIO* kb = BIO_new(BIO_s_mem());
  PEM_write_bio_PrivateKey(kb, key, nullptr, nullptr, 0, nullptr, nullptr);
  char* p = nullptr;
  long n = BIO_get_mem_data(cb, &p);
  std::string cert(p, static_cast<size_t>(n));
  n = BIO_get_mem_data(kb, &p);
  std::string pkey(p, static_cast<size_t>(n));
  BIO_free(cb);
  BIO_free(kb);
  X509_free(x);
  EVP_PKEY_free(key);
  return {cert, pkey};
}

}  // namespace tenet::serving::testing
