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
  // Words [first, first + out.size()) of that pad before rejection: each key-stream word masked to
  // 31 bits. Returns true when some word is p, i.e. when the pad's words in this range are not
  // all these (generate() replaces such words; the caller must then use it instead). Lets the
  // request path make its pad a few KiB at a time, in L1, instead of writing and reading all of
  // it. Thread-safe (no shared state), so ranges can be made in parallel.
  Result<bool> generate_range(uint32_t layer, uint64_t counter, uint64_t first, std::span<uint32_t> out) const;

  // Tests only: OpenSSL's AES-CTR even where tenet's VAES one runs (both give the same bytes).
  static void force_openssl_for_testing(bool on);

 private:
  // IV = layer (4 bytes) || counter (8 bytes) || block counter (4 bytes, from 0).
  static std::array<uint8_t, 16> stream_iv(uint32_t layer, uint64_t counter);
  std::array<uint8_t, 32> key_;
  void* ctx_ = nullptr;  // EVP_CIPHER_CTX
};

}  // namespace tenet::hybrid
