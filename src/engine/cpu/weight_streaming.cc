// The plain (unprotected) weight store; the planner lives in compiled_model.cc.
#include "engine/cpu/weight_streaming.h"

#include <cstring>
#include <mutex>

namespace tenet::cpu {
namespace {

class PlainWeightStore final : public WeightStore {
 public:
  Result<uint32_t> put(std::span<const std::byte> data) override {
    std::lock_guard lock(mu_);
    entries_.emplace_back(data.begin(), data.end());
    bytes_ += data.size();
    return static_cast<uint32_t>(entries_.size() - 1);
  }
  Status get(uint32_t id, std::span<std::byte> dst) override {
    std::lock_guard lock(mu_);
    if (id >= entries_.size()) return not_found("weight store: no entry {}", id);
    const auto& e = entries_[id];
    if (e.size() != dst.size()) return invalid_argument("weight store: entry {} has {} bytes, not {}", id, e.size(), dst.size());
    std::memcpy(dst.data(), e.data(), e.size());
    return ok_status();
  }
  uint64_t stored_bytes() const override { return bytes_; }
  std::string describe() const override { return "plain memory"; }

 private:
  std::mutex mu_;
  std::vector<std::vector<std::byte>> entries_;
  uint64_t bytes_ = 0;
};

}  // namespace

std::shared_ptr<WeightStore> make_plain_weight_store() { return std::make_shared<PlainWeightStore>(); }

}  // namespace tenet::cpu
