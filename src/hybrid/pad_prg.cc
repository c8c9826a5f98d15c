// AES-256-CTR pads over Z_p (see pad_prg.h).
#include "hybrid/pad_prg.h"

#include <openssl/evp.h>

#include <algorithm>
#include <array>
#include <cstring>

#include "crypto/crypto.h"
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

Status PadPrg::generate(uint32_t layer, uint64_t counter, std::span<uint32_t> pad) {
  auto* ctx = static_cast<EVP_CIPHER_CTX*>(ctx_);
  if (ctx == nullptr) return resource_exhausted("hybrid: cannot allocate an AES context");
  // IV = layer (4 bytes) || counter (8 bytes) || block counter (4 bytes, from 0): distinct
  // streams for distinct (layer, counter), each long enough for 2^36 bytes.
  std::array<uint8_t, 16> iv{};
  for (int i = 0; i < 4; ++i) iv[static_cast<size_t>(i)] = static_cast<uint8_t>(layer >> (24 - 8 * i));
  for (int i = 0; i < 8; ++i) iv[static_cast<size_t>(4 + i)] = static_cast<uint8_t>(counter >> (56 - 8 * i));
  if (EVP_EncryptInit_ex(ctx, EVP_aes_256_ctr(), nullptr, key_.data(), iv.data()) != 1) {
    return internal_error("hybrid: AES-CTR init failed: {}", crypto::openssl_errors());
  }
  // Key stream = encryption of zeros, 64 KiB of them at a time.
  static const std::array<unsigned char, 65536> kZeros{};
  auto* bytes = reinterpret_cast<unsigned char*>(pad.data());
  const size_t total = pad.size() * sizeof(uint32_t);
  for (size_t done = 0; done < total;) {
    const int chunk = static_cast<int>(std::min(total - done, kZeros.size()));
    int out_len = 0;
    if (EVP_EncryptUpdate(ctx, bytes + done, &out_len, kZeros.data(), chunk) != 1 || out_len != chunk) {
      return internal_error("hybrid: AES-CTR failed: {}", crypto::openssl_errors());
    }
    done += static_cast<size_t>(chunk);
  }
  // 31 bits per word; the value p itself (probability 2^-31 per word) is rejected and replaced
  // by the next word of the same stream.
  bool any_p = false;
  for (uint32_t& v : pad) {
    v &= kP;
    any_p |= v == kP;
  }
  for (size_t i = 0; any_p && i < pad.size(); ++i) {
    while (pad[i] == kP) {
      uint32_t extra = 0;
      int out_len = 0;
      if (EVP_EncryptUpdate(ctx, reinterpret_cast<unsigned char*>(&extra), &out_len, kZeros.data(), 4) != 1) {
        return internal_error("hybrid: AES-CTR failed: {}", crypto::openssl_errors());
      }
      pad[i] = extra & kP;
    }
  }
  return ok_status();
}

}  // namespace tenet::hybrid
