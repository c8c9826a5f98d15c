// The sealed weight store: streamed weights at rest in untrusted memory. Round trips are exact;
// every tampering the host can do to the untrusted copy is detected on load.
#include <gtest/gtest.h>

#include <cstring>
#include <numeric>
#include <vector>

#include "epc/sealed_weight_store.h"

namespace tenet::epc {
namespace {

std::vector<std::byte> pattern(size_t n, uint8_t seed) {
  std::vector<std::byte> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = static_cast<std::byte>((i * 131 + seed) & 0xff);
  return v;
}

TEST(SealedWeightStore, RoundTripsEntriesOfEverySize) {
  auto store = SealedWeightStore::create();
  ASSERT_TRUE(store.ok());
  const size_t sizes[] = {1, 4096, SealedWeightStore::kChunkBytes, SealedWeightStore::kChunkBytes + 1, 3 * SealedWeightStore::kChunkBytes + 17};
  std::vector<uint32_t> ids;
  uint64_t total = 0;
  for (size_t n : sizes) {
    auto id = (*store)->put(pattern(n, static_cast<uint8_t>(n)), 0);
    ASSERT_TRUE(id.ok());
    ids.push_back(*id);
    total += n;
  }
  EXPECT_EQ((*store)->stored_bytes(), total);
  for (size_t i = 0; i < ids.size(); ++i) {
    std::vector<std::byte> out(sizes[i]);
    ASSERT_TRUE((*store)->get(ids[i], out).ok());
    EXPECT_EQ(out, pattern(sizes[i], static_cast<uint8_t>(sizes[i])));
    // The untrusted copy is not the plaintext.
    auto u = (*store)->untrusted_entry(ids[i]);
    if (sizes[i] >= 64) {
      EXPECT_NE(std::memcmp(u.data(), out.data(), 64), 0);
    }
  }
  std::vector<std::byte> wrong(5);
  EXPECT_EQ((*store)->get(ids[0], wrong).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ((*store)->get(999, wrong).code(), StatusCode::kNotFound);
}

TEST(SealedWeightStore, DetectsAFlippedBitInAnyChunkAndWipesTheOutput) {
  auto store = SealedWeightStore::create();
  ASSERT_TRUE(store.ok());
  const size_t n = 3 * SealedWeightStore::kChunkBytes;
  auto id = (*store)->put(pattern(n, 1), 0);
  ASSERT_TRUE(id.ok());
  auto u = (*store)->untrusted_entry(*id);
  for (size_t chunk = 0; chunk < 3; ++chunk) {
    const size_t at = chunk * (SealedWeightStore::kChunkBytes + 16) + 100;
    u[at] ^= 0x01;
    std::vector<std::byte> out(n, std::byte{0x5a});
    Status s = (*store)->get(*id, out);
    EXPECT_EQ(s.code(), StatusCode::kDataLoss);
    EXPECT_NE(s.message().find("chunk " + std::to_string(chunk)), std::string::npos) << s.message();
    EXPECT_TRUE(std::all_of(out.begin(), out.end(), [](std::byte b) { return b == std::byte{0}; })) << "no plaintext left";
    u[at] ^= 0x01;
  }
  std::vector<std::byte> out(n);
  EXPECT_TRUE((*store)->get(*id, out).ok());  // restored: loads again
  // A tampered tag.
  u[SealedWeightStore::kChunkBytes + 3] ^= 0x80;
  EXPECT_EQ((*store)->get(*id, out).code(), StatusCode::kDataLoss);
}

TEST(SealedWeightStore, RefusesChunksSwappedAcrossEntriesOrStores) {
  auto a = SealedWeightStore::create();
  auto b = SealedWeightStore::create();
  ASSERT_TRUE(a.ok() && b.ok());
  const size_t n = SealedWeightStore::kChunkBytes;
  auto id0 = (*a)->put(pattern(n, 1), 0);
  auto id1 = (*a)->put(pattern(n, 2), 0);
  auto other = (*b)->put(pattern(n, 1), 0);
  ASSERT_TRUE(id0.ok() && id1.ok() && other.ok());
  ASSERT_EQ(*id0, *other);  // same entry id in both stores
  auto u0 = (*a)->untrusted_entry(*id0), u1 = (*a)->untrusted_entry(*id1), uo = (*b)->untrusted_entry(*other);
  std::vector<uint8_t> saved(u0.begin(), u0.end());
  std::vector<std::byte> out(n);
  std::copy(u1.begin(), u1.end(), u0.begin());  // another entry's sealed bytes (a replay within the store)
  EXPECT_EQ((*a)->get(*id0, out).code(), StatusCode::kDataLoss);
  std::copy(uo.begin(), uo.end(), u0.begin());  // the same entry of another store
  EXPECT_EQ((*a)->get(*id0, out).code(), StatusCode::kDataLoss);
  std::copy(saved.begin(), saved.end(), u0.begin());
  ASSERT_TRUE((*a)->get(*id0, out).ok());
  EXPECT_EQ(out, pattern(n, 1));
}

// Entries stored in pieces (for kernels that consume a weight piece by piece): each piece reads
// back alone, the whole entry reads back too, and a piece swapped with another piece, or read with
// a wrong size, is refused.
TEST(SealedWeightStore, PiecesReadBackAloneAndAreBoundToTheirPlace) {
  auto store = SealedWeightStore::create();
  ASSERT_TRUE(store.ok());
  const size_t piece = 3 * 36864, n = 10 * piece + 1000;  // whole rows of a [*, 9216] float weight, and a short last piece
  const auto data = pattern(n, 9);
  auto id = (*store)->put(data, piece);
  ASSERT_TRUE(id.ok());
  std::vector<std::byte> whole(n);
  ASSERT_TRUE((*store)->get(*id, whole).ok());
  EXPECT_EQ(whole, data);
  for (uint64_t p = 0; p <= 10; ++p) {
    const size_t len = p < 10 ? piece : 1000;
    std::vector<std::byte> out(len);
    ASSERT_TRUE((*store)->get_piece(*id, p, out).ok()) << p;
    EXPECT_TRUE(std::equal(out.begin(), out.end(), data.begin() + static_cast<std::ptrdiff_t>(p * piece))) << p;
  }
  std::vector<std::byte> wrong(piece - 4);
  EXPECT_EQ((*store)->get_piece(*id, 0, wrong).code(), StatusCode::kInvalidArgument);
  std::vector<std::byte> out(piece);
  EXPECT_EQ((*store)->get_piece(*id, 11, out).code(), StatusCode::kInvalidArgument);
  // Swap pieces 1 and 2 in untrusted memory: both refused.
  auto u = (*store)->untrusted_entry(*id);
  const size_t stride = piece + 16;
  std::vector<uint8_t> p1(u.begin() + stride, u.begin() + 2 * stride);
  std::copy(u.begin() + 2 * stride, u.begin() + 3 * stride, u.begin() + stride);
  std::copy(p1.begin(), p1.end(), u.begin() + 2 * stride);
  EXPECT_EQ((*store)->get_piece(*id, 1, out).code(), StatusCode::kDataLoss);
  EXPECT_EQ((*store)->get_piece(*id, 2, out).code(), StatusCode::kDataLoss);
  EXPECT_EQ((*store)->get(*id, whole).code(), StatusCode::kDataLoss);
  EXPECT_TRUE((*store)->get_piece(*id, 3, out).ok());
}

}  // namespace
}  // namespace tenet::epc

namespace tenet::epc {
namespace {

// put_from seals what its filler produces chunk by chunk: the same entry as put(), and a filler's
// failure fails the put.
TEST(SealedWeightStore, PutFromEqualsPut) {
  auto store = SealedWeightStore::create();
  ASSERT_TRUE(store.ok());
  const auto data = pattern(3 * SealedWeightStore::kChunkBytes + 17, 9);
  auto id = (*store)->put_from(data.size(), 100000, [&](uint64_t off, std::span<std::byte> dst) {
    std::memcpy(dst.data(), data.data() + off, dst.size());
    return ok_status();
  });
  ASSERT_TRUE(id.ok()) << id.status().to_string();
  std::vector<std::byte> back(data.size());
  ASSERT_TRUE((*store)->get(*id, back).ok());
  EXPECT_EQ(back, data);
  std::vector<std::byte> piece(100000);
  ASSERT_TRUE((*store)->get_piece(*id, 2, piece).ok());
  EXPECT_EQ(0, std::memcmp(piece.data(), data.data() + 200000, piece.size()));
  auto failed = (*store)->put_from(data.size(), 0, [](uint64_t, std::span<std::byte>) { return data_loss("source gone"); });
  EXPECT_FALSE(failed.ok());
}

// Deferred constants (ir::ConstantStore) read back by any byte range; a tampered entry is refused.
TEST(SealedWeightStore, ConstantRangesReadBackAndTamperingIsRefused) {
  auto store = SealedWeightStore::create();
  ASSERT_TRUE(store.ok());
  const auto data = pattern(3 * cpu::WeightStore::kConstantPieceBytes + 17, 3);
  auto id = (*store)->put_constant(data);
  ASSERT_TRUE(id.ok());
  for (auto [off, n] : {std::pair<uint64_t, size_t>{0, data.size()}, {5, 17}, {cpu::WeightStore::kConstantPieceBytes - 3, 300000},
                        {data.size() - 20, 20}}) {
    std::vector<std::byte> got(n);
    ASSERT_TRUE((*store)->get_constant(*id, data.size(), off, got).ok()) << off;
    EXPECT_EQ(0, std::memcmp(got.data(), data.data() + off, n)) << off;
  }
  (*store)->untrusted_entry(*id)[cpu::WeightStore::kConstantPieceBytes + 16 + 5] ^= 1;  // piece 1 (after piece 0 and its tag)
  std::vector<std::byte> got(100);
  EXPECT_TRUE((*store)->get_constant(*id, data.size(), 0, got).ok());  // piece 0 is intact
  Status s = (*store)->get_constant(*id, data.size(), cpu::WeightStore::kConstantPieceBytes - 50, got);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.code(), StatusCode::kDataLoss) << s.to_string();
}

}  // namespace
}  // namespace tenet::epc
