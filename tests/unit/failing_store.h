// Weight stores for the tests of weight streaming and deferred constants, each a ForwardingStore
// (every call passed to an inner store) that changes one thing:
//   FailingStore  can be told to fail every read from then on, as a tampered entry in untrusted
//                 memory fails authentication (epc::SealedWeightStore): runs and loads must refuse;
//   RatedStore    states its load rate, so the planner's residency bound sees what a test sets.
#pragma once

#include <atomic>
#include <memory>

#include "engine/cpu/weight_streaming.h"

namespace tenet::testing {

class ForwardingStore : public cpu::WeightStore {
 public:
  explicit ForwardingStore(std::shared_ptr<cpu::WeightStore> inner = cpu::make_plain_weight_store()) : inner_(std::move(inner)) {}
  Result<uint32_t> put(std::span<const std::byte> data, uint64_t piece_bytes) override { return inner_->put(data, piece_bytes); }
  Status get(uint32_t id, std::span<std::byte> dst) override { return inner_->get(id, dst); }
  Status get_piece(uint32_t id, uint64_t piece, std::span<std::byte> dst) override { return inner_->get_piece(id, piece, dst); }
  Status dot_piece(uint32_t id, uint64_t piece, const float* x, int64_t k, std::span<float> lanes) override {
    return inner_->dot_piece(id, piece, x, k, lanes);
  }
  bool dots_pieces(int64_t k) const override { return inner_->dots_pieces(k); }
  double load_bytes_per_second(int threads) override { return inner_->load_bytes_per_second(threads); }
  uint64_t stored_bytes() const override { return inner_->stored_bytes(); }
  std::string describe() const override { return inner_->describe(); }

 protected:
  std::shared_ptr<cpu::WeightStore> inner_;
};

class FailingStore final : public ForwardingStore {
 public:
  Status get(uint32_t id, std::span<std::byte> dst) override {
    if (fail_) return data_loss("entry {} failed authentication", id);
    return inner_->get(id, dst);
  }
  Status get_piece(uint32_t id, uint64_t piece, std::span<std::byte> dst) override {
    if (fail_) return data_loss("entry {} piece {} failed authentication", id, piece);
    return inner_->get_piece(id, piece, dst);
  }
  std::string describe() const override { return "failing"; }
  std::atomic<bool> fail_{false};
};

class RatedStore final : public ForwardingStore {
 public:
  explicit RatedStore(double rate) : rate_(rate) {}
  double load_bytes_per_second(int) override { return rate_; }
  std::string describe() const override { return "rated"; }

 private:
  double rate_;
};

}  // namespace tenet::testing
