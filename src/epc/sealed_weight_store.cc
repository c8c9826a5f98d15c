#include "epc/sealed_weight_store.h"

#include <omp.h>
#include <sys/mman.h>

#include <algorithm>
#include <cstring>
#include <new>

#include "crypto/crypto.h"

namespace tenet::epc {
namespace {

constexpr size_t kTag = crypto::kAesGcmTagBytes;

size_t chunk_count(uint64_t size, uint64_t chunk_bytes) { return static_cast<size_t>((size + chunk_bytes - 1) / chunk_bytes); }

std::array<uint8_t, 12> chunk_iv(uint32_t id, uint32_t chunk) {
  std::array<uint8_t, 12> iv{};
  std::memcpy(iv.data(), &id, 4);
  std::memcpy(iv.data() + 4, &chunk, 4);
  return iv;
}

// Binds the store, the entry, the chunk's index, and the entry's size and chunking.
std::array<uint8_t, 40> chunk_aad(const std::array<uint8_t, 16>& store, uint32_t id, uint32_t chunk, uint64_t size,
                                  uint64_t chunk_bytes) {
  std::array<uint8_t, 40> aad{};
  std::memcpy(aad.data(), store.data(), 16);
  std::memcpy(aad.data() + 16, &id, 4);
  std::memcpy(aad.data() + 20, &chunk, 4);
  std::memcpy(aad.data() + 24, &size, 8);
  std::memcpy(aad.data() + 32, &chunk_bytes, 8);
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

Result<uint32_t> SealedWeightStore::put(std::span<const std::byte> data, uint64_t piece_bytes) {
  return seal_entry(data.size(), piece_bytes, [&data](uint64_t off, size_t n) -> Result<const uint8_t*> {
    return reinterpret_cast<const uint8_t*>(data.data()) + off;
  });
}

Result<uint32_t> SealedWeightStore::put_from(uint64_t size, uint64_t piece_bytes, const Filler& fill) {
  // One chunk of plaintext, wiped when done: it is a weight in the clear.
  std::vector<uint8_t> chunk;
  struct Wipe {
    std::vector<uint8_t>& b;
    ~Wipe() { if (!b.empty()) explicit_bzero(b.data(), b.size()); }
  } wipe{chunk};
  return seal_entry(size, piece_bytes, [&](uint64_t off, size_t n) -> Result<const uint8_t*> {
    chunk.resize(std::max(chunk.size(), n));
    TENET_RETURN_IF_ERROR(fill(off, std::span(reinterpret_cast<std::byte*>(chunk.data()), n)));
    return chunk.data();
  });
}

namespace {
constexpr size_t kHugePage = size_t{2} << 20;
}  // namespace

bool SealedWeightStore::HostBytes::allocate(size_t n) {
  if (n >= kHugePage) {
    const size_t len = (n + kHugePage - 1) / kHugePage * kHugePage;
    void* m = ::mmap(nullptr, len + kHugePage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) return false;
    // Align to a huge page (the kernel backs only aligned 2 MiB ranges with one) and unmap the slack.
    auto* base = static_cast<uint8_t*>(m);
    const size_t head = (kHugePage - reinterpret_cast<uintptr_t>(base) % kHugePage) % kHugePage;
    if (head > 0) ::munmap(base, head);
    if (kHugePage - head > 0) ::munmap(base + head + len, kHugePage - head);
    p_ = base + head;
    mapped_ = len;
    (void)::madvise(p_, len, MADV_HUGEPAGE);  // advice only
  } else {
    p_ = new (std::nothrow) uint8_t[n == 0 ? 1 : n]();
    if (p_ == nullptr) return false;
  }
  n_ = n;
  return true;
}

SealedWeightStore::HostBytes::~HostBytes() {
  if (mapped_ > 0) {
    ::munmap(p_, mapped_);
  } else {
    delete[] p_;
  }
}

Result<uint32_t> SealedWeightStore::seal_entry(uint64_t size, uint64_t piece_bytes,
                                               const std::function<Result<const uint8_t*>(uint64_t, size_t)>& plaintext) {
  auto e = std::make_unique<Entry>();
  e->size = size;
  e->chunk_bytes = piece_bytes > 0 ? piece_bytes : kChunkBytes;
  if (e->chunk_bytes > (uint64_t{1} << 32)) return invalid_argument("sealed weight store: pieces of {} bytes", piece_bytes);
  const size_t chunks = chunk_count(size, e->chunk_bytes);
  if (chunks > UINT32_MAX) return invalid_argument("sealed weight store: {} chunks in one entry", chunks);
  if (!e->sealed.allocate(size + chunks * kTag)) {
    return resource_exhausted("sealed weight store: cannot allocate {} bytes of host memory", size + chunks * kTag);
  }
  uint32_t id = 0;
  {
    std::lock_guard lock(mu_);
    id = static_cast<uint32_t>(entries_.size());
    entries_.push_back(nullptr);  // reserves the id
  }
  const uint64_t cb = e->chunk_bytes;
  for (size_t c = 0; c < chunks; ++c) {
    const size_t off = c * cb, n = std::min<size_t>(cb, size - off);
    TENET_ASSIGN_OR_RETURN(const uint8_t* src, plaintext(off, n));
    const auto iv = chunk_iv(id, static_cast<uint32_t>(c));
    const auto aad = chunk_aad(store_id_, id, static_cast<uint32_t>(c), e->size, cb);
    TENET_RETURN_IF_ERROR(crypto::aes128gcm_seal_into(key_, iv, aad, std::span(src, n),
                                                      std::span(e->sealed.data() + off + c * kTag, n + kTag)));
  }
  std::lock_guard lock(mu_);
  stored_bytes_ += e->size;
  entries_[id] = std::move(e);
  return id;
}

Result<const SealedWeightStore::Entry*> SealedWeightStore::entry(uint32_t id) const {
  std::lock_guard lock(mu_);
  if (id >= entries_.size() || !entries_[id]) return not_found("sealed weight store: no entry {}", id);
  return entries_[id].get();
}

template <typename Open>
Status SealedWeightStore::open_chunk_with(uint32_t id, const Entry& e, uint64_t chunk, const Open& open) const {
  const uint64_t off = chunk * e.chunk_bytes, n = std::min<uint64_t>(e.chunk_bytes, e.size - off);
  const uint8_t* sealed = e.sealed.data() + off + chunk * kTag;
  const auto iv = chunk_iv(id, static_cast<uint32_t>(chunk));
  const auto aad = chunk_aad(store_id_, id, static_cast<uint32_t>(chunk), e.size, e.chunk_bytes);
  Status s = open(crypto::ByteSpan(key_), crypto::ByteSpan(iv), crypto::ByteSpan(aad), crypto::ByteSpan(sealed, n), crypto::ByteSpan(sealed + n, kTag));
  if (s.code() != StatusCode::kDataLoss) return s;
  return data_loss("sealed weight store: entry {} chunk {} failed authentication (tampered or replaced in untrusted memory): {}", id,
                   chunk, s.message());
}

Status SealedWeightStore::open_chunk(uint32_t id, const Entry& e, size_t chunk, uint8_t* out) const {
  return open_chunk_with(id, e, chunk, [out](crypto::ByteSpan key, crypto::ByteSpan iv, crypto::ByteSpan aad, crypto::ByteSpan text, crypto::ByteSpan tag) {
    return crypto::aes128gcm_open_from_untrusted(key, iv, aad, text, tag, std::span(out, text.size()));
  });
}

Status SealedWeightStore::get(uint32_t id, std::span<std::byte> dst) {
  TENET_ASSIGN_OR_RETURN(const Entry* e, entry(id));
  if (dst.size() != e->size) return invalid_argument("sealed weight store: entry {} has {} bytes, not {}", id, e->size, dst.size());
  const size_t chunks = chunk_count(e->size, e->chunk_bytes);
  auto* out = reinterpret_cast<uint8_t*>(dst.data());
  int failed_chunk = -1;
  Status failure;
  // Small entries on the calling thread; large ones split over the OpenMP team.
#pragma omp parallel for schedule(static) if (chunks > 1)
  for (size_t c = 0; c < chunks; ++c) {
    Status s = open_chunk(id, *e, c, out + c * e->chunk_bytes);
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
    return failure;
  }
  bytes_decrypted_.fetch_add(e->size, std::memory_order_relaxed);
  return ok_status();
}

Status SealedWeightStore::get_piece(uint32_t id, uint64_t piece, std::span<std::byte> dst) {
  TENET_ASSIGN_OR_RETURN(const Entry* e, entry(id));
  const uint64_t off = piece * e->chunk_bytes;
  if (off >= e->size || dst.size() != std::min<uint64_t>(e->chunk_bytes, e->size - off)) {
    return invalid_argument("sealed weight store: entry {} has no piece {} of {} bytes", id, piece, dst.size());
  }
  TENET_RETURN_IF_ERROR(open_chunk(id, *e, static_cast<size_t>(piece), reinterpret_cast<uint8_t*>(dst.data())));
  bytes_decrypted_.fetch_add(dst.size(), std::memory_order_relaxed);
  return ok_status();
}

Status SealedWeightStore::dot_piece(uint32_t id, uint64_t piece, const float* x, int64_t k, std::span<float> lanes) {
  TENET_ASSIGN_OR_RETURN(const Entry* e, entry(id));
  if (piece * e->chunk_bytes >= e->size || k <= 0) return invalid_argument("sealed weight store: entry {} has no piece {}", id, piece);
  uint64_t n = 0;
  TENET_RETURN_IF_ERROR(open_chunk_with(id, *e, piece, [&](crypto::ByteSpan key, crypto::ByteSpan iv, crypto::ByteSpan aad, crypto::ByteSpan text, crypto::ByteSpan tag) {
    n = text.size();
    return crypto::aes128gcm_open_dot_from_untrusted(key, iv, aad, text, tag, x, static_cast<size_t>(k), lanes);
  }));
  bytes_decrypted_.fetch_add(n, std::memory_order_relaxed);
  return ok_status();
}

double SealedWeightStore::load_bytes_per_second(int threads) {
  // get() of a 32 MiB entry (beyond the caches) of a throwaway store: the load path itself.
  constexpr size_t kBytes = size_t{32} << 20;
  std::shared_ptr<SealedWeightStore> probe;
  uint32_t id = 0;
  std::vector<std::byte> out;
  const int saved = omp_get_max_threads();
  omp_set_num_threads(threads);  // get() decrypts its chunks on the team
  const double rate = cpu::measured_rate(fmt::format("sealed store get, {}", crypto::aes_gcm_backend()), threads, kBytes, [&] {
    if (!probe) {
      auto made = create();
      if (!made.ok()) return false;
      out.assign(kBytes, std::byte{1});
      auto put_id = (*made)->put(out, 0);
      if (!put_id.ok()) return false;
      probe = *made;
      id = *put_id;
    }
    return probe->get(id, out).ok();
  });
  omp_set_num_threads(saved);
  return rate;
}

bool SealedWeightStore::dots_pieces(int64_t k) const { return crypto::aes128gcm_dot_supported(k); }

uint64_t SealedWeightStore::stored_bytes() const {
  std::lock_guard lock(mu_);
  return stored_bytes_;
}

std::string SealedWeightStore::describe() const {
  return fmt::format("AES-128-GCM ({}) in untrusted memory", crypto::aes_gcm_backend());
}

std::span<uint8_t> SealedWeightStore::untrusted_entry(uint32_t id) {
  std::lock_guard lock(mu_);
  if (id >= entries_.size() || !entries_[id]) return {};
  return {entries_[id]->sealed.data(), entries_[id]->sealed.size()};
}

uint64_t SealedWeightStore::bytes_decrypted() const { return bytes_decrypted_.load(std::memory_order_relaxed); }

}  // namespace tenet::epc
