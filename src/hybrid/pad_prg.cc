// AES-256-CTR pads over Z_p (see pad_prg.h).
#include "hybrid/pad_prg.h"

#include <openssl/evp.h>

#include <algorithm>
#include <array>
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

Status PadPrg::generate(uint32_t layer, uint64_t counter, std::span<uint32_t> pad) {
  // IV = layer (4 bytes) || counter (8 bytes) || block counter (4 bytes, from 0): distinct
  // streams for distinct (layer, counter), each long enough for 2^36 bytes.
  std::array<uint8_t, 16> iv{};
  for (int i = 0; i < 4; ++i) iv[static_cast<size_t>(i)] = static_cast<uint8_t>(layer >> (24 - 8 * i));
  for (int i = 0; i < 8; ++i) iv[static_cast<size_t>(4 + i)] = static_cast<uint8_t>(counter >> (56 - 8 * i));
  const size_t total = pad.size() * sizeof(uint32_t);
  if (total >= (uint64_t{1} << 36) - 4096) return invalid_argument("hybrid: a pad of {} bytes is beyond one AES-CTR stream", total);
  auto* bytes = reinterpret_cast<unsigned char*>(pad.data());
  bool any_p = false;
  // Word w of the stream beyond the pad (the replacements of rejected words).
  std::function<Result<uint32_t>(uint64_t)> stream_word;
  if (crypto::gcm_vaes::supported()) {
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
