// Matrix-vector layers streamed from the sealed weight store piece by piece: where the CPU has
// tenet's VAES GCM, each piece is decrypted straight into the layer's dot products
// (SealedWeightStore::dot_piece; the plaintext is never written to memory). The outputs are
// bitwise those of the model with every weight in memory, and a piece tampered with in untrusted
// memory fails the run.
#include <gtest/gtest.h>

#include <atomic>
#include <vector>

#include "crypto/crypto.h"
#include "engine/cpu/compiled_model.h"
#include "engine/onnx/importer.h"
#include "epc/sealed_weight_store.h"
#include "failing_store.h"
#include "model_builder.h"

namespace tenet::epc {
namespace {

using testing::ModelBuilder;

// fc(256 -> 2048, Gemm transB) + ReLU -> fc(2048 -> 1000, MatMul) -> fc(1000 -> 10, Gemm): rows of
// 256 and 2048 floats (whole 256-byte steps) and of 1000 (not: that layer decrypts into memory).
std::string model_bytes() {
  ModelBuilder b;
  b.input("x", {1, 256});
  b.random_initializer("w1", {2048, 256}, 0.1f);
  b.random_initializer("b1", {2048}, 0.1f);
  b.random_initializer("w2", {2048, 1000}, 0.05f);
  b.random_initializer("w3", {10, 1000}, 0.05f);
  auto& g1 = b.node("Gemm", {"x", "w1", "b1"}, {"h1"});
  ModelBuilder::attr(g1, "transB", int64_t{1});
  b.node("Relu", {"h1"}, {"r1"});
  b.node("MatMul", {"r1", "w2"}, {"h2"});
  auto& g3 = b.node("Gemm", {"h2", "w3"}, {"y"});
  ModelBuilder::attr(g3, "transB", int64_t{1});
  b.output("y");
  return b.bytes();
}

// Counts the pieces the kernels loaded and took as dot products, passing everything to the sealed store.
class CountingStore final : public testing::ForwardingStore {
 public:
  explicit CountingStore(std::shared_ptr<SealedWeightStore> inner) : ForwardingStore(std::move(inner)) {}
  Status get_piece(uint32_t id, uint64_t piece, std::span<std::byte> dst) override {
    ++pieces_loaded;
    return inner_->get_piece(id, piece, dst);
  }
  Status dot_piece(uint32_t id, uint64_t piece, const float* x, int64_t k, std::span<float> lanes) override {
    ++pieces_dotted;
    return inner_->dot_piece(id, piece, x, k, lanes);
  }
  std::atomic<int> pieces_loaded{0}, pieces_dotted{0};
};

Result<std::unique_ptr<cpu::CompiledModel>> compile(const cpu::CompileOptions& o) {
  const std::string bytes = model_bytes();
  TENET_ASSIGN_OR_RETURN(ir::Graph g, onnx_import::import_model_bytes(std::span(reinterpret_cast<const std::byte*>(bytes.data()), bytes.size())));
  return cpu::compile_model(std::move(g), {{"x", {1, 256}}}, o);
}

Status run(cpu::CompiledModel& m, std::vector<float>& y) {
  Tensor x = Tensor::from_vector<float>({1, 256}, testing::random_values(256, 3));
  std::vector<ConstTensorView> in{x.view()};
  std::vector<Tensor> out;
  TENET_RETURN_IF_ERROR(m.run(in, out));
  y.assign(out[0].as<float>(), out[0].as<float>() + out[0].numel());
  return ok_status();
}

TEST(SealedStreaming, DotProductsFromSealedPiecesAreBitwiseAndTamperingFails) {
  cpu::CompileOptions plain;
  plain.threads = 2;
  auto full = compile(plain);
  ASSERT_TRUE(full.ok()) << full.status().to_string();
  std::vector<float> want;
  ASSERT_TRUE(run(**full, want).ok());

  auto sealed = SealedWeightStore::create();
  ASSERT_TRUE(sealed.ok());
  auto store = std::make_shared<CountingStore>(*sealed);
  cpu::CompileOptions o = plain;
  o.streaming.store = store;
  o.streaming.budget_bytes = 3 << 20;  // holds w1 (2 MB) or part of w2 (8 MB), not both
  auto m = compile(o);
  ASSERT_TRUE(m.ok()) << m.status().to_string();
  ASSERT_GT((*m)->streaming_plan().streamed_in_pieces_bytes, 0u);
  for (int rep = 0; rep < 2; ++rep) {
    std::vector<float> got;
    ASSERT_TRUE(run(**m, got).ok());
    EXPECT_EQ(got, want);  // bitwise
  }
  const bool fused = crypto::aes128gcm_dot_supported(2048);
  EXPECT_EQ(store->pieces_dotted.load() > 0, fused);
  if (!fused) GTEST_SKIP() << "no VAES GCM here: pieces are decrypted into memory (checked bitwise above)";

  // The same bits with the pieces decrypted into memory instead (OpenSSL's GCM has no fused form).
  ASSERT_TRUE(crypto::set_aes_gcm_backend("openssl").ok());
  const int dotted = store->pieces_dotted.load();
  std::vector<float> via_memory;
  Status s = run(**m, via_memory);
  ASSERT_TRUE(crypto::set_aes_gcm_backend("auto").ok());
  ASSERT_TRUE(s.ok()) << s.to_string();
  EXPECT_EQ(store->pieces_dotted.load(), dotted);
  EXPECT_EQ(via_memory, want);

  // Flip one ciphertext byte of the last piece of every streamed entry: the run fails with
  // kDataLoss, and so does the next one (the host cannot make the tampering go away by retrying).
  const uint64_t resident = (*m)->streaming_plan().resident_weight_bytes;
  int tampered = 0;
  for (uint32_t id = 0; id < 64; ++id) {
    std::span<uint8_t> u = (*sealed)->untrusted_entry(id);
    if (u.size() < 2 * SealedWeightStore::kChunkBytes) continue;
    u[u.size() - 100] ^= 0x10;
    ++tampered;
  }
  ASSERT_GT(tampered, 0) << resident;
  for (int rep = 0; rep < 2; ++rep) {
    std::vector<float> got;
    Status bad = run(**m, got);
    EXPECT_EQ(bad.code(), StatusCode::kDataLoss) << bad.to_string();
    EXPECT_NE(bad.message().find("failed authentication"), std::string::npos) << bad.to_string();
  }
}

}  // namespace
}  // namespace tenet::epc
