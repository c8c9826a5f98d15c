// Sealed packages: round trip through the engine (bitwise equal to the unsealed model), and every
// kind of tampering failing cleanly with an error that names what failed.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <functional>
#include <optional>

#include <onnx/onnx_pb.h>

#include "core/safe_math.h"
#include "engine/cpu/compiled_model.h"
#include "engine/cpu/weight_streaming.h"
#include "engine/onnx/importer.h"
#include "model_builder.h"
#include "seal/package.h"

namespace tenet::seal {
namespace {

using crypto::Bytes;
using testing::ModelBuilder;

// Conv -> Relu -> Conv (shares a bias with the first conv) -> Flatten -> Gemm: four layers with
// weights, one shared initializer, one Constant-free graph.
std::string test_model() {
  ModelBuilder b;
  b.input("x", {1, 3, 8, 8}).output("y");
  b.random_initializer("w1", {4, 3, 3, 3}, 0.2f);
  b.random_initializer("bias", {4}, 0.1f);
  b.random_initializer("w2", {4, 4, 3, 3}, 0.2f);
  b.random_initializer("wg", {10, 256}, 0.05f);
  b.random_initializer("bg", {10}, 0.1f);
  auto& c1 = b.node("Conv", {"x", "w1", "bias"}, {"c1"});
  ModelBuilder::attr(c1, "pads", std::vector<int64_t>{1, 1, 1, 1});
  b.node("Relu", {"c1"}, {"r1"});
  auto& c2 = b.node("Conv", {"r1", "w2", "bias"}, {"c2"});
  ModelBuilder::attr(c2, "pads", std::vector<int64_t>{1, 1, 1, 1});
  auto& f = b.node("Flatten", {"c2"}, {"f"});
  ModelBuilder::attr(f, "axis", int64_t{1});
  auto& g = b.node("Gemm", {"f", "wg", "bg"}, {"y"});
  ModelBuilder::attr(g, "transB", int64_t{1});
  return b.bytes();
}

crypto::ByteSpan span_of(const std::string& s) { return crypto::as_bytes(s); }

Bytes test_key(uint8_t fill) { return Bytes(kModelKeyBytes, fill); }

std::vector<Tensor> run_graph(const ir::Graph& g) {
  cpu::CompileOptions opt;
  opt.threads = 1;
  auto m = cpu::compile_model(g, {}, opt);
  EXPECT_TRUE(m.ok()) << m.status().to_string();
  if (!m.ok()) return {};
  std::vector<Tensor> feeds;
  std::vector<ConstTensorView> views;
  uint32_t seed = 7;
  for (const auto& info : (*m)->inputs()) {
    feeds.push_back(Tensor::from_vector<float>(info.shape, testing::random_values(numel(info.shape), seed++)));
    views.push_back(feeds.back().view());
  }
  std::vector<Tensor> outs;
  Status s = (*m)->run(views, outs);
  EXPECT_TRUE(s.ok()) << s.to_string();
  return outs;
}

class PackageTest : public ::testing::Test {
 protected:
  void SetUp() override {
    model_ = test_model();
    key_ = test_key(0x11);
    auto p = seal_model_to_bytes(span_of(model_), key_, SealOptions{"demo", "1"}, &info_);
    ASSERT_TRUE(p.ok()) << p.status().to_string();
    package_ = std::move(p).value();
  }
  // Expects opening or loading `bytes` with `key` to fail with `code`, the message containing `needle`.
  static void expect_load_fails(const Bytes& bytes, const Bytes& key, StatusCode code, const std::string& needle) {
    auto r = PackageReader::from_bytes(bytes);
    Status s;
    if (!r.ok()) {
      s = r.status();
    } else {
      auto g = r->load_graph(key);
      ASSERT_FALSE(g.ok()) << "load succeeded; expected failure containing '" << needle << "'";
      s = g.status();
    }
    EXPECT_EQ(s.code(), code) << s.to_string();
    EXPECT_NE(s.message().find(needle), std::string::npos) << "message: " << s.message() << "\nexpected: " << needle;
  }
  // Byte offset of manifest entry `i`'s first field (kind).
  size_t entry_offset(uint32_t i) const {
    return kPackageHeaderBytes + 4 + info_.model_name.size() + 4 + info_.version.size() + 32 + kManifestEntryBytes * i;
  }
  static void put_u32(Bytes& b, size_t at, uint32_t v) {
    for (int i = 0; i < 4; ++i) b[at + i] = static_cast<uint8_t>(v >> (8 * i));
  }
  static void put_u64(Bytes& b, size_t at, uint64_t v) {
    for (int i = 0; i < 8; ++i) b[at + i] = static_cast<uint8_t>(v >> (8 * i));
  }

  std::string model_;
  Bytes key_;
  Bytes package_;
  PackageInfo info_;
};

TEST_F(PackageTest, ChunksArePerLayerWithSharedInitializerInFirstConsumer) {
  // graph + conv1 {w1, bias} + conv2 {w2} + gemm {wg, bg}
  ASSERT_EQ(info_.chunks.size(), 4u);
  EXPECT_EQ(info_.chunks[0].kind, ChunkKind::kGraph);
  auto r = PackageReader::from_bytes(package_);
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  std::vector<std::vector<std::string>> names;
  for (uint32_t i = 1; i < r->chunk_count(); ++i) {
    auto c = r->read_chunk(i, key_);
    ASSERT_TRUE(c.ok()) << c.status().to_string();
    onnx::GraphProto g;
    ASSERT_TRUE(g.ParseFromArray(c->bytes.data(), static_cast<int>(c->bytes.size())));
    std::vector<std::string> n;
    for (const auto& t : g.initializer()) n.push_back(t.name());
    names.push_back(n);
  }
  EXPECT_EQ(names, (std::vector<std::vector<std::string>>{{"w1", "bias"}, {"w2"}, {"wg", "bg"}}));
  // The graph chunk holds no weights and maps chunks to layers.
  auto g0 = r->read_chunk(0, key_);
  ASSERT_TRUE(g0.ok());
  onnx::ModelProto m;
  ASSERT_TRUE(m.ParseFromArray(g0->bytes.data(), static_cast<int>(g0->bytes.size())));
  EXPECT_EQ(m.graph().initializer_size(), 0);
  EXPECT_EQ(m.graph().node_size(), 5);
  ASSERT_EQ(m.metadata_props_size(), 3);
  EXPECT_EQ(m.metadata_props(0).key(), "tenet.seal.chunk.1");
}

TEST_F(PackageTest, WeightsAndGraphAreNotInPlaintext) {
  onnx::ModelProto m;
  ASSERT_TRUE(m.ParseFromString(model_));
  const std::string& w = m.graph().initializer(0).raw_data();
  const std::string haystack(package_.begin(), package_.end());
  EXPECT_EQ(haystack.find(w.substr(0, 16)), std::string::npos);
  EXPECT_EQ(haystack.find("Conv"), std::string::npos);
  // No 24-byte window of the serialized graph (operators, attributes, names) is in the file. (A
  // two-letter name like "w1" would turn up in random ciphertext by chance.)
  auto reader = PackageReader::from_bytes(package_);
  ASSERT_TRUE(reader.ok());
  auto graph = reader->read_chunk(0, key_);
  ASSERT_TRUE(graph.ok());
  const std::string plain(reinterpret_cast<const char*>(graph->bytes.data()), graph->bytes.size());
  ASSERT_GE(plain.size(), 48u);
  for (size_t i = 0; i + 24 <= plain.size(); i += 24) EXPECT_EQ(haystack.find(plain.substr(i, 24)), std::string::npos);
  EXPECT_NE(haystack.find("demo"), std::string::npos);  // the name is plaintext by design
}

TEST_F(PackageTest, RoundTripThroughEngineIsBitwiseEqual) {
  auto plain = onnx_import::import_model_bytes(std::span(reinterpret_cast<const std::byte*>(model_.data()), model_.size()));
  ASSERT_TRUE(plain.ok());
  const auto dir = std::filesystem::temp_directory_path() / "tenet_seal_test";
  std::filesystem::create_directories(dir);
  const std::string path = (dir / "model.tenet").string();
  auto sealed = seal_model(span_of(model_), path, key_, SealOptions{"demo", "1"});
  ASSERT_TRUE(sealed.ok()) << sealed.status().to_string();
  auto reader = PackageReader::open(path);
  ASSERT_TRUE(reader.ok()) << reader.status().to_string();
  EXPECT_EQ(reader->info().digest, sealed->digest);
  EXPECT_EQ(reader->info().model_name, "demo");
  EXPECT_TRUE(reader->verify_ciphertext_hashes().ok());
  auto g = reader->load_graph(key_);
  ASSERT_TRUE(g.ok()) << g.status().to_string();
  auto a = run_graph(*plain);
  auto b = run_graph(*g);
  ASSERT_EQ(a.size(), 1u);
  ASSERT_EQ(b.size(), 1u);
  ASSERT_EQ(a[0].shape(), b[0].shape());
  EXPECT_EQ(0, std::memcmp(a[0].data(), b[0].data(), a[0].size_bytes()));
  std::filesystem::remove_all(dir);
}

TEST_F(PackageTest, DigestIsOverHeaderAndManifest) {
  const uint64_t data_offset = info_.chunks[0].offset;
  EXPECT_EQ(info_.digest, crypto::sha256(crypto::ByteSpan(package_).first(data_offset)));
  // Two seals of one model differ (fresh package id and IVs).
  PackageInfo other;
  ASSERT_TRUE(seal_model_to_bytes(span_of(model_), key_, SealOptions{"demo", "1"}, &other).ok());
  EXPECT_NE(other.digest, info_.digest);
}

TEST_F(PackageTest, WrongKeyFails) {
  expect_load_fails(package_, test_key(0x22), StatusCode::kDataLoss, "model key does not match");
  auto r = PackageReader::from_bytes(package_);
  ASSERT_TRUE(r.ok());
  auto c = r->read_chunk(2, test_key(0x22));
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), StatusCode::kDataLoss);
  EXPECT_NE(c.status().message().find("chunk 2 of 4"), std::string::npos) << c.status().message();
  auto short_key = r->load_graph(Bytes(16, 1));
  EXPECT_EQ(short_key.status().code(), StatusCode::kInvalidArgument);
}

TEST_F(PackageTest, FlippedCiphertextByteFailsNamingTheChunk) {
  for (uint32_t i = 0; i < info_.chunks.size(); ++i) {
    Bytes bad = package_;
    bad[info_.chunks[i].offset + info_.chunks[i].size / 2] ^= 0x01;
    expect_load_fails(bad, key_, StatusCode::kDataLoss, fmt::format("chunk {} of 4", i));
  }
  // The tag too.
  Bytes bad = package_;
  bad[info_.chunks[1].offset + info_.chunks[1].size - 1] ^= 0x80;
  expect_load_fails(bad, key_, StatusCode::kDataLoss, "chunk 1 of 4");
}

// Rewrites the manifest's hash of chunk `i` (and, if `mac_key` given, would recompute the MAC; an
// attacker cannot, so it is left stale).
TEST_F(PackageTest, TamperedChunkWithMatchingHashStillFailsGcm) {
  // An attacker who also fixes the manifest's hash is caught by the MAC.
  Bytes bad = package_;
  const auto& c = info_.chunks[2];
  bad[c.offset] ^= 0xff;
  const auto h = crypto::sha256(crypto::ByteSpan(bad).subspan(c.offset, c.size));
  std::memcpy(bad.data() + entry_offset(2) + 4 + 4 + 8 + 8 + 8 + 12, h.data(), 32);
  expect_load_fails(bad, key_, StatusCode::kDataLoss, "manifest MAC does not verify");
}

TEST_F(PackageTest, SwappedChunksFail) {
  // Chunks 1 and 3 swapped in place when equal sized is not possible here; swap 2 and 3's bytes
  // by rebuilding the data region with the manifest unchanged (sizes differ -> hash mismatch).
  Bytes bad(package_.begin(), package_.begin() + static_cast<long>(info_.chunks[1].offset));
  const auto append = [&](uint32_t i) {
    bad.insert(bad.end(), package_.begin() + static_cast<long>(info_.chunks[i].offset),
               package_.begin() + static_cast<long>(info_.chunks[i].offset + info_.chunks[i].size));
  };
  append(1);
  append(3);
  append(2);
  expect_load_fails(bad, key_, StatusCode::kDataLoss, "chunk 2 of 4");
}

TEST_F(PackageTest, SwappedEqualSizeChunksFailEvenWithSwappedManifestEntries) {
  // Two layers with equal-size weights: swapping their ciphertexts and manifest entries (so the
  // hashes match) is caught by the MAC; the GCM AAD would catch it as well.
  ModelBuilder b;
  b.input("x", {1, 4}).output("y");
  b.random_initializer("a", {4, 4});
  b.random_initializer("b", {4, 4});
  b.node("MatMul", {"x", "a"}, {"h"});
  b.node("MatMul", {"h", "b"}, {"y"});
  PackageInfo info;
  auto p = seal_model_to_bytes(span_of(b.bytes()), key_, SealOptions{}, &info);
  ASSERT_TRUE(p.ok());
  ASSERT_EQ(info.chunks.size(), 3u);
  ASSERT_EQ(info.chunks[1].size, info.chunks[2].size);
  Bytes bad = *p;
  const size_t n = info.chunks[1].size;
  std::swap_ranges(bad.begin() + static_cast<long>(info.chunks[1].offset),
                   bad.begin() + static_cast<long>(info.chunks[1].offset + n),
                   bad.begin() + static_cast<long>(info.chunks[2].offset));
  auto r = PackageReader::from_bytes(bad);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->verify_ciphertext_hashes().code(), StatusCode::kDataLoss);
  auto g = r->load_graph(key_);
  ASSERT_FALSE(g.ok());
  EXPECT_NE(g.status().message().find("chunk 1 of 3"), std::string::npos) << g.status().message();
  // Swap the IV and hash fields of the two entries too (offsets stay canonical).
  const size_t e1 = kPackageHeaderBytes + 4 + 4 + 32 + kManifestEntryBytes * 1;
  const size_t e2 = e1 + kManifestEntryBytes;
  std::swap_ranges(bad.begin() + static_cast<long>(e1 + 32), bad.begin() + static_cast<long>(e1 + kManifestEntryBytes),
                   bad.begin() + static_cast<long>(e2 + 32));
  auto r2 = PackageReader::from_bytes(bad);
  ASSERT_TRUE(r2.ok());
  EXPECT_TRUE(r2->verify_ciphertext_hashes().ok());  // hashes now agree ...
  auto g2 = r2->load_graph(key_);                     // ... but the MAC does not
  ASSERT_FALSE(g2.ok());
  EXPECT_NE(g2.status().message().find("manifest MAC"), std::string::npos) << g2.status().message();
}

TEST_F(PackageTest, ChunkFromAnotherPackageWithSameKeyFails) {
  // Seal the same model again under the same key: same chunk sizes, different package.
  PackageInfo other_info;
  auto other = seal_model_to_bytes(span_of(model_), key_, SealOptions{"demo", "1"}, &other_info);
  ASSERT_TRUE(other.ok());
  ASSERT_EQ(other_info.chunks[2].size, info_.chunks[2].size);
  Bytes bad = package_;
  std::copy(other->begin() + static_cast<long>(other_info.chunks[2].offset),
            other->begin() + static_cast<long>(other_info.chunks[2].offset + other_info.chunks[2].size),
            bad.begin() + static_cast<long>(info_.chunks[2].offset));
  expect_load_fails(bad, key_, StatusCode::kDataLoss, "chunk 2 of 4");
  // With the other package's manifest entry as well (IV and hash): the MAC catches it.
  std::copy(other->begin() + static_cast<long>(entry_offset(2)), other->begin() + static_cast<long>(entry_offset(3)),
            bad.begin() + static_cast<long>(entry_offset(2)));
  expect_load_fails(bad, key_, StatusCode::kDataLoss, "manifest MAC");
}

TEST_F(PackageTest, DuplicatedChunkFails) {
  // Replace chunk 3's bytes with a copy of chunk 2 (appended; file size and offsets fixed up so
  // the layout stays canonical): hash mismatch, and the MAC if the manifest is edited.
  Bytes bad(package_.begin(), package_.begin() + static_cast<long>(info_.chunks[3].offset));
  bad.insert(bad.end(), package_.begin() + static_cast<long>(info_.chunks[2].offset),
             package_.begin() + static_cast<long>(info_.chunks[2].offset + info_.chunks[2].size));
  put_u64(bad, 48, bad.size());
  put_u64(bad, entry_offset(3) + 16, info_.chunks[2].size);
  put_u64(bad, entry_offset(3) + 24, info_.chunks[2].plaintext_size);
  expect_load_fails(bad, key_, StatusCode::kDataLoss, "manifest MAC");
}

TEST_F(PackageTest, TruncatedFileFails) {
  for (size_t cut : {size_t{0}, size_t{10}, size_t{63}, size_t{64}, size_t{100}, package_.size() / 2, package_.size() - 1}) {
    Bytes bad(package_.begin(), package_.begin() + static_cast<long>(cut));
    auto r = PackageReader::from_bytes(bad);
    ASSERT_FALSE(r.ok()) << "cut at " << cut;
    EXPECT_EQ(r.status().code(), StatusCode::kDataLoss) << r.status().to_string();
  }
  Bytes longer = package_;
  longer.push_back(0);
  expect_load_fails(longer, key_, StatusCode::kDataLoss, "truncated or extended");
}

TEST_F(PackageTest, TruncatedFileOnDiskFailsAtRead) {
  const auto dir = std::filesystem::temp_directory_path() / "tenet_seal_trunc";
  std::filesystem::create_directories(dir);
  const std::string path = (dir / "m.tenet").string();
  ASSERT_TRUE(crypto::write_file(path, crypto::as_chars(package_)).ok());
  auto r = PackageReader::open(path);
  ASSERT_TRUE(r.ok());
  std::filesystem::resize_file(path, info_.chunks[2].offset + 5);  // shrinks after open (TOCTOU)
  auto g = r->load_graph(key_);
  ASSERT_FALSE(g.ok());
  EXPECT_EQ(g.status().code(), StatusCode::kDataLoss);
  EXPECT_NE(g.status().message().find("chunk 2 of 4"), std::string::npos) << g.status().message();
  std::filesystem::remove_all(dir);
  EXPECT_EQ(PackageReader::open((dir / "missing").string()).status().code(), StatusCode::kNotFound);
}

TEST_F(PackageTest, EditedManifestFails) {
  // The model name is plaintext: editing it is caught by the MAC and changes the digest.
  Bytes bad = package_;
  bad[kPackageHeaderBytes + 4] = 'D';
  auto r = PackageReader::from_bytes(bad);
  ASSERT_TRUE(r.ok());
  EXPECT_NE(r->info().digest, info_.digest);
  expect_load_fails(bad, key_, StatusCode::kDataLoss, "manifest MAC");
  // Key check value edited.
  Bytes bad2 = package_;
  bad2[entry_offset(0) - 1] ^= 1;
  expect_load_fails(bad2, key_, StatusCode::kDataLoss, "key check failed");
  // The package id in the header (chunks' AAD and key derivation use it).
  Bytes bad3 = package_;
  bad3[20] ^= 1;
  expect_load_fails(bad3, key_, StatusCode::kDataLoss, "key check failed");
  // An IV.
  Bytes bad4 = package_;
  bad4[entry_offset(1) + 32] ^= 1;
  expect_load_fails(bad4, key_, StatusCode::kDataLoss, "manifest MAC");
}

TEST_F(PackageTest, HostileHeaderFieldsAreRefusedBeforeUse) {
  struct Case {
    size_t at;
    int width;
    uint64_t value;
    StatusCode code;
    const char* needle;
  };
  const uint32_t mf = static_cast<uint32_t>(info_.chunks[0].offset - kPackageHeaderBytes);
  const Case cases[] = {
      {0, 4, 0x58585858, StatusCode::kDataLoss, "bad magic"},
      {8, 4, 3, StatusCode::kUnimplemented, "format version 3"},
      {8, 4, 0, StatusCode::kUnimplemented, "format version 0"},
      {12, 4, 65, StatusCode::kDataLoss, "header_size"},
      {32, 4, 0, StatusCode::kOutOfRange, "chunk_count 0"},
      {32, 4, 0xffffffffu, StatusCode::kOutOfRange, "chunk_count 4294967295"},
      {32, 4, kMaxChunks, StatusCode::kDataLoss, "manifest_size"},
      {32, 4, 5, StatusCode::kDataLoss, "manifest_size"},
      {36, 4, 0xffffffffu, StatusCode::kDataLoss, "manifest_size"},
      {36, 4, mf + 1, StatusCode::kDataLoss, "data_offset"},
      {40, 8, ~uint64_t{0}, StatusCode::kDataLoss, "data_offset"},
      {48, 8, ~uint64_t{0}, StatusCode::kDataLoss, "truncated or extended"},
      {48, 8, 1, StatusCode::kDataLoss, "truncated or extended"},
      {56, 8, 1, StatusCode::kDataLoss, "reserved"},
      {kPackageHeaderBytes, 4, 0xffffffffu, StatusCode::kOutOfRange, "model name"},
      {kPackageHeaderBytes, 4, 5, StatusCode::kOutOfRange, "model version"},
      {entry_offset(0), 4, 2, StatusCode::kDataLoss, "chunk 0 has kind 2"},
      {entry_offset(1), 4, 1, StatusCode::kDataLoss, "chunk 1 has kind 1"},
      {entry_offset(1) + 4, 4, 9, StatusCode::kDataLoss, "reserved"},
      {entry_offset(1) + 8, 8, ~uint64_t{0} - 3, StatusCode::kDataLoss, "chunk 1 starts at offset"},
      {entry_offset(1) + 16, 8, ~uint64_t{0}, StatusCode::kDataLoss, "chunk 1 size"},
      {entry_offset(1) + 24, 8, ~uint64_t{0} - 15, StatusCode::kOutOfRange, "plaintext"},
      {entry_offset(1) + 24, 8, ~uint64_t{0} - 1000, StatusCode::kOutOfRange, "plaintext"},
      {entry_offset(3) + 16, 8, info_.chunks[3].size + 1, StatusCode::kDataLoss, "chunk 3 size"},
  };
  for (const Case& c : cases) {
    Bytes bad = package_;
    if (c.width == 4) put_u32(bad, c.at, static_cast<uint32_t>(c.value));
    else put_u64(bad, c.at, c.value);
    auto r = PackageReader::from_bytes(bad);
    ASSERT_FALSE(r.ok()) << "field at " << c.at << " = " << c.value;
    EXPECT_EQ(r.status().code(), c.code) << r.status().to_string();
    EXPECT_NE(r.status().message().find(c.needle), std::string::npos)
        << "field at " << c.at << ": " << r.status().message() << " (expected '" << c.needle << "')";
  }
  // Sizes that add up consistently but overflow: chunk 3 plaintext and size near 2^64.
  Bytes bad = package_;
  put_u64(bad, entry_offset(3) + 16, ~uint64_t{0});
  put_u64(bad, entry_offset(3) + 24, ~uint64_t{0} - 15);
  auto r = PackageReader::from_bytes(bad);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kOutOfRange) << r.status().to_string();
}

TEST_F(PackageTest, ReadChunkIndexOutOfRange) {
  auto r = PackageReader::from_bytes(package_);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->read_chunk(4, key_).status().code(), StatusCode::kOutOfRange);
}

TEST(SealTest, RefusesModelsTenetCannotImport) {
  Bytes key(kModelKeyBytes, 3);
  const std::string junk = "not an onnx model";
  EXPECT_FALSE(seal_model_to_bytes(crypto::as_bytes(junk), key, {}).ok());
  ModelBuilder b;
  b.input("x", {1}).output("y");
  b.node("NoSuchOp", {"x"}, {"y"});
  auto r = seal_model_to_bytes(crypto::as_bytes(b.bytes()), key, {});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("NoSuchOp"), std::string::npos) << r.status().message();
  EXPECT_FALSE(seal_model_to_bytes(crypto::as_bytes(test_model()), Bytes(31, 0), {}).ok());
  EXPECT_FALSE(seal_model_to_bytes(crypto::as_bytes(test_model()), key, SealOptions{"bad\nname", ""}).ok());
}

TEST(SealTest, ModelWithoutWeightsHasOnlyTheGraphChunk) {
  ModelBuilder b;
  b.input("x", {2, 2}).output("y");
  b.node("Relu", {"x"}, {"y"});
  PackageInfo info;
  Bytes key(kModelKeyBytes, 4);
  auto p = seal_model_to_bytes(crypto::as_bytes(b.bytes()), key, {}, &info);
  ASSERT_TRUE(p.ok()) << p.status().to_string();
  EXPECT_EQ(info.chunks.size(), 1u);
  auto r = PackageReader::from_bytes(*p);
  ASSERT_TRUE(r.ok());
  auto g = r->load_graph(key);
  ASSERT_TRUE(g.ok()) << g.status().to_string();
}

TEST(SealTest, UnreferencedInitializersGoToALastChunk) {
  ModelBuilder b;
  b.input("x", {2}).output("y");
  b.initializer("unused", {2}, {1.f, 2.f});
  b.initializer("w", {2}, {3.f, 4.f});
  b.node("Add", {"x", "w"}, {"y"});
  PackageInfo info;
  Bytes key(kModelKeyBytes, 5);
  auto p = seal_model_to_bytes(crypto::as_bytes(b.bytes()), key, {}, &info);
  ASSERT_TRUE(p.ok()) << p.status().to_string();
  EXPECT_EQ(info.chunks.size(), 3u);
  auto r = PackageReader::from_bytes(*p);
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->load_graph(key).ok());
}

TEST(ModelKeyTest, FileRoundTripIs0600Hex) {
  const auto dir = std::filesystem::temp_directory_path() / "tenet_seal_key";
  std::filesystem::create_directories(dir);
  const std::string path = (dir / "m.key").string();
  auto key = generate_model_key();
  ASSERT_TRUE(key.ok());
  ASSERT_TRUE(write_model_key_file(path, *key).ok());
  EXPECT_EQ(std::filesystem::status(path).permissions() & std::filesystem::perms::all,
            std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
  auto back = read_model_key_file(path);
  ASSERT_TRUE(back.ok()) << back.status().to_string();
  EXPECT_TRUE(crypto::constant_time_equal(back->view(), key->view()));
  ASSERT_TRUE(crypto::write_file(path, "abc\n").ok());
  EXPECT_EQ(read_model_key_file(path).status().code(), StatusCode::kInvalidArgument);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace tenet::seal

namespace tenet::seal {
namespace {

// Bounded loading: the package imported with its weights deferred into a store (ir/graph.h) is
// the graph the import without a store gives (itself equal to the ONNX model's import, see
// RoundTripThroughEngineIsBitwiseEqual), constant for constant, and runs bitwise alike.
TEST_F(PackageTest, ChunkedImportEqualsTheWholeImport) {
  auto r = PackageReader::from_bytes(package_);
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  auto whole = r->load_graph(key_);
  ASSERT_TRUE(whole.ok()) << whole.status().to_string();
  onnx_import::ImportOptions o;
  o.constant_store = cpu::make_plain_weight_store();
  o.min_deferred_bytes = 512;  // the test model's weights are small: defer all but the biases
  auto chunked = r->load_graph(key_, o);
  ASSERT_TRUE(chunked.ok()) << chunked.status().to_string();
  ASSERT_EQ(chunked->values.size(), whole->values.size());
  ASSERT_EQ(chunked->nodes.size(), whole->nodes.size());
  EXPECT_EQ(chunked->inputs, whole->inputs);
  EXPECT_EQ(chunked->outputs, whole->outputs);
  int deferred = 0;
  for (size_t i = 0; i < whole->values.size(); ++i) {
    const ir::Value& a = whole->values[i];
    const ir::Value& b = chunked->values[i];
    EXPECT_EQ(a.name, b.name);
    EXPECT_EQ(a.dtype, b.dtype);
    EXPECT_EQ(a.shape, b.shape);
    ASSERT_EQ(a.is_constant(), b.is_constant()) << a.name;
    if (!a.is_constant()) continue;
    EXPECT_EQ(b.deferred, a.constant.size_bytes() >= 512) << a.name;
    deferred += b.deferred ? 1 : 0;
    auto t = chunked->load_constant(static_cast<ir::ValueId>(i));
    ASSERT_TRUE(t.ok()) << t.status().to_string();
    ASSERT_EQ(t->size_bytes(), a.constant.size_bytes());
    EXPECT_EQ(0, std::memcmp(t->data(), a.constant.data(), a.constant.size_bytes())) << a.name;
  }
  EXPECT_EQ(deferred, 2);  // w2, wg (w1 has 432 bytes)
  for (size_t i = 0; i < whole->nodes.size(); ++i) {
    EXPECT_EQ(chunked->nodes[i].name, whole->nodes[i].name);
    EXPECT_EQ(chunked->nodes[i].inputs, whole->nodes[i].inputs);
    EXPECT_EQ(chunked->nodes[i].outputs, whole->nodes[i].outputs);
  }
  auto a = run_graph(*whole);
  auto b = run_graph(*chunked);
  ASSERT_EQ(a.size(), 1u);
  ASSERT_EQ(b.size(), 1u);
  EXPECT_EQ(0, std::memcmp(a[0].data(), b[0].data(), a[0].size_bytes()));

  // Tampering and a wrong key fail the import with a store as they fail the one without.
  Bytes bad = package_;
  bad[info_.chunks.back().offset + 3] ^= 1;
  auto tampered = PackageReader::from_bytes(bad);
  ASSERT_TRUE(tampered.ok());
  auto g = tampered->load_graph(key_, o);
  ASSERT_FALSE(g.ok());
  EXPECT_EQ(g.status().code(), StatusCode::kDataLoss) << g.status().to_string();
  auto wrong = r->load_graph(test_key(0x22), o);
  ASSERT_FALSE(wrong.ok());
  EXPECT_EQ(wrong.status().code(), StatusCode::kDataLoss);
}

// Large initializers are sealed as part chunks: no chunk's plaintext exceeds the part size, the
// package loads (with and without a constant store) to the ONNX model's import constant for
// constant, and a tampered, missing or misplaced part fails the load naming what failed.
class PackagePartsTest : public ::testing::Test {
 protected:
  static constexpr uint64_t kPart = 100000;  // not a multiple of 4: parts cut through floats
  void SetUp() override {
    ModelBuilder b;
    b.input("x", {1, 256}).output("y");
    b.random_initializer("big", {1000, 256}, 0.05f);   // 1,024,000 bytes: 11 parts
    b.random_initializer("bias", {1000}, 0.1f);        // stays in its weights chunk
    b.random_initializer("next", {10, 1000}, 0.05f);   // 40,000 bytes: one weights chunk
    auto& g = b.node("Gemm", {"x", "big", "bias"}, {"h"});
    ModelBuilder::attr(g, "transB", int64_t{1});
    auto& g2 = b.node("Gemm", {"h", "next"}, {"y"});
    ModelBuilder::attr(g2, "transB", int64_t{1});
    model_ = b.bytes();
    key_ = test_key(0x33);
    SealOptions o{"parts", "1"};
    o.part_bytes = kPart;
    auto p = seal_model_to_bytes(span_of(model_), key_, o, &info_);
    ASSERT_TRUE(p.ok()) << p.status().to_string();
    package_ = std::move(p).value();
  }
  // Expects a load of `bytes` to fail with kDataLoss naming `needle`.
  void expect_load_fails(const Bytes& bytes, const std::string& needle) const {
    auto r = PackageReader::from_bytes(bytes);
    Status s = r.ok() ? r->load_graph(key_).status() : r.status();
    ASSERT_FALSE(s.ok()) << "expected a failure naming '" << needle << "'";
    EXPECT_EQ(s.code(), StatusCode::kDataLoss) << s.to_string();
    EXPECT_NE(s.message().find(needle), std::string::npos) << s.message();
  }
  std::string model_;
  Bytes key_;
  Bytes package_;
  PackageInfo info_;
};

TEST_F(PackagePartsTest, LargeInitializersAreSealedInPartsAndLoadPartByPart) {
  // graph, {big, bias}, 11 parts of big, {next}
  ASSERT_EQ(info_.chunks.size(), 14u);
  EXPECT_EQ(info_.format_version, kPackageFormatVersion);
  EXPECT_EQ(info_.chunks[1].kind, ChunkKind::kWeights);
  uint64_t part_bytes = 0;
  for (size_t i = 2; i < 13; ++i) {
    EXPECT_EQ(info_.chunks[i].kind, ChunkKind::kWeightPart) << i;
    EXPECT_LE(info_.chunks[i].plaintext_size, kPart);
    part_bytes += info_.chunks[i].plaintext_size;
  }
  EXPECT_EQ(part_bytes, 1000u * 256 * 4);
  EXPECT_EQ(info_.chunks[13].kind, ChunkKind::kWeights);
  EXPECT_LT(info_.chunks[1].plaintext_size, 5000u);  // big's header and bias, not big's data

  auto want = onnx_import::import_model_bytes(std::as_bytes(std::span(model_.data(), model_.size())));
  ASSERT_TRUE(want.ok());
  auto r = PackageReader::from_bytes(package_);
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  onnx_import::ImportOptions deferring;
  deferring.constant_store = cpu::make_plain_weight_store();
  for (const onnx_import::ImportOptions& o : {onnx_import::ImportOptions{}, deferring}) {
    auto g = r->load_graph(key_, o);
    ASSERT_TRUE(g.ok()) << g.status().to_string();
    ASSERT_EQ(g->values.size(), want->values.size());
    for (size_t i = 0; i < want->values.size(); ++i) {
      const ir::Value& a = want->values[i];
      ASSERT_EQ(a.is_constant(), g->values[i].is_constant()) << a.name;
      if (!a.is_constant()) continue;
      EXPECT_EQ(g->values[i].deferred, o.constant_store != nullptr && a.constant.size_bytes() >= o.min_deferred_bytes) << a.name;
      auto t = g->load_constant(static_cast<ir::ValueId>(i));
      ASSERT_TRUE(t.ok());
      ASSERT_EQ(t->size_bytes(), a.constant.size_bytes());
      EXPECT_EQ(0, std::memcmp(t->data(), a.constant.data(), a.constant.size_bytes())) << a.name;
    }
    auto x = run_graph(*g);
    auto y = run_graph(*want);
    ASSERT_EQ(x.size(), 1u);
    EXPECT_EQ(0, std::memcmp(x[0].data(), y[0].data(), y[0].size_bytes()));
  }
}

TEST_F(PackagePartsTest, TamperedOrMisplacedPartsFailTheLoad) {
  // A flipped byte in a part.
  Bytes bad = package_;
  bad[info_.chunks[7].offset + 10] ^= 1;
  expect_load_fails(bad, "chunk 7 of 14 (weight part)");
  // The version field says 1, which has no parts: refused while parsing, before any key.
  Bytes v1 = package_;
  v1[8] = 1;
  auto r = PackageReader::from_bytes(v1);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("expected 2 (weights)"), std::string::npos) << r.status().message();
  // A part's kind turned into weights (manifest edit): the MAC refuses it.
  Bytes kind = package_;
  const size_t entry = kPackageHeaderBytes + 4 + info_.model_name.size() + 4 + info_.version.size() + 32 + kManifestEntryBytes * 5;
  kind[entry] = static_cast<uint8_t>(ChunkKind::kWeights);
  expect_load_fails(kind, "manifest MAC");
  // A part size of 0 is refused when sealing.
  SealOptions o;
  o.part_bytes = 0;
  EXPECT_EQ(seal_model_to_bytes(span_of(model_), key_, o).status().code(), StatusCode::kInvalidArgument);
}

// y = x·w with a 4x4 weight w (64 bytes of raw data).
onnx::ModelProto small_matmul() {
  ModelBuilder b;
  b.input("x", {1, 4}).output("y");
  b.random_initializer("w", {4, 4});
  b.node("MatMul", {"x", "w"}, {"y"});
  onnx::ModelProto m;
  EXPECT_TRUE(m.ParseFromString(b.bytes()));
  return m;
}

// Drops `t`'s data and marks it as external data at `location` of `length` bytes (tenet's part
// mark when location is kPartsLocation).
void mark_external(onnx::TensorProto& t, const std::string& location, const std::string& length) {
  t.clear_raw_data();
  t.clear_float_data();
  t.set_data_location(onnx::TensorProto::EXTERNAL);
  auto* l = t.add_external_data();
  l->set_key("location");
  l->set_value(location);
  auto* n = t.add_external_data();
  n->set_key("length");
  n->set_value(length);
}

// A plain ONNX model may not smuggle tenet's part mark: external data is refused on import.
TEST(PackageParts, ThePartMarkIsNotLoadableOutsideAPackage) {
  onnx::ModelProto m = small_matmul();
  mark_external(*m.mutable_graph()->mutable_initializer(0), kPartsLocation, "64");
  const std::string smuggled = m.SerializeAsString();
  auto g = onnx_import::import_model_bytes(std::as_bytes(std::span(smuggled.data(), smuggled.size())));
  ASSERT_FALSE(g.ok());
  EXPECT_EQ(g.status().code(), StatusCode::kUnimplemented);
  EXPECT_FALSE(seal_model_to_bytes(span_of(smuggled), test_key(1), {}).ok());
}

// Authentic packages (sealed under the right key, so MAC and GCM pass) whose parts do not fit
// their initializer: every one is refused with an error naming the problem, none crashes or loads.
TEST(PackageParts, MalformedPartsInAuthenticPackagesAreRefused) {
  onnx::ModelProto model = small_matmul();
  const onnx::TensorProto w = model.graph().initializer(0);
  ASSERT_EQ(w.raw_data().size(), 64u);
  model.mutable_graph()->clear_initializer();
  const Bytes key = test_key(0x44);

  const auto secret = [](const std::string& s) { return SecretBytes::copy_of(crypto::as_bytes(s)); };
  // A weights chunk holding `w` marked as `length` bytes in parts (location `where`), or `w` whole.
  const auto weights = [&](std::optional<std::string> length, const std::string& where = kPartsLocation) {
    onnx::GraphProto g;
    onnx::TensorProto* t = g.add_initializer();
    *t = w;
    if (length) mark_external(*t, where, *length);
    return ChunkPlaintext{ChunkKind::kWeights, secret(g.SerializeAsString())};
  };
  const auto part = [&](size_t from, size_t n) {
    std::string raw = w.raw_data() + std::string(16, '\x7f');
    return ChunkPlaintext{ChunkKind::kWeightPart, secret(raw.substr(from, n))};
  };
  struct Case {
    const char* what;
    std::vector<std::function<ChunkPlaintext()>> chunks;  // after the graph chunk
    const char* needle;
  };
  const Case cases[] = {
      {"parts one byte short", {[&] { return weights("64"); }, [&] { return part(0, 40); }, [&] { return part(40, 23); }},
       "parts end after 63 of its 64 bytes"},
      {"parts four bytes long", {[&] { return weights("64"); }, [&] { return part(0, 68); }}, "parts hold more than its 64 bytes"},
      {"a part after a whole initializer", {[&] { return weights(std::nullopt); }, [&] { return part(0, 64); }},
       "belongs to no initializer"},
      {"an empty part", {[&] { return weights("64"); }, [&] { return part(0, 0); }, [&] { return part(0, 64); }}, "empty part"},
      {"no parts at all", {[&] { return weights("64"); }}, "chunk 2 is not a part"},
      {"a length the shape disagrees with", {[&] { return weights("60"); }, [&] { return part(0, 60); }}, "60 bytes in parts"},
      {"a length that is not a number", {[&] { return weights("6e1"); }, [&] { return part(0, 64); }}, "is not a number"},
      {"another external location", {[&] { return weights("64", "weights.bin"); }, [&] { return part(0, 64); }},
       "external data other than tenet's part chunks"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    std::vector<ChunkPlaintext> chunks;
    chunks.push_back(ChunkPlaintext{ChunkKind::kGraph, secret(model.SerializeAsString())});
    for (const auto& make : c.chunks) chunks.push_back(make());
    auto p = seal_chunks_to_bytes(std::move(chunks), key, {});
    ASSERT_TRUE(p.ok()) << p.status().to_string();
    auto r = PackageReader::from_bytes(*p);
    ASSERT_TRUE(r.ok()) << r.status().to_string();
    auto g = r->load_graph(key);
    ASSERT_FALSE(g.ok());
    EXPECT_NE(g.status().message().find(c.needle), std::string::npos) << g.status().message();
  }
  // The same chunks done right load.
  std::vector<ChunkPlaintext> good;
  good.push_back(ChunkPlaintext{ChunkKind::kGraph, secret(model.SerializeAsString())});
  good.push_back(weights("64"));
  good.push_back(part(0, 24));
  good.push_back(part(24, 40));
  auto p = seal_chunks_to_bytes(std::move(good), key, {});
  ASSERT_TRUE(p.ok());
  auto g = PackageReader::from_bytes(*p)->load_graph(key);
  ASSERT_TRUE(g.ok()) << g.status().to_string();
}

}  // namespace
}  // namespace tenet::seal
