// The plain (unprotected) weight store; the planner lives in compiled_model.cc.
#include "engine/cpu/weight_streaming.h"

#include <cstring>
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

std::shared_ptr<WeightStore> make_plain_weight_store() { return std::make_shared<PlainWeightStore>(); }

}  // namespace tenet::cpu
