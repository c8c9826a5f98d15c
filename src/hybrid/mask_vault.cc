// Sealed, use-once unblinding terms (see mask_vault.h).
#include "hybrid/mask_vault.h"

#include <cstring>
#include <string_view>

#include "crypto/crypto.h"

namespace tenet::hybrid {

namespace {
void put_be(std::vector<uint8_t>& out, uint64_t v, int bytes) {
  for (int i = bytes - 1; i >= 0; --i) out.push_back(static_cast<uint8_t>(v >> (8 * i)));
}
}  // namespace

MaskVault::MaskVault(std::span<const uint8_t, 32> key, std::span<const uint8_t, 32> model_id, HostMaskStore* store)
    : store_(store) {
  std::memcpy(key_.data(), key.data(), key_.size());
  std::memcpy(model_id_.data(), model_id.data(), model_id_.size());
}

MaskVault::~MaskVault() { crypto::secure_wipe(key_.data(), key_.size()); }

std::array<uint8_t, 12> MaskVault::iv(uint32_t layer, uint64_t counter) const {
  std::array<uint8_t, 12> v{};
  for (int i = 0; i < 4; ++i) v[static_cast<size_t>(i)] = static_cast<uint8_t>(layer >> (24 - 8 * i));
  for (int i = 0; i < 8; ++i) v[static_cast<size_t>(4 + i)] = static_cast<uint8_t>(counter >> (56 - 8 * i));
  return v;
}

std::vector<uint8_t> MaskVault::aad(uint32_t layer, uint64_t counter, uint64_t count) const {
  constexpr std::string_view kLabel = "tenet/hybrid/unblind/v1";
  std::vector<uint8_t> a;
  a.reserve(kLabel.size() + model_id_.size() + 20);
  for (char ch : kLabel) a.push_back(static_cast<uint8_t>(ch));
  for (uint8_t b : model_id_) a.push_back(b);
  put_be(a, layer, 4);
  put_be(a, counter, 8);
  put_be(a, count, 8);
  return a;
}

uint64_t MaskVault::new_counter(uint32_t layer) {
  std::lock_guard<std::mutex> lock(mu_);
  return books_[layer].next_counter++;
}

Status MaskVault::deposit(uint32_t layer, uint64_t counter, std::span<const uint32_t> unblind) {
  const auto iv_bytes = iv(layer, counter);
  const std::vector<uint8_t> aad_bytes = aad(layer, counter, unblind.size());
  std::vector<uint8_t> blob(unblind.size() * sizeof(uint32_t) + crypto::kAesGcmTagBytes);
  TENET_RETURN_IF_ERROR(crypto::aes256gcm_seal_into(
      key_, iv_bytes, aad_bytes, crypto::ByteSpan(reinterpret_cast<const uint8_t*>(unblind.data()), unblind.size_bytes()), blob));
  {
    std::lock_guard<std::mutex> lock(mu_);
    Book& b = books_[layer];
    if (counter >= b.next_counter) return internal_error("hybrid: deposit of counter {} of layer {} never handed out", counter, layer);
    if (counter < b.consumed_below || b.consumed.count(counter)) {
      return failed_precondition("hybrid: deposit for layer {} use {}, already consumed", layer, counter);
    }
    b.ready.push_back(counter);
  }
  store_->put(layer, counter, std::move(blob));
  return ok_status();
}

std::optional<uint64_t> MaskVault::take_ready(uint32_t layer) {
  std::lock_guard<std::mutex> lock(mu_);
  Book& b = books_[layer];
  if (b.ready.empty()) return std::nullopt;
  const uint64_t c = b.ready.front();
  b.ready.pop_front();
  return c;
}

Status MaskVault::mark_consumed(uint32_t layer, uint64_t counter) {
  Book& b = books_[layer];
  if (counter >= b.next_counter) {
    return data_loss("hybrid: unblinding term for layer {} use {} was never issued", layer, counter);
  }
  if (counter < b.consumed_below || !b.consumed.insert(counter).second) {
    return data_loss("hybrid: unblinding term for layer {} use {} was already consumed (a reused mask is refused)", layer, counter);
  }
  while (!b.consumed.empty() && *b.consumed.begin() == b.consumed_below) {
    b.consumed.erase(b.consumed.begin());
    ++b.consumed_below;
  }
  return ok_status();
}

Result<std::vector<uint8_t>> MaskVault::take_blob(uint32_t layer, uint64_t counter, size_t count) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    TENET_RETURN_IF_ERROR(mark_consumed(layer, counter));
  }
  std::optional<std::vector<uint8_t>> blob = store_->take(layer, counter);
  if (!blob) return data_loss("hybrid: the precomputed unblinding term for layer {} use {} is missing from the host store", layer, counter);
  const size_t want = count * sizeof(uint32_t) + crypto::kAesGcmTagBytes;
  if (blob->size() != want) {
    return data_loss("hybrid: the precomputed unblinding term for layer {} use {} has {} bytes, expected {}", layer, counter,
                     blob->size(), want);
  }
  return std::move(*blob);
}

Status MaskVault::unauthentic(uint32_t layer, uint64_t counter) {
  return data_loss("hybrid: the precomputed unblinding term for layer {} use {} does not authenticate (tampered or replayed)", layer,
                   counter);
}

Status MaskVault::consume(uint32_t layer, uint64_t counter, std::span<uint32_t> out) {
  TENET_ASSIGN_OR_RETURN(const std::vector<uint8_t> blob, take_blob(layer, counter, out.size()));
  Status s = crypto::aes256gcm_open_into(key_, iv(layer, counter), aad(layer, counter, out.size()), blob,
                                         std::span<uint8_t>(reinterpret_cast<uint8_t*>(out.data()), out.size_bytes()));
  return s.ok() ? ok_status() : unauthentic(layer, counter);
}

Status MaskVault::consume_pieces(uint32_t layer, uint64_t counter, size_t count, size_t piece_words,
                                 const std::function<void(size_t, std::span<const uint32_t>)>& sink) {
  if (piece_words == 0 || piece_words % 16 != 0) return invalid_argument("hybrid: pieces of {} words (a multiple of 16 > 0)", piece_words);
  TENET_ASSIGN_OR_RETURN(const std::vector<uint8_t> blob, take_blob(layer, counter, count));
  Status s = crypto::aes256gcm_open_pieces(key_, iv(layer, counter), aad(layer, counter, count), blob, piece_words * sizeof(uint32_t),
                                           [&sink](size_t offset, crypto::ByteSpan piece) {
                                             sink(offset / sizeof(uint32_t),
                                                  std::span(reinterpret_cast<const uint32_t*>(piece.data()), piece.size() / sizeof(uint32_t)));
                                           });
  return s.ok() ? ok_status() : unauthentic(layer, counter);
}

Status MaskVault::retire(uint32_t layer, uint64_t counter) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    TENET_RETURN_IF_ERROR(mark_consumed(layer, counter));
  }
  store_->erase(layer, counter);
  return ok_status();
}

std::optional<uint64_t> MaskVault::next_ready(uint32_t layer) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = books_.find(layer);
  if (it == books_.end() || it->second.ready.empty()) return std::nullopt;
  return it->second.ready.front();
}

size_t MaskVault::ready_count(uint32_t layer) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = books_.find(layer);
  return it == books_.end() ? 0 : it->second.ready.size();
}

size_t MaskVault::ready_count_total() const {
  std::lock_guard<std::mutex> lock(mu_);
  size_t n = 0;
  for (const auto& [layer, b] : books_) n += b.ready.size();
  return n;
}

}  // namespace tenet::hybrid
