// AES-GCM (256- or 128-bit keys) on VAES + VPCLMULQDQ (AVX-512): sixteen blocks per step, counter mode on four
// 128-bit lanes per register and GHASH with one aggregated reduction per sixteen blocks.
//
// Why tenet carries its own GCM: Debian 12 ships OpenSSL 3.0, whose GCM is the AES-NI + AVX
// "stitched" code (about 5 GB/s per core here); the AVX-512 VAES code arrived in OpenSSL 3.1.
// Planned-memory inference (Vessels) re-decrypts every streamed weight on every run, so AES-GCM
// throughput is the enclave's weight bandwidth. This is an internal detail of crypto.cc: callers use
// crypto::aes256gcm_*, which pick this path when the CPU has the instructions and fall back to
// OpenSSL otherwise (or when TENET_GCM=openssl is set). The results are byte-identical to OpenSSL's
// (tests/unit/crypto/gcm_vaes_test.cc and fuzz/gcm_diff_fuzz.cc compare them).
//
// Constant time: AES rounds are AESENC instructions and GHASH is carry-less multiplication; no
// table lookups, no branches on secret data.
#pragma once

#include <cstddef>
#include <cstdint>

namespace tenet::crypto::gcm_vaes {

// True when the CPU and OS support AVX-512 (F, BW, VL), VAES, VPCLMULQDQ, AES-NI and PCLMULQDQ.
bool supported();

// One AES-GCM operation with a 96-bit IV. Usage: start() with key, IV and AAD; any number of
// encrypt() or decrypt() calls whose sizes are multiples of 16 bytes except possibly the last;
// finish() gives the tag. Holds key material: wipe() (or the destructor) clears it.
// AES-256 in counter mode (SP 800-38A): `n` bytes of key stream (the encryption of zeros) into
// `out`, starting at block `first_block` of the stream whose first counter block is `iv`. The
// counter is the last four bytes of the block, big-endian, incremented modulo 2^32 (the rest is
// fixed): the bytes of OpenSSL's EVP_aes_256_ctr as long as the stream stays below 2^32 blocks
// (64 GiB), which the caller ensures.
void ctr_keystream(const uint8_t key[32], const uint8_t iv[16], uint64_t first_block, uint8_t* out, size_t n);

class Context {
 public:
  Context() = default;
  ~Context() { wipe(); }
  Context(const Context&) = delete;
  Context& operator=(const Context&) = delete;

  // key_bytes: 32 (AES-256) or 16 (AES-128); the caller checks it (anything else is AES-256).
  void start(const uint8_t* key, size_t key_bytes, const uint8_t iv[12], const uint8_t* aad, size_t aad_len);
  // `in` and `out` may be the same buffer; otherwise they must not overlap. Each input byte is read
  // exactly once (into a register or a private block), so `in` may lie in memory another party
  // rewrites concurrently: what is authenticated is what is decrypted (no double fetch).
  void encrypt(const uint8_t* in, uint8_t* out, size_t n);
  void decrypt(const uint8_t* in, uint8_t* out, size_t n);
  // Decryption that consumes the text instead of storing it: the text is `rows` rows of `k`
  // float32 (k a multiple of 64, > 0), and row r's 64 partial sums of its dot product with x go to
  // lanes[64·r .. 64·r + 63]: lane j = Σ_i x[64·i + j]·w_r[64·i + j] in order of i, each term
  // added by a fused multiply-add (the order and roundings of the engine's matrix-vector kernel, so
  // that its result is bit-identical). The plaintext never leaves registers. As with decrypt(), nothing is known to
  // be authentic before finish()'s tag is checked: a caller discards the lanes on a mismatch.
  void decrypt_dot_f32(const uint8_t* in, size_t rows, size_t k, const float* x, float* lanes);
  void finish(uint8_t tag[16]);
  void wipe();
  // Moves the 32-bit block counter (inc32 of J0 right after start()); tests use it to check the
  // wrap-around that a real message reaches only after 2^32 blocks.
  void seek_counter(uint32_t next_counter);

  struct State {
    alignas(64) uint8_t round_keys[15][16] = {};
    // H^16 .. H^1, byte-reflected, in the order the sixteen-block loop multiplies them.
    alignas(64) uint8_t h_powers[16][16] = {};
    alignas(16) uint8_t ghash[16] = {};      // running GHASH value, byte-reflected
    alignas(16) uint8_t counter[16] = {};    // next counter block, byte-reflected (counter in dword 0)
    alignas(16) uint8_t tag_mask[16] = {};   // E_K(J0)
    int rounds = 14;  // 10 for AES-128
    uint64_t aad_bytes = 0;
    uint64_t text_bytes = 0;
  };

 private:
  State state_;
};

}  // namespace tenet::crypto::gcm_vaes
