// Trusted (enclave side): the precomputed unblinding terms W·r of hybrid mode, sealed outside
// the enclave and consumed exactly once (Slalom §4.2's "precomputed blinding factors", with
// the storage made explicit).
//
// Life of one term, for layer L and use counter c (c counts the pads of L, from 0, and is never
// reused):
//   1. deposit(L, c, W·r): sealed with AES-256-GCM under a key generated inside the enclave,
//      IV = L || c (unique per key, since each (L, c) is deposited once), AAD = a domain label,
//      the model id, L, c and the element count; the blob goes to the untrusted HostMaskStore
//      and c joins L's queue of ready counters.
//   2. take_ready(L) pops the oldest ready counter for a request (nullopt when the pool is dry).
//   3. consume(L, c, out) takes the blob from the host store (removing it), opens it and marks
//      c consumed. It refuses — kDataLoss, naming the layer and counter — a counter already
//      consumed (a reused mask), a blob the host no longer has (missing), and a blob that does
//      not authenticate (tampered, or one of another layer, counter or model: replayed).
// A wrong or reused W·r would silently corrupt the result (Freivalds checks the accelerator's
// y' = W·x', not the unblinding), which is why the terms are authenticated, not just encrypted.
#pragma once

#include <array>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <span>

#include "core/status.h"
#include "hybrid/host_mask_store.h"

namespace tenet::hybrid {

class MaskVault {
 public:
  // `key`: 32 secret bytes; `model_id`: binds blobs to this model. `store` outlives the vault.
  MaskVault(std::span<const uint8_t, 32> key, std::span<const uint8_t, 32> model_id, HostMaskStore* store);
  ~MaskVault();

  // A counter of `layer` never handed out before (for a new deposit or an unstored, in-enclave use).
  uint64_t new_counter(uint32_t layer);
  Status deposit(uint32_t layer, uint64_t counter, std::span<const uint32_t> unblind);
  std::optional<uint64_t> take_ready(uint32_t layer);
  Status consume(uint32_t layer, uint64_t counter, std::span<uint32_t> out);
  // consume() for a term of `count` words that is never written out whole: `sink(offset, words)`
  // gets it in order, `piece_words` (a multiple of 16) at a time, each piece in a private buffer
  // wiped afterwards. The same refusals as consume(); a term that does not authenticate is known
  // only at the end, so on kDataLoss the caller must discard what the sink made of it.
  Status consume_pieces(uint32_t layer, uint64_t counter, size_t count, size_t piece_words,
                        const std::function<void(size_t, std::span<const uint32_t>)>& sink);
  // Marks a counter consumed without reading its blob (a pad computed in the enclave, or a
  // request that failed after taking it); the host's copy, if any, is dropped.
  Status retire(uint32_t layer, uint64_t counter);

  // The counter take_ready(layer) would return next (host-visible anyway: it asks for that blob).
  std::optional<uint64_t> next_ready(uint32_t layer) const;
  size_t ready_count(uint32_t layer) const;
  size_t ready_count_total() const;

 private:
  struct Book {
    uint64_t next_counter = 0;
    std::deque<uint64_t> ready;
    uint64_t consumed_below = 0;  // every counter below is consumed
    std::set<uint64_t> consumed;  // consumed counters at or above consumed_below
  };
  Status mark_consumed(uint32_t layer, uint64_t counter);  // mu_ held
  // Marks the counter consumed and takes its blob, of `count` words and a tag, from the host.
  Result<std::vector<uint8_t>> take_blob(uint32_t layer, uint64_t counter, size_t count);
  static Status unauthentic(uint32_t layer, uint64_t counter);
  std::array<uint8_t, 12> iv(uint32_t layer, uint64_t counter) const;
  std::vector<uint8_t> aad(uint32_t layer, uint64_t counter, uint64_t count) const;

  std::array<uint8_t, 32> key_;
  std::array<uint8_t, 32> model_id_;
  HostMaskStore* store_;
  mutable std::mutex mu_;
  std::map<uint32_t, Book> books_;
};

}  // namespace tenet::hybrid
