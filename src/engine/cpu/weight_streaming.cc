// The plain (unprotected) weight store; the planner lives in compiled_model.cc.
#include "engine/cpu/weight_streaming.h"

#include <cstring>
#include <algorithm>
#include <mutex>

namespace tenet::cpu {
namespace {

class PlainWeightStore final : public WeightStore {
 public:
  Result<uint32_t> put(std::span<const std::byte> data, uint64_t piece_bytes) override {
    std::lock_guard lock(mu_);
    entries_.push_back({std::vector<std::byte>(data.begin(), data.end()), piece_bytes});
    bytes_ += data.size();
    return static_cast<uint32_t>(entries_.size() - 1);
  }
  Status get(uint32_t id, std::span<std::byte> dst) override {
    std::lock_guard lock(mu_);
    if (id >= entries_.size()) return not_found("weight store: no entry {}", id);
    const auto& e = entries_[id].bytes;
    if (e.size() != dst.size()) return invalid_argument("weight store: entry {} has {} bytes, not {}", id, e.size(), dst.size());
    std::memcpy(dst.data(), e.data(), e.size());
    return ok_status();
  }
  Status get_piece(uint32_t id, uint64_t piece, std::span<std::byte> dst) override {
    std::lock_guard lock(mu_);
    if (id >= entries_.size()) return not_found("weight store: no entry {}", id);
    const Entry& e = entries_[id];
    if (e.piece_bytes == 0) return failed_precondition("weight store: entry {} was not stored in pieces", id);
    const uint64_t off = piece * e.piece_bytes;
    if (off >= e.bytes.size() || dst.size() != std::min<uint64_t>(e.piece_bytes, e.bytes.size() - off)) {
      return invalid_argument("weight store: entry {} has no piece {} of {} bytes", id, piece, dst.size());
    }
    std::memcpy(dst.data(), e.bytes.data() + off, dst.size());
    return ok_status();
  }
  uint64_t stored_bytes() const override { return bytes_; }
  std::string describe() const override { return "plain memory"; }

 private:
  struct Entry {
    std::vector<std::byte> bytes;
    uint64_t piece_bytes = 0;
  };
  std::mutex mu_;
  std::vector<Entry> entries_;
  uint64_t bytes_ = 0;
};

}  // namespace

Result<uint32_t> WeightStore::put_from(uint64_t size, uint64_t piece_bytes, const Filler& fill) {
  std::vector<std::byte> bytes(static_cast<size_t>(size));
  TENET_RETURN_IF_ERROR(fill(0, bytes));
  return put(bytes, piece_bytes);
}

Status WeightStore::dot_piece(uint32_t, uint64_t, const float*, int64_t, std::span<float>) {
  return unimplemented("{}: no dot products from stored pieces", describe());
}

Status WeightStore::get_constant(uint32_t id, uint64_t entry_bytes, uint64_t offset, std::span<std::byte> dst) {
  constexpr uint64_t kPiece = kConstantPieceBytes;
  if (offset + dst.size() > entry_bytes) return invalid_argument("weight store: bytes beyond entry {}", id);
  std::vector<std::byte> partial;
  uint64_t at = offset;
  const uint64_t end = offset + dst.size();
  while (at < end) {
    const uint64_t piece = at / kPiece, piece_start = piece * kPiece;
    const uint64_t piece_size = std::min(kPiece, entry_bytes - piece_start);
    const uint64_t n = std::min(end, piece_start + piece_size) - at;
    std::byte* out = dst.data() + (at - offset);
    if (at == piece_start && n == piece_size) {
      TENET_RETURN_IF_ERROR(get_piece(id, piece, std::span(out, n)));  // a whole piece: straight in
    } else {
      partial.resize(piece_size);
      TENET_RETURN_IF_ERROR(get_piece(id, piece, partial));
      std::memcpy(out, partial.data() + (at - piece_start), n);
    }
    at += n;
  }
  return ok_status();
}

std::shared_ptr<WeightStore> make_plain_weight_store() { return std::make_shared<PlainWeightStore>(); }

}  // namespace tenet::cpu
