// tenet's key release protocol, shaped after confidential-containers' Key Broker Service (KBS
// attestation protocol v0, "RCAR": Request, Challenge, Attestation, Response). Shared by the key
// broker (keybroker/key_broker.h, the model owner's side) and its client (keybroker/kbs_client.h,
// inside the enclave).
//
//   1. POST /kbs/v0/auth      {"version":"0.1.0","tee":"<platform>","extra-params":...}
//        -> 200 {"nonce":"<b64u of 32 random bytes>","extra-params":""}
//           Set-Cookie: kbs-session-id=<64 hex>; the nonce is bound to that session, single-use,
//           and expires after KeyBrokerOptions::nonce_ttl.
//   2. POST /kbs/v0/attest    {"tee-pubkey":<JWK, EC P-384>,"tee-evidence":"<b64u evidence>"}
//        (with the session cookie) -> 200 {"attested":true}. The evidence's 64-byte REPORTDATA
//        must equal expected_report_data(nonce, tee-pubkey) below, and the evidence must pass the
//        injected EvidenceVerifier (the owner's attestation policy). The nonce is spent by the
//        first attempt, successful or not.
//   3. GET  /kbs/v0/resource/<repo>/<type>/<tag>   (with the session cookie of an attested
//        session) -> 200, body = wrapped_secret_to_json(seal/key_wrap.h): the secret wrapped to
//        tee-pubkey with context resource_wrap_context("<repo>/<type>/<tag>").
//
// Errors: 400 malformed request; 401 no valid session (missing/unknown/expired cookie, nonce
// already used or expired, resource requested before attestation); 403 attestation refused
// (evidence fails the verifier, REPORTDATA does not bind this nonce and key); 404 unknown
// resource; 413 body too large; 503 session table full. Error bodies are JSON
// {"type":"<kind>","detail":"<what failed>"} (KBS's ErrorInformation).
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <string_view>

#include "core/status.h"
#include "crypto/crypto.h"

namespace tenet::keybroker {

inline constexpr std::string_view kProtocolVersion = "0.1.0";
inline constexpr std::string_view kAuthPath = "/kbs/v0/auth";
inline constexpr std::string_view kAttestPath = "/kbs/v0/attest";
inline constexpr std::string_view kResourcePrefix = "/kbs/v0/resource/";
inline constexpr std::string_view kSessionCookie = "kbs-session-id";
inline constexpr size_t kReportDataBytes = 64;
inline constexpr size_t kNonceBytes = 32;

using ReportData = std::array<uint8_t, kReportDataBytes>;

// What an evidence verifier establishes. The lead wires src/attest's verify_quote(quote, policy)
// into this shape; tests use an HMAC-based stand-in.
struct VerifiedEvidence {
  ReportData report_data{};  // the 64 bytes the TEE bound into its evidence
  std::string identity;      // printable, for logs: e.g. "sim mrenclave=ab12... isvsvn=3 (INSECURE)"
};
// Verifies evidence against the model owner's policy; an error (any code) refuses it, and its
// message is returned to the requester in the 403 body, so it must name the failing stage but
// carry no secret.
using EvidenceVerifier = std::function<Result<VerifiedEvidence>(crypto::ByteSpan evidence)>;
// Produces evidence (a quote) over `report_data` on the enclave's platform (the enclave passes
// its platform's get_quote).
using EvidenceProvider = std::function<Result<crypto::Bytes>(std::span<const uint8_t, kReportDataBytes> report_data)>;

// REPORTDATA binding of the attest step:
//   report_data[0..32)  = SHA-256( nonce || canonical_jwk(tee_pubkey) )
//   report_data[32..64) = 0
// where `nonce` is the nonce string exactly as /auth returned it (its base64url ASCII, not the
// decoded bytes) and canonical_jwk is seal/key_wrap.h's RFC 7638 form
// {"crv":"P-384","kty":"EC","x":"...","y":"..."}.
Result<ReportData> expected_report_data(std::string_view nonce, const crypto::PublicKey& tee_pubkey);

// AES-GCM/HKDF context under which resource `path` ("<repo>/<type>/<tag>") is wrapped:
// "tenet-kbs/v0 resource <path>".
std::string resource_wrap_context(std::string_view path);

// A resource path is three segments "<repo>/<type>/<tag>", each 1..64 characters of
// [A-Za-z0-9._-], none "." or "..". kInvalidArgument otherwise.
Status validate_resource_path(std::string_view path);

}  // namespace tenet::keybroker
