// The one-time pads of hybrid mode (trusted, enclave side): r uniform in Z_p^n, derived from a
// key that never leaves the enclave with AES-256-CTR (NIST SP 800-38A) on (layer, use counter).
//
// Why a PRG and not stored pads: a pad is needed twice, to blind the layer's input on the
// request path (x' = x + r) and, earlier, to precompute the unblinding term W·r. Deriving r from
// (layer, counter) means only W·r has to be stored (sealed, outside the enclave; mask_vault.h),
// and r costs one AES pass over |x| words when the request runs. Each (layer, counter) is used
// for exactly one request (the vault enforces it), so every pad is used once.
//
// Uniformity: each 32-bit word of key stream is masked to 31 bits, giving a uniform value in
// [0, 2^31 - 1] = [0, p]; the single value p is rejected and the next word taken, so accepted
// values are exactly uniform in [0, p). A blinded input x + r mod p is then uniform and
// independent of x (a one-time pad over Z_p).
#pragma once

#include <array>
#include <cstdint>
#include <span>

#include "core/status.h"

namespace tenet::hybrid {

class PadPrg {
 public:
  // `key`: 32 secret bytes.
  explicit PadPrg(std::span<const uint8_t, 32> key);
  ~PadPrg();
  PadPrg(const PadPrg&) = delete;
  PadPrg& operator=(const PadPrg&) = delete;
  // Fills `pad` with the pad of (layer, counter). Not thread-safe: one PadPrg per thread.
  Status generate(uint32_t layer, uint64_t counter, std::span<uint32_t> pad);

 private:
  std::array<uint8_t, 32> key_;
  void* ctx_ = nullptr;  // EVP_CIPHER_CTX
};

}  // namespace tenet::hybrid
