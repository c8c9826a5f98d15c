// A weight store that can be told to fail every read from then on, as a tampered entry in untrusted
// memory fails authentication (epc::SealedWeightStore): for the tests of weight streaming and of
// deferred constants, which must refuse to run or load on such bytes.
#pragma once

#include <atomic>
#include <memory>

#include "engine/cpu/weight_streaming.h"

namespace tenet::testing {

class FailingStore final : public cpu::WeightStore {
 public:
  Result<uint32_t> put(std::span<const std::byte> data, uint64_t piece_bytes) override { return inner_->put(data, piece_bytes); }
  Status get(uint32_t id, std::span<std::byte> dst) override {
    if (fail_) return data_loss("entry {} failed authentication", id);
    return inner_->get(id, dst);
  }
  Status get_piece(uint32_t id, uint64_t piece, std::span<std::byte> dst) override {
    if (fail_) return data_loss("entry {} piece {} failed authentication", id, piece);
    return inner_->get_piece(id, piece, dst);
  }
  uint64_t stored_bytes() const override { return inner_->stored_bytes(); }
  std::string describe() const override { return "failing"; }
  std::atomic<bool> fail_{false};

 private:
  std::shared_ptr<cpu::WeightStore> inner_ = cpu::make_plain_weight_store();
};

}  // namespace tenet::testing
