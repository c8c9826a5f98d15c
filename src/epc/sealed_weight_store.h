// Streamed weights at rest in untrusted memory (weight streaming, src/engine/cpu/
// weight_streaming.h): what TEESlice calls untrusted memory used as an encrypted cache, and what
// Vessels' on-demand parameter loading reads from.
//
// Each entry is cut into chunks of kChunkBytes, each sealed with AES-128-GCM under a key drawn
// inside the enclave when the store is made (it never leaves the enclave and dies with it; why
// 128 bits suffice for such a key: crypto.h, aes128gcm_*). The
// IV is (entry, chunk) — unique because entries are written once and never rewritten — and the
// AAD binds the store's random id, the entry, the chunk, and the entry's size, so the host can
// neither alter a chunk nor swap chunks within or across entries or stores without the load
// failing (kDataLoss, naming the entry and chunk). The ciphertext lives in ordinary process
// memory, outside the enclave heap: it costs no EPC.
//
// An entry put with piece_bytes > 0 is chunked at that size instead, so that a kernel can take
// it piece by piece (get_piece: one chunk, decrypted straight into the caller's L2-sized buffer).
//
// Loading decrypts with crypto::aes128gcm_open_from_untrusted, which authenticates exactly the
// bytes it decrypts even if the host rewrites the untrusted copy concurrently (no double fetch).
// get() loads chunks in parallel on the calling thread's OpenMP team.
#pragma once

#include <array>
#include <functional>
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <vector>

#include "core/status.h"
#include "crypto/crypto.h"
#include "engine/cpu/weight_streaming.h"

namespace tenet::epc {

class SealedWeightStore final : public cpu::WeightStore {
 public:
  static constexpr size_t kChunkBytes = 256 * 1024;

  static Result<std::shared_ptr<SealedWeightStore>> create();
  ~SealedWeightStore() override;

  Result<uint32_t> put(std::span<const std::byte> data, uint64_t piece_bytes) override;
  // Seals each chunk as `fill` produces it: only one chunk of plaintext exists at a time.
  Result<uint32_t> put_from(uint64_t size, uint64_t piece_bytes, const Filler& fill) override;
  Status get(uint32_t id, std::span<std::byte> dst) override;
  Status get_piece(uint32_t id, uint64_t piece, std::span<std::byte> dst) override;
  Status dot_piece(uint32_t id, uint64_t piece, const float* x, int64_t k, std::span<float> lanes) override;
  bool dots_pieces(int64_t k) const override;
  // get() of a large entry on the team (measured once per process and GCM backend).
  double load_bytes_per_second(int threads) override;
  uint64_t stored_bytes() const override;
  std::string describe() const override;

  // The untrusted copy of an entry (chunks of ciphertext || tag, back to back), as the host sees
  // it and may tamper with it. For tests.
  std::span<uint8_t> untrusted_entry(uint32_t id);
  uint64_t bytes_decrypted() const;

 private:
  SealedWeightStore() = default;
  // Untrusted host memory for one entry's ciphertext. A large entry is mapped on its own and
  // asked for transparent huge pages (madvise; the kernel may decline): a streamed entry is read
  // end to end on every run, and with 4 KiB pages each page costs a TLB walk and stops the
  // hardware prefetcher (alexnet's fc6, 151 MB decrypted on 2 threads: about 5% faster).
  class HostBytes {
   public:
    HostBytes() = default;
    HostBytes(const HostBytes&) = delete;
    HostBytes& operator=(const HostBytes&) = delete;
    ~HostBytes();
    bool allocate(size_t n);  // zero-filled; false when out of memory
    uint8_t* data() const { return p_; }
    size_t size() const { return n_; }

   private:
    uint8_t* p_ = nullptr;
    size_t n_ = 0, mapped_ = 0;  // mapped_ > 0: p_ is an mmap of that many bytes, else from new[]
  };
  struct Entry {
    uint64_t size = 0;
    uint64_t chunk_bytes = kChunkBytes;
    HostBytes sealed;  // untrusted: per chunk, ciphertext then tag
  };
  Result<const Entry*> entry(uint32_t id) const;
  // Seals an entry of `size` bytes chunk by chunk; `plaintext(offset, n)` gives each chunk's bytes.
  Result<uint32_t> seal_entry(uint64_t size, uint64_t piece_bytes,
                              const std::function<Result<const uint8_t*>(uint64_t, size_t)>& plaintext);
  // Opens one chunk with `open(key, iv, aad, ciphertext, tag)` (one of crypto's AES-128-GCM
  // openings); kDataLoss naming the entry and chunk when it does not verify. Defined in the .cc.
  template <typename Open>
  Status open_chunk_with(uint32_t id, const Entry& e, uint64_t chunk, const Open& open) const;
  Status open_chunk(uint32_t id, const Entry& e, size_t chunk, uint8_t* out) const;
  std::array<uint8_t, crypto::kAes128GcmKeyBytes> key_{};
  std::array<uint8_t, 16> store_id_{};
  mutable std::mutex mu_;  // guards entries_ (the vector, not the sealed bytes)
  std::vector<std::unique_ptr<Entry>> entries_;
  uint64_t stored_bytes_ = 0;
  std::atomic<uint64_t> bytes_decrypted_{0};
};

}  // namespace tenet::epc
