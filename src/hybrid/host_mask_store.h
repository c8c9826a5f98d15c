// Untrusted (host side): where the enclave keeps its precomputed unblinding terms.
//
// The enclave precomputes W·r for many future one-time pads r (mask_vault.h) and cannot hold
// them all in enclave memory (for ResNet-50 at 224x224 they are ~40 MiB per image), so it seals
// each with AES-256-GCM and parks it here, in ordinary host memory. Nothing in this class is
// trusted: the host may drop, duplicate, reorder, replay or modify blobs, and the enclave's
// vault detects each of these when it opens one. The accessors below that hand out mutable
// blobs exist for that reason — they are what a malicious host can do anyway, and tests use them.
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <utility>
#include <vector>

namespace tenet::hybrid {

class HostMaskStore {
 public:
  using Key = std::pair<uint32_t, uint64_t>;  // (layer, use counter)

  void put(uint32_t layer, uint64_t counter, std::vector<uint8_t> blob);
  // Removes and returns the blob stored under (layer, counter); nullopt when there is none.
  std::optional<std::vector<uint8_t>> take(uint32_t layer, uint64_t counter);
  size_t blob_count() const;
  size_t size_bytes() const;

  // What a hostile host can do (and tests do): read, overwrite or delete any blob.
  std::optional<std::vector<uint8_t>> peek(uint32_t layer, uint64_t counter) const;
  void overwrite(uint32_t layer, uint64_t counter, std::vector<uint8_t> blob);
  void erase(uint32_t layer, uint64_t counter);

 private:
  mutable std::mutex mu_;
  std::map<Key, std::vector<uint8_t>> blobs_;
  size_t size_bytes_ = 0;
};

}  // namespace tenet::hybrid
