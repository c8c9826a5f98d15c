// Cryptographic primitives for tenet, as thin RAII wrappers over OpenSSL 3 (libcrypto).
//
// Everything security-relevant in tenet (quotes, RA-TLS certificates, sealed packages, key
// release, sealing keys) is built from this small set: SHA-2, HKDF, HMAC, AES-256-GCM, ECDSA and
// ECDH on NIST P-256 / P-384, and a CSPRNG. No primitive here is home-made; each call maps onto one
// EVP interface. Errors carry OpenSSL's error queue in the message. Authentication failures of
// AES-GCM are kDataLoss ("tampered or wrong key"), never a crash, and never return plaintext.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"

typedef struct evp_pkey_st EVP_PKEY;
typedef struct x509_st X509;

namespace tenet::crypto {

using Bytes = std::vector<uint8_t>;
using ByteSpan = std::span<const uint8_t>;

inline ByteSpan as_bytes(std::string_view s) {
  return ByteSpan(reinterpret_cast<const uint8_t*>(s.data()), s.size());
}
inline std::string_view as_chars(ByteSpan b) {
  return std::string_view(reinterpret_cast<const char*>(b.data()), b.size());
}

// OpenSSL's error queue, drained, as one line ("" when empty).
std::string openssl_errors();

// ---- randomness, comparison, wiping ----
Status random_bytes(std::span<uint8_t> out);
Result<Bytes> random_bytes(size_t count);
bool constant_time_equal(ByteSpan a, ByteSpan b);  // false when sizes differ
void secure_wipe(void* data, size_t size);         // OPENSSL_cleanse: not optimized away
template <typename Container>
void secure_wipe(Container& c) {
  if (!c.empty()) secure_wipe(c.data(), c.size() * sizeof(c[0]));
}

std::string to_hex(ByteSpan data);
Result<Bytes> from_hex(std::string_view hex);  // accepts upper or lower case, even length

// ---- hashing ----
using Sha256Digest = std::array<uint8_t, 32>;
using Sha384Digest = std::array<uint8_t, 48>;
Sha256Digest sha256(ByteSpan data);
Sha384Digest sha384(ByteSpan data);

// Incremental SHA-256 (hashing files, concatenations without copying).
class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;
  void update(ByteSpan data);
  void update(std::string_view data) { update(as_bytes(data)); }
  Sha256Digest finish();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

Result<Sha256Digest> sha256_file(const std::string& path);

Result<Bytes> hmac_sha256(ByteSpan key, ByteSpan data);
// RFC 5869 HKDF with SHA-256.
Result<Bytes> hkdf_sha256(ByteSpan ikm, ByteSpan salt, ByteSpan info, size_t out_size);

// ---- AES-256-GCM (NIST SP 800-38D) ----
inline constexpr size_t kAesGcmKeyBytes = 32;
inline constexpr size_t kAesGcmIvBytes = 12;
inline constexpr size_t kAesGcmTagBytes = 16;

// Which implementation the functions below use: "vaes-avx512" (tenet's, crypto/gcm_vaes.h; about
// twice OpenSSL 3.0's speed) when the CPU has AVX-512 VAES and VPCLMULQDQ, else "openssl". The
// environment variable TENET_GCM=openssl forces OpenSSL's. Both give identical bytes.
std::string_view aes_gcm_backend();
// "auto", "vaes-avx512" (kFailedPrecondition without the instructions) or "openssl"; for tests and benchmarks.
Status set_aes_gcm_backend(std::string_view name);

// Returns ciphertext || 16-byte tag. `iv` must be 12 bytes and never reused under one key.
Result<Bytes> aes256gcm_seal(ByteSpan key, ByteSpan iv, ByteSpan aad, ByteSpan plaintext);
// Same, into a caller buffer of plaintext.size() + 16 bytes (no allocation).
Status aes256gcm_seal_into(ByteSpan key, ByteSpan iv, ByteSpan aad, ByteSpan plaintext,
                           std::span<uint8_t> out);
// Inverse of seal; kDataLoss when the tag does not verify (tampered data, wrong key/iv/aad).
Result<Bytes> aes256gcm_open(ByteSpan key, ByteSpan iv, ByteSpan aad, ByteSpan ciphertext_and_tag);
// Same, into a caller buffer of ciphertext_and_tag.size() - 16 bytes; on failure `out` is wiped.
Status aes256gcm_open_into(ByteSpan key, ByteSpan iv, ByteSpan aad, ByteSpan ciphertext_and_tag,
                           std::span<uint8_t> out);

// Same, a piece at a time and never into one plaintext buffer: `sink(offset, piece)` gets the
// plaintext in order, pieces of `piece_bytes` (a multiple of 64) and a shorter last one, each in a
// private buffer that is wiped afterwards, so a caller can consume it while it is in L1. Nothing
// is authentic before the tag is checked at the end: on kDataLoss the caller must discard
// whatever the sink made of the pieces.
Status aes256gcm_open_pieces(ByteSpan key, ByteSpan iv, ByteSpan aad, ByteSpan ciphertext_and_tag, size_t piece_bytes,
                             const std::function<void(size_t, ByteSpan)>& sink);

// Decrypts a ciphertext that lies in memory another party may rewrite concurrently (untrusted
// memory) into `out` so that the bytes authenticated are exactly the bytes decrypted (no double
// fetch): tenet's VAES GCM reads each byte once by construction; with OpenSSL's, each piece is first
// copied into a small private buffer. kDataLoss and `out` wiped when the tag does not verify.
Status aes256gcm_open_from_untrusted(ByteSpan key, ByteSpan iv, ByteSpan aad, ByteSpan untrusted_ciphertext, ByteSpan tag,
                                     std::span<uint8_t> out);

// ---- AES-128-GCM, for ephemeral keys drawn inside an enclave ----
// The same contracts with a 16-byte key. For data an enclave seals to itself under a key that never
// leaves it and dies with it (the sealed weight store): ten rounds instead of fourteen (tenet's
// VAES GCM here: 15.4 against 13.3 GB/s per thread in cache, 21.0 against 19.2 GB/s on 2 threads
// from memory), at the 128-bit security level of SGX's memory encryption engine and TLS 1.3's
// mandatory suite. Keys that outlive the enclave or cross the trust boundary stay AES-256.
inline constexpr size_t kAes128GcmKeyBytes = 16;
Status aes128gcm_seal_into(ByteSpan key, ByteSpan iv, ByteSpan aad, ByteSpan plaintext, std::span<uint8_t> out);
Status aes128gcm_open_from_untrusted(ByteSpan key, ByteSpan iv, ByteSpan aad, ByteSpan untrusted_ciphertext, ByteSpan tag,
                                     std::span<uint8_t> out);
// The same opening, for a plaintext of float32 rows of `k` values that is only needed as dot
// products with x: row r's 64 partial sums go to lanes[64·r ..] (gcm_vaes::Context::decrypt_dot_f32
// gives the order; the plaintext never leaves registers). kUnimplemented where tenet's VAES GCM is
// not in use or k is not a multiple of 64 (the caller then decrypts into memory); kDataLoss and
// `lanes` wiped when the tag does not verify. lanes.size() must be 64 per row.
// aes128gcm_dot_supported(k): whether it takes rows of k floats here.
bool aes128gcm_dot_supported(int64_t k);
Status aes128gcm_open_dot_from_untrusted(ByteSpan key, ByteSpan iv, ByteSpan aad, ByteSpan untrusted_ciphertext, ByteSpan tag,
                                         const float* x, size_t k, std::span<float> lanes);

// ---- elliptic-curve keys (ECDSA, ECDH) ----
enum class Curve { kP256, kP384 };

struct PkeyDeleter {
  void operator()(EVP_PKEY* p) const;
};
struct X509Deleter {
  void operator()(X509* p) const;
};
using PkeyPtr = std::unique_ptr<EVP_PKEY, PkeyDeleter>;
using X509Ptr = std::unique_ptr<X509, X509Deleter>;

class PublicKey {
 public:
  PublicKey() = default;
  explicit PublicKey(PkeyPtr pkey) : pkey_(std::move(pkey)) {}
  static Result<PublicKey> from_spki_der(ByteSpan der);
  static Result<PublicKey> from_pem(std::string_view pem);
  // Uncompressed point without the 0x04 prefix: x || y (64 bytes for P-256, 96 for P-384), the
  // form SGX quotes carry.
  static Result<PublicKey> from_raw_point(Curve curve, ByteSpan xy);

  Result<Bytes> spki_der() const;
  Result<std::string> to_pem() const;
  Result<Bytes> raw_point() const;  // x || y
  Result<Curve> curve() const;
  // ECDSA over SHA-256 (P-256) or SHA-384 (P-384) of `message`; signature in DER.
  Status verify(ByteSpan message, ByteSpan signature_der) const;
  bool valid() const { return pkey_ != nullptr; }
  EVP_PKEY* get() const { return pkey_.get(); }

 private:
  PkeyPtr pkey_;
};

class PrivateKey {
 public:
  PrivateKey() = default;
  explicit PrivateKey(PkeyPtr pkey) : pkey_(std::move(pkey)) {}
  static Result<PrivateKey> generate(Curve curve);
  static Result<PrivateKey> from_pem(std::string_view pem);  // PKCS#8 or SEC1

  Result<std::string> to_pem() const;  // PKCS#8, unencrypted: callers protect it
  Result<PublicKey> public_key() const;
  Result<Bytes> public_spki_der() const;
  Result<Curve> curve() const;
  // ECDSA with SHA-256 (P-256) or SHA-384 (P-384); DER signature.
  Result<Bytes> sign(ByteSpan message) const;
  // ECDH shared secret (x coordinate) with a peer key on the same curve.
  Result<Bytes> ecdh(const PublicKey& peer) const;
  bool valid() const { return pkey_ != nullptr; }
  EVP_PKEY* get() const { return pkey_.get(); }

 private:
  PkeyPtr pkey_;
};

// DER ECDSA-Sig-Value <-> fixed-width r || s (each `scalar_bytes` long: 32 for P-256).
Result<Bytes> ecdsa_der_to_raw(ByteSpan der, size_t scalar_bytes);
Result<Bytes> ecdsa_raw_to_der(ByteSpan raw);

// ---- X.509 helpers ----
Result<X509Ptr> x509_from_pem(std::string_view pem);
Result<X509Ptr> x509_from_der(ByteSpan der);
Result<std::string> x509_to_pem(X509* cert);
Result<Bytes> x509_to_der(X509* cert);
// All certificates in a PEM bundle, in order.
Result<std::vector<X509Ptr>> x509_chain_from_pem(std::string_view pem);

Result<std::string> read_file(const std::string& path, size_t max_size = size_t{1} << 30);
// Writes atomically (temp file + rename); `mode` e.g. 0600 for keys.
Status write_file(const std::string& path, std::string_view data, unsigned mode = 0644);

}  // namespace tenet::crypto
