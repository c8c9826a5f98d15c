// Untrusted blob store for sealed unblinding terms (see host_mask_store.h).
#include "hybrid/host_mask_store.h"

namespace tenet::hybrid {

void HostMaskStore::put(uint32_t layer, uint64_t counter, std::vector<uint8_t> blob) { overwrite(layer, counter, std::move(blob)); }

std::optional<std::vector<uint8_t>> HostMaskStore::take(uint32_t layer, uint64_t counter) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = blobs_.find({layer, counter});
  if (it == blobs_.end()) return std::nullopt;
  std::vector<uint8_t> blob = std::move(it->second);
  size_bytes_ -= blob.size();
  blobs_.erase(it);
  return blob;
}

size_t HostMaskStore::blob_count() const {
  std::lock_guard<std::mutex> lock(mu_);
  return blobs_.size();
}

size_t HostMaskStore::size_bytes() const {
  std::lock_guard<std::mutex> lock(mu_);
  return size_bytes_;
}

std::optional<std::vector<uint8_t>> HostMaskStore::peek(uint32_t layer, uint64_t counter) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = blobs_.find({layer, counter});
  if (it == blobs_.end()) return std::nullopt;
  return it->second;
}

void HostMaskStore::overwrite(uint32_t layer, uint64_t counter, std::vector<uint8_t> blob) {
  std::lock_guard<std::mutex> lock(mu_);
  auto& slot = blobs_[{layer, counter}];
  size_bytes_ -= slot.size();
  size_bytes_ += blob.size();
  slot = std::move(blob);
}

void HostMaskStore::erase(uint32_t layer, uint64_t counter) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = blobs_.find({layer, counter});
  if (it == blobs_.end()) return;
  size_bytes_ -= it->second.size();
  blobs_.erase(it);
}

}  // namespace tenet::hybrid
