// Key wrapping to a TEE's ephemeral EC key, and EC public keys as JWK (RFC 7517/7518).
//
// wrap_secret encrypts a secret (a model key) so that only the holder of `recipient`'s private key
// can read it: ECDH-ES in the style of JWE (RFC 7518 §4.6) but with HKDF instead of Concat KDF:
//
//   (e, E)  = fresh ephemeral key pair on the recipient's curve (P-384 for the key broker)
//   Z       = ECDH(e, recipient)                                  x coordinate
//   info    = "tenet-keywrap/v1" || 0x00 || context || 0x00 || raw(E) || raw(recipient)
//   K       = HKDF-SHA256(ikm = Z, salt = "tenet-keywrap/v1", info, 32 bytes)
//   c || t  = AES-256-GCM(K, iv = 12 random bytes, aad = info, secret)
//
// raw(P) is the uncompressed point without its 0x04 prefix (x || y). The context string names
// what is wrapped (the key broker uses "tenet-kbs/v0 resource <repo>/<type>/<tag>"), so a wrapped
// key cannot be replayed as another resource; both public keys are bound, so it cannot be
// re-targeted. Unwrapping with the wrong private key or context, or any edited field, is
// kDataLoss.
//
// JSON form of a wrapped secret (what GET /kbs/v0/resource returns):
//   {"alg":"ECDH-ES+HKDF-SHA256+A256GCM","epk":<JWK of E>,"iv":b64u,"ciphertext":b64u,"tag":b64u}
// (b64u = base64url without padding).
#pragma once

#include <string>
#include <string_view>

#include "core/status.h"
#include "crypto/crypto.h"
#include "seal/secret.h"

namespace tenet::seal {

inline constexpr std::string_view kKeyWrapAlg = "ECDH-ES+HKDF-SHA256+A256GCM";
// Largest secret wrap_secret accepts (model keys are 32 bytes; leaves room for key bundles).
inline constexpr size_t kMaxWrappedSecretBytes = 4096;
// Longest context string (OpenSSL caps HKDF info at 1024 bytes; info also holds two P-384 points).
inline constexpr size_t kMaxWrapContextBytes = 512;

struct WrappedSecret {
  crypto::PublicKey ephemeral_public;  // E
  crypto::Bytes iv;                    // 12 bytes
  crypto::Bytes ciphertext;            // same size as the secret
  crypto::Bytes tag;                   // 16 bytes
};

Result<WrappedSecret> wrap_secret(const crypto::PublicKey& recipient, crypto::ByteSpan secret,
                                  std::string_view context);
Result<SecretBytes> unwrap_secret(const crypto::PrivateKey& recipient, const WrappedSecret& wrapped,
                                  std::string_view context);

std::string wrapped_secret_to_json(const WrappedSecret& wrapped);
// Strict: every member present with the right type and size, alg as above, epk a valid point.
Result<WrappedSecret> wrapped_secret_from_json(std::string_view json);

// ---- JWK for EC public keys ----
// The canonical JWK of a P-256 / P-384 public key: the RFC 7638 thumbprint input, i.e. exactly
//   {"crv":"P-384","kty":"EC","x":"<b64u x>","y":"<b64u y>"}
// with members in this order, no whitespace, and x / y the full-width big-endian coordinates
// (48 bytes each for P-384). This is the byte string the KBS REPORTDATA binds.
Result<std::string> canonical_jwk(const crypto::PublicKey& key);
// Parses a JWK (JSON text) with kty "EC", crv "P-256" or "P-384" and full-width x / y; the point
// must be on the curve. Other members ("use", "alg", "kid") are ignored; "d" (a private key) is
// refused.
Result<crypto::PublicKey> public_key_from_jwk(std::string_view json);
// RFC 7638 JWK thumbprint: SHA-256 of canonical_jwk.
Result<crypto::Sha256Digest> jwk_thumbprint(const crypto::PublicKey& key);

}  // namespace tenet::seal
