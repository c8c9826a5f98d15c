#include "epc/sealed_weight_store.h"

#include <omp.h>

#include <cstring>

#include "crypto/crypto.h"

namespace tenet::epc {
namespace {

constexpr size_t kTag = crypto::kAesGcmTagBytes;

size_t chunk_count(uint64_t size) { return static_cast<size_t>((size + SealedWeightStore::kChunkBytes - 1) / SealedWeightStore::kChunkBytes); }

std::array<uint8_t, 12> chunk_iv(uint32_t id, uint32_t chunk) {
  std::array<uint8_t, 12> iv{};
  std::memcpy(iv.data(), &id, 4);
  std::memcpy(iv.data() + 4, &chunk, 4);
  return iv;
}

std::array<uint8_t, 32> chunk_aad(const std::array<uint8_t, 16>& store, uint32_t id, uint32_t chunk, uint64_t size) {
  std::array<uint8_t, 32> aad{};
  std::memcpy(aad.data(), store.data(), 16);
  std::memcpy(aad.data() + 16, &id, 4);
  std::memcpy(aad.data() + 20, &chunk, 4);
  std::memcpy(aad.data() + 24, &size, 8);
  return aad;
}

}  // namespace

Result<std::shared_ptr<SealedWeightStore>> SealedWeightStore::create() {
  std::shared_ptr<SealedWeightStore> s(new SealedWeightStore());
  TENET_RETURN_IF_ERROR(crypto::random_bytes(s->key_));
  TENET_RETURN_IF_ERROR(crypto::random_bytes(s->store_id_));
  return s;
}

SealedWeightStore::~SealedWeightStore() { explicit_bzero(key_.data(), key_.size()); }

Result<uint32_t> SealedWeightStore::put(std::span<const std::byte> data) {
  auto e = std::make_unique<Entry>();
  e->size = data.size();
  const size_t chunks = chunk_count(data.size());
  e->sealed.resize(data.size() + chunks * kTag);
  uint32_t id = 0;
  {
    std::lock_guard lock(mu_);
    id = static_cast<uint32_t>(entries_.size());
    entries_.push_back(nullptr);  // reserves the id
  }
  const auto* src = reinterpret_cast<const uint8_t*>(data.data());
  for (size_t c = 0; c < chunks; ++c) {
    const size_t off = c * kChunkBytes, n = std::min<size_t>(kChunkBytes, data.size() - off);
    const auto iv = chunk_iv(id, static_cast<uint32_t>(c));
    const auto aad = chunk_aad(store_id_, id, static_cast<uint32_t>(c), e->size);
    TENET_RETURN_IF_ERROR(crypto::aes256gcm_seal_into(key_, iv, aad, std::span(src + off, n),
                                                      std::span(e->sealed.data() + off + c * kTag, n + kTag)));
  }
  std::lock_guard lock(mu_);
  stored_bytes_ += e->size;
  entries_[id] = std::move(e);
  return id;
}

Status SealedWeightStore::get(uint32_t id, std::span<std::byte> dst) {
  const Entry* e = nullptr;
  {
    std::lock_guard lock(mu_);
    if (id >= entries_.size() || !entries_[id]) return not_found("sealed weight store: no entry {}", id);
    e = entries_[id].get();
  }
  if (dst.size() != e->size) return invalid_argument("sealed weight store: entry {} has {} bytes, not {}", id, e->size, dst.size());
  const size_t chunks = chunk_count(e->size);
  auto* out = reinterpret_cast<uint8_t*>(dst.data());
  int failed_chunk = -1;
  Status failure;
  // Small entries on the calling thread; large ones split over the OpenMP team.
#pragma omp parallel for schedule(static) if (chunks > 1)
  for (size_t c = 0; c < chunks; ++c) {
    const size_t off = c * kChunkBytes, n = std::min<size_t>(kChunkBytes, e->size - off);
    const uint8_t* sealed = e->sealed.data() + off + c * kTag;
    // Piece by piece through a private buffer (no double fetch), straight into enclave memory.
    uint8_t tag[kTag];
    std::memcpy(tag, sealed + n, kTag);
    const auto iv = chunk_iv(id, static_cast<uint32_t>(c));
    const auto aad = chunk_aad(store_id_, id, static_cast<uint32_t>(c), e->size);
    Status s = crypto::aes256gcm_open_from_untrusted(key_, iv, aad, std::span(sealed, n), tag, std::span(out + off, n));
    if (!s.ok()) {
#pragma omp critical(tenet_sealed_store_failure)
      if (failed_chunk < 0 || static_cast<int>(c) < failed_chunk) {
        failed_chunk = static_cast<int>(c);
        failure = s;
      }
    }
  }
  if (failed_chunk >= 0) {
    explicit_bzero(out, dst.size());
    return data_loss("sealed weight store: entry {} chunk {} failed authentication (tampered or replaced in untrusted memory): {}",
                     id, failed_chunk, failure.message());
  }
  bytes_decrypted_.fetch_add(e->size, std::memory_order_relaxed);
  return ok_status();
}

uint64_t SealedWeightStore::stored_bytes() const {
  std::lock_guard lock(mu_);
  return stored_bytes_;
}

std::string SealedWeightStore::describe() const {
  return fmt::format("AES-256-GCM ({}) in untrusted memory", crypto::aes_gcm_backend());
}

std::span<uint8_t> SealedWeightStore::untrusted_entry(uint32_t id) {
  std::lock_guard lock(mu_);
  if (id >= entries_.size() || !entries_[id]) return {};
  return entries_[id]->sealed;
}

uint64_t SealedWeightStore::bytes_decrypted() const { return bytes_decrypted_.load(std::memory_order_relaxed); }

}  // namespace tenet::epc
