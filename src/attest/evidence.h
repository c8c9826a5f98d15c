// Interoperable RA-TLS evidence: the CBOR carried in X.509 extension 2.23.133.5.4.9
// (TCG DICE tagged evidence), encoded exactly as Gramine (>= 1.8, tools/sgx/ra-tls) does:
//
//   evidence = #6.60000([ bstr quote, bstr claims ])      ; tag 60000: TEE quote
//   claims   = { "pubkey-hash": bstr(hash-entry), ? "nonce": bstr, * tenet claims }
//   hash-entry = [ uint hash-alg-id, bstr hash ]           ; IANA named-information ids:
//                                                          ; 1 sha-256, 7 sha-384, 8 sha-512
//                                                          ; hash over the DER SubjectPublicKeyInfo
//
// The quote's REPORTDATA is SHA-256(claims bytes) followed by 32 zero bytes, so the claims, and
// through them the certificate key, are bound to the quote. Gramine wraps the hash-entry in a
// bstr; the decoder also accepts a bare array (the form in the draft specification).
//
// tenet's own claims (ignored by other verifiers, as Gramine ignores unknown claims):
//   "tenet-model-digests": [ bstr ... ]   sealed package digests served by the enclave
//   "tenet-mode": tstr                    "tee", or "hybrid" when any served model is hybrid
//   "tenet-model-modes": [ tstr ... ]     per model, in the order of tenet-model-digests: "tee"
//                                         or "hybrid:<verify_bits>" (enclave/manifest.h)
//   "tenet-platform": tstr                the platform's name, e.g. "sim (INSECURE)"
//
// Encoding uses libcbor (definite lengths, shortest integers, as Gramine's libcbor does).
// Decoding uses a small bounded reader instead of cbor_load(): evidence is hostile, and a reader
// that only accepts the shapes above, with a nesting limit when skipping unknown claims, has no
// recursion or allocation driven by the input beyond the byte strings it returns.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "crypto/crypto.h"

namespace tenet::attest {

using crypto::ByteSpan;
using crypto::Bytes;

inline constexpr uint64_t kTaggedEvidenceCborTag = 60000;
inline constexpr uint64_t kHashAlgSha256 = 1;
inline constexpr uint64_t kHashAlgSha384 = 7;
inline constexpr uint64_t kHashAlgSha512 = 8;
inline constexpr size_t kMaxEvidenceSize = 128 * 1024;

struct Claims {
  uint64_t pubkey_hash_alg = kHashAlgSha256;
  Bytes pubkey_hash;
  std::optional<Bytes> nonce;
  std::vector<Bytes> model_digests;
  std::string mode;      // "" when absent
  std::vector<std::string> model_modes;  // parallel to model_digests; empty when absent
  std::string platform;  // "" when absent
};

struct Evidence {
  Bytes quote;
  Bytes claims_cbor;  // the exact bytes whose SHA-256 is in REPORTDATA
};

Result<Bytes> encode_claims(const Claims& claims);
Result<Claims> decode_claims(ByteSpan cbor);

Result<Bytes> encode_evidence(ByteSpan quote, ByteSpan claims_cbor);
Result<Evidence> decode_evidence(ByteSpan cbor);

// SHA-256(claims_cbor) || 32 zero bytes.
std::array<uint8_t, 64> report_data_for_claims(ByteSpan claims_cbor);

// Hash of `spki_der` with the IANA named-information algorithm `alg` (1 sha-256 or 7 sha-384).
Result<Bytes> pubkey_hash(uint64_t alg, ByteSpan spki_der);

}  // namespace tenet::attest
