// AES-256-CTR pads over Z_p (see pad_prg.h).
#include "hybrid/pad_prg.h"

#include <openssl/evp.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cstring>
#include <functional>

#include "crypto/crypto.h"
#include "crypto/gcm_vaes.h"
#include "hybrid/field.h"

namespace tenet::hybrid {

PadPrg::PadPrg(std::span<const uint8_t, 32> key) {
  std::memcpy(key_.data(), key.data(), key_.size());
  ctx_ = EVP_CIPHER_CTX_new();
}

PadPrg::~PadPrg() {
  EVP_CIPHER_CTX_free(static_cast<EVP_CIPHER_CTX*>(ctx_));
  crypto::secure_wipe(key_.data(), key_.size());
}

namespace {

std::atomic<bool> force_openssl{false};
bool use_vaes() { return crypto::gcm_vaes::supported() && !force_openssl.load(std::memory_order_relaxed); }

// Keeps the low 31 bits of each word (a uniform value in [0, p]); true when some word is p.
__attribute__((target_clones("avx512f", "avx2", "default"))) bool mask_to_field(uint32_t* w, size_t n) {
  uint32_t any_p = 0;
  for (size_t i = 0; i < n; ++i) {
    w[i] &= kP;
    any_p |= static_cast<uint32_t>(w[i] == kP);
  }
  return any_p != 0;
}

}  // namespace

void PadPrg::force_openssl_for_testing(bool on) { force_openssl = on; }

// Distinct streams for distinct (layer, counter), each long enough for 2^36 bytes.
std::array<uint8_t, 16> PadPrg::stream_iv(uint32_t layer, uint64_t counter) {
  std::array<uint8_t, 16> iv{};
  for (int i = 0; i < 4; ++i) iv[static_cast<size_t>(i)] = static_cast<uint8_t>(layer >> (24 - 8 * i));
  for (int i = 0; i < 8; ++i) iv[static_cast<size_t>(4 + i)] = static_cast<uint8_t>(counter >> (56 - 8 * i));
  return iv;
}

Result<bool> PadPrg::generate_range(uint32_t layer, uint64_t counter, uint64_t first, std::span<uint32_t> out) const {
  if (out.empty()) return false;
  const uint64_t end_bytes = (first + out.size()) * sizeof(uint32_t);
  if (end_bytes >= (uint64_t{1} << 36) - 4096) return invalid_argument("hybrid: a pad range ending at byte {} is beyond one AES-CTR stream", end_bytes);
  std::array<uint8_t, 16> iv = stream_iv(layer, counter);
  // Whole 16-byte blocks from the one holding word `first`; the words before it are dropped.
  const uint64_t block = first / 4;
  const size_t skip = static_cast<size_t>(first % 4);
  auto* bytes = reinterpret_cast<uint8_t*>(out.data());
  alignas(16) uint8_t head[16];
  const size_t head_words = skip == 0 ? 0 : std::min(out.size(), 4 - skip);  // from the first, partly dropped block
  if (use_vaes()) {
    if (head_words > 0) {
      crypto::gcm_vaes::ctr_keystream(key_.data(), iv.data(), block, head, sizeof(head));
      std::memcpy(bytes, head + 4 * skip, 4 * head_words);
      crypto::secure_wipe(head, sizeof(head));
    }
    const size_t rest = out.size() - head_words;
    if (rest > 0) {
      crypto::gcm_vaes::ctr_keystream(key_.data(), iv.data(), block + (head_words > 0 ? 1 : 0), bytes + 4 * head_words,
                                      rest * sizeof(uint32_t));
    }
  } else {
    // OpenSSL's AES-CTR from the block's counter (the IV's last four bytes, big-endian).
    for (int i = 0; i < 4; ++i) iv[static_cast<size_t>(12 + i)] = static_cast<uint8_t>(block >> (24 - 8 * i));
    EVP_CIPHER_CTX* ctx = EVP_CIPHER_CTX_new();
    if (ctx == nullptr) return resource_exhausted("hybrid: cannot allocate an AES context");
    bool ok = EVP_EncryptInit_ex(ctx, EVP_aes_256_ctr(), nullptr, key_.data(), iv.data()) == 1;
    static const std::array<unsigned char, 16> kZeros16{};
    int len = 0;
    if (ok && skip > 0) ok = EVP_EncryptUpdate(ctx, head, &len, kZeros16.data(), static_cast<int>(4 * skip)) == 1;
    std::memset(bytes, 0, out.size() * sizeof(uint32_t));
    for (size_t done = 0; ok && done < out.size() * sizeof(uint32_t);) {
      const int chunk = static_cast<int>(std::min<size_t>(out.size() * sizeof(uint32_t) - done, size_t{1} << 20));
      ok = EVP_EncryptUpdate(ctx, bytes + done, &len, bytes + done, chunk) == 1 && len == chunk;
      done += static_cast<size_t>(chunk);
    }
    EVP_CIPHER_CTX_free(ctx);
    crypto::secure_wipe(head, sizeof(head));
    if (!ok) return internal_error("hybrid: AES-CTR failed: {}", crypto::openssl_errors());
  }
  return mask_to_field(out.data(), out.size());
}

Status PadPrg::generate(uint32_t layer, uint64_t counter, std::span<uint32_t> pad) {
  const std::array<uint8_t, 16> iv = stream_iv(layer, counter);
  const size_t total = pad.size() * sizeof(uint32_t);
  if (total >= (uint64_t{1} << 36) - 4096) return invalid_argument("hybrid: a pad of {} bytes is beyond one AES-CTR stream", total);
  auto* bytes = reinterpret_cast<unsigned char*>(pad.data());
  bool any_p = false;
  // Word w of the stream beyond the pad (the replacements of rejected words).
  std::function<Result<uint32_t>(uint64_t)> stream_word;
  if (use_vaes()) {
    // tenet's VAES AES-CTR (crypto/gcm_vaes.h; the same bytes as OpenSSL's), 16 KiB at a time,
    // each masked while it is in L1.
    constexpr size_t kStep = 16 * 1024;
    for (size_t done = 0; done < total; done += kStep) {
      const size_t n = std::min(kStep, total - done);
      crypto::gcm_vaes::ctr_keystream(key_.data(), iv.data(), done / 16, bytes + done, n);
      any_p |= mask_to_field(pad.data() + done / sizeof(uint32_t), n / sizeof(uint32_t));
    }
    stream_word = [this, &iv](uint64_t w) -> Result<uint32_t> {
      alignas(16) uint8_t block[16];
      crypto::gcm_vaes::ctr_keystream(key_.data(), iv.data(), w / 4, block, sizeof(block));
      uint32_t v;
      std::memcpy(&v, block + 4 * (w % 4), sizeof(v));
      crypto::secure_wipe(block, sizeof(block));
      return v;
    };
  } else {
    auto* ctx = static_cast<EVP_CIPHER_CTX*>(ctx_);
    if (ctx == nullptr) return resource_exhausted("hybrid: cannot allocate an AES context");
    if (EVP_EncryptInit_ex(ctx, EVP_aes_256_ctr(), nullptr, key_.data(), iv.data()) != 1) {
      return internal_error("hybrid: AES-CTR init failed: {}", crypto::openssl_errors());
    }
    // Key stream = encryption of zeros, 64 KiB of them at a time.
    static const std::array<unsigned char, 65536> kZeros{};
    for (size_t done = 0; done < total;) {
      const int chunk = static_cast<int>(std::min(total - done, kZeros.size()));
      int out_len = 0;
      if (EVP_EncryptUpdate(ctx, bytes + done, &out_len, kZeros.data(), chunk) != 1 || out_len != chunk) {
        return internal_error("hybrid: AES-CTR failed: {}", crypto::openssl_errors());
      }
      done += static_cast<size_t>(chunk);
    }
    any_p = mask_to_field(pad.data(), pad.size());
    // The context stands right after the pad: its next words are words pad.size(), ... in order.
    stream_word = [ctx](uint64_t) -> Result<uint32_t> {
      static const std::array<unsigned char, 4> kZero4{};
      uint32_t v = 0;
      int out_len = 0;
      if (EVP_EncryptUpdate(ctx, reinterpret_cast<unsigned char*>(&v), &out_len, kZero4.data(), 4) != 1) {
        return internal_error("hybrid: AES-CTR failed: {}", crypto::openssl_errors());
      }
      return v;
    };
  }
  // 31 bits per word; the value p itself (probability 2^-31 per word) is rejected and replaced
  // by the next word of the same stream after the pad (for each rejected word in turn).
  uint64_t next = pad.size();
  for (size_t i = 0; any_p && i < pad.size(); ++i) {
    while (pad[i] == kP) {
      TENET_ASSIGN_OR_RETURN(const uint32_t extra, stream_word(next++));
      pad[i] = extra & kP;
    }
  }
  return ok_status();
}

}  // namespace tenet::hybrid
