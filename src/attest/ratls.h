// Attested TLS (interoperable RA-TLS, TCG DICE tagged evidence 2.23.133.5.4.9, as in Gramine
// >= 1.8) with report reuse (TEMPER): an enclave makes ONE P-384 key pair and ONE quote at start,
// puts both in a self-signed certificate, and serves every TLS session with it.
//
// Certificate: self-signed with the enclave key (ECDSA P-384, SHA-384), CA:TRUE so that clients can
// pin it with curl --cacert / tritonclient's root certificate option, subjectAltName DNS:localhost,
// IP:127.0.0.1 plus configured names; non-critical extension 2.23.133.5.4.9 holding
// #6.60000([quote, claims]) (evidence.h), REPORTDATA = SHA-256(claims) || 32 zero bytes.
//
// Verification order (each failure names its stage, and the message starts with it):
//   certificate        parse, self-signature, validity period
//   evidence-extension the 2.23.133.5.4.9 extension present once, CBOR tag 60000 [bstr, bstr]
//   claims             the claims map decodes
//   pubkey-hash        the claimed hash equals the hash of the certificate's SubjectPublicKeyInfo
//   quote-format       the quote parses (quote.h)
//   report-data        REPORTDATA == SHA-256(claims) || zeros
//   quote-signature    the attestation key's signature over header || body
//   qe-report          QE report signature by the PCK key; QE report binds the attestation key
//   platform-chain     the PCK chain (certification data type 5) verifies to a policy root
//   insecure-platform  the root is a sim root and the policy lacks allow_insecure_sim
//   measurement        MRENCLAVE, or MRSIGNER + ISVPRODID + ISVSVN >= minimum
//   debug              debug enclave and allow_debug is false
//   model-digest       the policy's model_digest is not among the claimed model digests
//
// Not checked (documented limits): Intel TCB status, CRLs and QE identity collateral (PCS / PCCS)
// for hardware quotes; a deployment on real SGX must add a DCAP quote verification library with
// collateral in front of the policy check. Sim quotes have none of these by nature.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "attest/evidence.h"
#include "attest/platform.h"
#include "attest/policy.h"
#include "attest/quote.h"
#include "crypto/crypto.h"

typedef struct ssl_ctx_st SSL_CTX;
typedef struct ssl_st SSL;

namespace tenet::attest {

inline constexpr const char* kTaggedEvidenceOid = "2.23.133.5.4.9";

enum class VerifyStage {
  kCertificate,
  kEvidenceExtension,
  kClaims,
  kPubkeyHash,
  kQuoteFormat,
  kReportData,
  kQuoteSignature,
  kQeReport,
  kPlatformChain,
  kInsecurePlatform,
  kMeasurement,
  kDebug,
  kModelDigest,
};
const char* verify_stage_name(VerifyStage stage);  // "quote-signature", ...
// The stage a verification error names (messages start "attestation failed at <stage>: ").
std::optional<VerifyStage> failed_stage(const Status& status);

// ---- quotes (also for the key broker's KBS-style evidence) ----

struct VerifiedQuote {
  Quote quote;
  EnclaveIdentity identity;
  ReportData report_data;
  bool insecure = false;     // chained to a sim root: proves nothing about the host
  std::string platform;      // "sim (INSECURE)", "sgx-dcap", "tdx-dcap"
  std::string root_subject;  // the trust anchor the PCK chain ended at
};

// Stages quote-format .. debug. The caller checks report_data against what it expects.
Result<VerifiedQuote> verify_quote(ByteSpan quote, const Policy& policy);

// ---- evidence outside TLS (KBS-style key release) ----
//
// Enclave: make_evidence(platform, claims) with claims.pubkey_hash over its ephemeral key's SPKI
// and claims.nonce = the broker's nonce (one quote per call: for key release, not per session).
// Broker: verify_evidence checks evidence-extension (CBOR shape), claims, report-data, the quote
// stages and model-digest; the caller then checks claims.nonce and that claims.pubkey_hash is the
// hash of the key it will wrap the secret to (pubkey_hash() in evidence.h).
struct VerifiedEvidence {
  VerifiedQuote quote;
  Claims claims;
};
Result<Bytes> make_evidence(Platform& platform, const Claims& claims);
Result<VerifiedEvidence> verify_evidence(ByteSpan evidence_cbor, const Policy& policy);

// ---- the enclave side ----

struct RatlsClaimsInput {
  std::vector<Bytes> model_digests;  // sealed package digests this enclave serves
  std::string mode = "tee";          // "tee" or "hybrid"
  std::vector<std::string> model_modes;  // per model digest: "tee" or "hybrid:<bits>" (optional)
};

struct RatlsCertOptions {
  std::string common_name = "tenet enclave";
  std::vector<std::string> dns_names = {"localhost"};
  std::vector<std::string> ip_addresses = {"127.0.0.1"};
  int validity_days = 365;
};

struct RatlsIdentity {
  crypto::PrivateKey key;  // P-384; never leaves the enclave
  crypto::X509Ptr cert;
  std::string cert_pem;
  Bytes quote;
  Claims claims;
  Bytes claims_cbor;
  Bytes evidence;  // the extension value
  std::string platform;
  bool insecure = false;
};

// One key pair, one quote. Call once at enclave start and reuse the result for every session.
Result<RatlsIdentity> make_ratls_identity(Platform& platform, const RatlsClaimsInput& claims,
                                          const RatlsCertOptions& options = {});

// Builds a certificate around existing evidence for `key` (used by make_ratls_identity; exposed so
// tests can re-wrap evidence under another key, which verification must reject at pubkey-hash).
Result<crypto::X509Ptr> make_ratls_certificate(const crypto::PrivateKey& key, ByteSpan evidence,
                                               const RatlsCertOptions& options = {});

// PEM pair for TLS servers that take files or strings (cpp-httplib, gRPC). The key PEM is a
// secret: wipe it (crypto::secure_wipe) when done.
struct PemPair {
  std::string cert_pem;
  std::string key_pem;
};
Result<PemPair> ratls_pem(const RatlsIdentity& identity);

// Installs the certificate and key on an OpenSSL server context.
Status use_ratls_identity(SSL_CTX* ctx, const RatlsIdentity& identity);

// ---- the verifier side ----

struct VerifiedPeer {
  EnclaveIdentity identity;
  Claims claims;
  std::string platform;  // from the verified quote ("sim (INSECURE)", "sgx-dcap", ...)
  bool insecure = false;
  Bytes spki_der;        // the certificate key the quote vouches for
  std::string cert_pem;  // to pin (tenet attest --save-cert)
  Bytes quote;
};

Result<VerifiedPeer> verify_ratls_certificate(X509* cert, const Policy& policy);

// OpenSSL glue: replaces the context's certificate verification with verify_ratls_certificate
// against `policy` and requires a peer certificate (SSL_VERIFY_PEER; on servers also
// FAIL_IF_NO_PEER_CERT, for mutual attestation between enclaves). After the handshake,
// ratls_peer(ssl) returns the verified peer, or the failure with its stage.
void install_ratls_verifier(SSL_CTX* ctx, std::shared_ptr<const Policy> policy);
Result<VerifiedPeer> ratls_peer(SSL* ssl);

// Human-readable summary lines (platform marked INSECURE for sim).
std::string describe_peer(const VerifiedPeer& peer);

}  // namespace tenet::attest
