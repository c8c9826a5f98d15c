#include "attest/ratls.h"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>

#include <cstring>

#include <fmt/format.h>

#include "attest/x509_util.h"

namespace tenet::attest {

namespace {

constexpr const char* kFailPrefix = "attestation failed at ";

template <typename... Args>
Status fail_at(VerifyStage stage, fmt::format_string<Args...> f, Args&&... args) {
  return Status(StatusCode::kFailedPrecondition,
                std::string(kFailPrefix) + verify_stage_name(stage) + ": " + fmt::format(f, std::forward<Args>(args)...));
}
Status fail_at(VerifyStage stage, const Status& cause) {
  return Status(StatusCode::kFailedPrecondition,
                std::string(kFailPrefix) + verify_stage_name(stage) + ": " + cause.message());
}

template <typename T, void (*F)(T*)>
struct Free {
  void operator()(T* p) const { F(p); }
};
using StorePtr = std::unique_ptr<X509_STORE, Free<X509_STORE, X509_STORE_free>>;
using StoreCtxPtr = std::unique_ptr<X509_STORE_CTX, Free<X509_STORE_CTX, X509_STORE_CTX_free>>;
void free_x509_stack(STACK_OF(X509)* s) { sk_X509_free(s); }
using StackPtr = std::unique_ptr<STACK_OF(X509), Free<STACK_OF(X509), free_x509_stack>>;

Status verify_raw_signature(const crypto::PublicKey& key, ByteSpan message, ByteSpan raw_sig) {
  TENET_ASSIGN_OR_RETURN(Bytes der, crypto::ecdsa_raw_to_der(raw_sig));
  return key.verify(message, der);
}

std::string subject_cn(X509* cert) {
  char buf[256] = {0};
  if (X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, buf, sizeof buf) < 0) return "";
  return buf;
}

std::string subject_line(X509* cert) {
  char buf[512] = {0};
  X509_NAME_oneline(X509_get_subject_name(cert), buf, sizeof buf);
  return buf;
}

// Stages quote-signature .. debug over a parsed quote.
Result<VerifiedQuote> verify_parsed_quote(Quote quote, const Policy& policy) {
  VerifiedQuote v;

  // quote-signature: the attestation key signs header || body.
  auto att_key = crypto::PublicKey::from_raw_point(crypto::Curve::kP256, quote.attestation_key);
  if (!att_key.ok()) return fail_at(VerifyStage::kQuoteSignature, "attestation key is not a P-256 point");
  if (Status s = verify_raw_signature(*att_key, quote.raw_signed, quote.signature); !s.ok()) {
    return fail_at(VerifyStage::kQuoteSignature, "the attestation key's signature over the quote does not verify");
  }

  // The PCK chain (certification data type 5).
  if (quote.cert_data_type != kCertDataPckChain) {
    return fail_at(VerifyStage::kPlatformChain, "certification data type {} (supported: 5, PCK chain PEM)", quote.cert_data_type);
  }
  auto chain = crypto::x509_chain_from_pem(crypto::as_chars(quote.cert_data));
  if (!chain.ok()) return fail_at(VerifyStage::kPlatformChain, "certification data holds no PEM certificate chain");
  X509* leaf = (*chain)[0].get();

  // qe-report: signed by the PCK key, and binding the attestation key.
  EVP_PKEY* leaf_key = X509_get0_pubkey(leaf);
  if (leaf_key == nullptr || EVP_PKEY_up_ref(leaf_key) != 1) return fail_at(VerifyStage::kQeReport, "PCK certificate has no usable key");
  crypto::PublicKey pck(crypto::PkeyPtr{leaf_key});
  auto pck_curve = pck.curve();
  if (!pck_curve.ok() || *pck_curve != crypto::Curve::kP256) return fail_at(VerifyStage::kQeReport, "PCK key is not P-256");
  if (Status s = verify_raw_signature(pck, quote.raw_qe_report, quote.qe_report_signature); !s.ok()) {
    return fail_at(VerifyStage::kQeReport, "the PCK key's signature over the QE report does not verify");
  }
  Bytes bind(quote.attestation_key.begin(), quote.attestation_key.end());
  bind.insert(bind.end(), quote.qe_auth_data.begin(), quote.qe_auth_data.end());
  const auto bind_hash = crypto::sha256(bind);
  std::array<uint8_t, 64> expected_qe_rd{};
  std::memcpy(expected_qe_rd.data(), bind_hash.data(), 32);
  if (!crypto::constant_time_equal(expected_qe_rd, quote.qe_report.report_data)) {
    return fail_at(VerifyStage::kQeReport, "QE report data does not bind the attestation key");
  }

  // platform-chain: PCK -> intermediates -> a root from the policy.
  StorePtr store(X509_STORE_new());
  StackPtr untrusted(sk_X509_new_null());
  StoreCtxPtr sctx(X509_STORE_CTX_new());
  if (!store || !untrusted || !sctx) return internal_error("X509 store: out of memory");
  for (const std::string& pem : policy.trusted_roots_pem) {
    auto root = crypto::x509_from_pem(pem);
    if (!root.ok() || X509_STORE_add_cert(store.get(), root->get()) != 1) {
      ERR_clear_error();
      return fail_at(VerifyStage::kPlatformChain, "policy root is not a usable certificate");
    }
  }
  for (size_t i = 1; i < chain->size(); ++i) sk_X509_push(untrusted.get(), (*chain)[i].get());
  if (X509_STORE_CTX_init(sctx.get(), store.get(), leaf, untrusted.get()) != 1) return internal_error("X509_STORE_CTX_init");
  if (X509_verify_cert(sctx.get()) != 1) {
    const int err = X509_STORE_CTX_get_error(sctx.get());
    ERR_clear_error();
    return fail_at(VerifyStage::kPlatformChain, "PCK chain of '{}' does not verify to a trusted root: {}", subject_line(leaf),
                   X509_verify_cert_error_string(err));
  }
  STACK_OF(X509)* verified = X509_STORE_CTX_get0_chain(sctx.get());
  X509* anchor = verified ? sk_X509_value(verified, sk_X509_num(verified) - 1) : nullptr;
  if (anchor == nullptr) return internal_error("verified chain is empty");
  v.root_subject = subject_line(anchor);

  // insecure-platform: sim roots are marked by their CN (a policy only trusts them knowingly), and
  // sim quotes by their QE vendor id.
  v.insecure = subject_cn(anchor) == kSimRootCommonName || quote.header.qe_vendor_id == kSimQeVendorId;
  if (v.insecure && !policy.allow_insecure_sim) {
    return fail_at(VerifyStage::kInsecurePlatform,
                   "evidence comes from the sim platform (INSECURE); the policy needs \"allow_insecure_sim\": true");
  }
  v.platform = v.insecure ? "sim (INSECURE)" : (quote.is_tdx() ? "tdx-dcap" : "sgx-dcap");

  // measurement
  v.identity = identity_of(quote);
  const EnclaveIdentity& id = v.identity;
  if (!policy.mrenclave.empty()) {
    bool match = false;
    for (const Bytes& m : policy.mrenclave) match = match || crypto::constant_time_equal(m, id.mrenclave);
    if (!match) {
      return fail_at(VerifyStage::kMeasurement, "{} {} is not in the policy's list", id.tdx ? "MRTD" : "MRENCLAVE",
                     crypto::to_hex(id.mrenclave));
    }
  }
  if (policy.mrsigner) {
    if (id.tdx) return fail_at(VerifyStage::kMeasurement, "the policy names an MRSIGNER, which TDX quotes do not have");
    if (!crypto::constant_time_equal(*policy.mrsigner, id.mrsigner)) {
      return fail_at(VerifyStage::kMeasurement, "MRSIGNER {} is not the policy's {}", crypto::to_hex(id.mrsigner),
                     crypto::to_hex(*policy.mrsigner));
    }
    if (policy.isv_prod_id && *policy.isv_prod_id != id.isv_prod_id) {
      return fail_at(VerifyStage::kMeasurement, "ISVPRODID {} is not the policy's {}", id.isv_prod_id, *policy.isv_prod_id);
    }
    if (id.isv_svn < policy.min_isv_svn) {
      return fail_at(VerifyStage::kMeasurement, "ISVSVN {} is below the policy's minimum {}", id.isv_svn, policy.min_isv_svn);
    }
  }

  // debug
  if (id.debug && !policy.allow_debug) {
    return fail_at(VerifyStage::kDebug, "the enclave runs in debug mode (its memory is readable by the host); the policy does not allow debug");
  }

  v.report_data = quote.report_data();
  v.quote = std::move(quote);
  return v;
}

Result<Bytes> cert_spki_der(X509* cert) {
  EVP_PKEY* key = X509_get0_pubkey(cert);
  if (key == nullptr) return invalid_argument("certificate has no public key");
  unsigned char* der = nullptr;
  const int n = i2d_PUBKEY(key, &der);
  if (n <= 0) {
    ERR_clear_error();
    return invalid_argument("certificate public key cannot be encoded");
  }
  Bytes out(der, der + n);
  OPENSSL_free(der);
  return out;
}

// ---- OpenSSL ex_data: the policy on the SSL_CTX, the verification result on the SSL ----

void free_policy(void*, void* ptr, CRYPTO_EX_DATA*, int, long, void*) {
  delete static_cast<std::shared_ptr<const Policy>*>(ptr);
}
void free_result(void*, void* ptr, CRYPTO_EX_DATA*, int, long, void*) { delete static_cast<Result<VerifiedPeer>*>(ptr); }

int ctx_policy_index() {
  static const int idx = SSL_CTX_get_ex_new_index(0, nullptr, nullptr, nullptr, free_policy);
  return idx;
}
int ssl_result_index() {
  static const int idx = SSL_get_ex_new_index(0, nullptr, nullptr, nullptr, free_result);
  return idx;
}

int ratls_cert_verify_callback(X509_STORE_CTX* sctx, void*) {
  SSL* ssl = static_cast<SSL*>(X509_STORE_CTX_get_ex_data(sctx, SSL_get_ex_data_X509_STORE_CTX_idx()));
  X509* leaf = X509_STORE_CTX_get0_cert(sctx);
  auto* policy = ssl ? static_cast<std::shared_ptr<const Policy>*>(
                           SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), ctx_policy_index()))
                     : nullptr;
  auto* result = new Result<VerifiedPeer>(
      policy == nullptr || *policy == nullptr ? Result<VerifiedPeer>(internal_error("RA-TLS verifier has no policy"))
      : leaf == nullptr ? Result<VerifiedPeer>(fail_at(VerifyStage::kCertificate, "the peer sent no certificate"))
                        : verify_ratls_certificate(leaf, **policy));
  const bool ok = result->ok();
  if (ssl != nullptr) {
    delete static_cast<Result<VerifiedPeer>*>(SSL_get_ex_data(ssl, ssl_result_index()));
    SSL_set_ex_data(ssl, ssl_result_index(), result);
  } else {
    delete result;
  }
  X509_STORE_CTX_set_error(sctx, ok ? X509_V_OK : X509_V_ERR_APPLICATION_VERIFICATION);
  return ok ? 1 : 0;
}

}  // namespace

const char* verify_stage_name(VerifyStage stage) {
  switch (stage) {
    case VerifyStage::kCertificate: return "certificate";
    case VerifyStage::kEvidenceExtension: return "evidence-extension";
    case VerifyStage::kClaims: return "claims";
    case VerifyStage::kPubkeyHash: return "pubkey-hash";
    case VerifyStage::kQuoteFormat: return "quote-format";
    case VerifyStage::kReportData: return "report-data";
    case VerifyStage::kQuoteSignature: return "quote-signature";
    case VerifyStage::kQeReport: return "qe-report";
    case VerifyStage::kPlatformChain: return "platform-chain";
    case VerifyStage::kInsecurePlatform: return "insecure-platform";
    case VerifyStage::kMeasurement: return "measurement";
    case VerifyStage::kDebug: return "debug";
    case VerifyStage::kModelDigest: return "model-digest";
  }
  return "unknown";
}

std::optional<VerifyStage> failed_stage(const Status& status) {
  const std::string& m = status.message();
  const size_t at = m.find(kFailPrefix);
  if (status.ok() || at == std::string::npos) return std::nullopt;
  const size_t start = at + std::strlen(kFailPrefix);
  const size_t end = m.find(':', start);
  const std::string name = m.substr(start, end == std::string::npos ? std::string::npos : end - start);
  for (int s = 0; s <= static_cast<int>(VerifyStage::kModelDigest); ++s) {
    if (name == verify_stage_name(static_cast<VerifyStage>(s))) return static_cast<VerifyStage>(s);
  }
  return std::nullopt;
}

Result<VerifiedQuote> verify_quote(ByteSpan quote_bytes, const Policy& policy) {
  auto quote = parse_quote(quote_bytes);
  if (!quote.ok()) return fail_at(VerifyStage::kQuoteFormat, quote.status());
  return verify_parsed_quote(std::move(quote).value(), policy);
}

Result<Bytes> make_evidence(Platform& platform, const Claims& claims) {
  TENET_ASSIGN_OR_RETURN(Bytes claims_cbor, encode_claims(claims));
  auto quote = platform.get_quote(report_data_for_claims(claims_cbor));
  if (!quote.ok()) return quote.status().with_context(fmt::format("getting a quote from platform {}", platform.name()));
  return encode_evidence(*quote, claims_cbor);
}

Result<VerifiedEvidence> verify_evidence(ByteSpan evidence_cbor, const Policy& policy) {
  auto evidence = decode_evidence(evidence_cbor);
  if (!evidence.ok()) return fail_at(VerifyStage::kEvidenceExtension, evidence.status());
  auto claims = decode_claims(evidence->claims_cbor);
  if (!claims.ok()) return fail_at(VerifyStage::kClaims, claims.status());
  auto quote = parse_quote(evidence->quote);
  if (!quote.ok()) return fail_at(VerifyStage::kQuoteFormat, quote.status());
  if (!crypto::constant_time_equal(report_data_for_claims(evidence->claims_cbor), quote->report_data())) {
    return fail_at(VerifyStage::kReportData, "REPORTDATA is not SHA-256(claims) || zeros");
  }
  TENET_ASSIGN_OR_RETURN(VerifiedQuote vq, verify_parsed_quote(std::move(quote).value(), policy));
  if (policy.model_digest) {
    bool found = false;
    for (const Bytes& d : claims->model_digests) found = found || crypto::constant_time_equal(d, *policy.model_digest);
    if (!found) return fail_at(VerifyStage::kModelDigest, "the enclave does not claim model digest {}", crypto::to_hex(*policy.model_digest));
  }
  return VerifiedEvidence{std::move(vq), std::move(claims).value()};
}

Result<crypto::X509Ptr> make_ratls_certificate(const crypto::PrivateKey& key, ByteSpan evidence, const RatlsCertOptions& o) {
  CertSpec spec;
  spec.common_name = o.common_name;
  spec.organization = "tenet";
  spec.is_ca = true;  // self-signed and pinned by clients as their only trust anchor
  spec.server_and_client_auth = true;
  spec.validity_days = o.validity_days;
  spec.dns_names = o.dns_names;
  spec.ip_addresses = o.ip_addresses;
  spec.extra_oid = kTaggedEvidenceOid;
  spec.extra_value.assign(evidence.begin(), evidence.end());
  return make_certificate(spec, key, nullptr, key);
}

Result<RatlsIdentity> make_ratls_identity(Platform& platform, const RatlsClaimsInput& in, const RatlsCertOptions& options) {
  if (in.mode != "tee" && in.mode != "hybrid") return invalid_argument("RA-TLS mode '{}' (expected tee or hybrid)", in.mode);
  RatlsIdentity id;
  TENET_ASSIGN_OR_RETURN(id.key, crypto::PrivateKey::generate(crypto::Curve::kP384));
  TENET_ASSIGN_OR_RETURN(Bytes spki, id.key.public_spki_der());
  id.platform = platform.name();
  id.insecure = !platform.is_secure();
  id.claims.pubkey_hash_alg = kHashAlgSha256;
  TENET_ASSIGN_OR_RETURN(id.claims.pubkey_hash, pubkey_hash(kHashAlgSha256, spki));
  id.claims.model_digests = in.model_digests;
  id.claims.mode = in.mode;
  if (!in.model_modes.empty() && in.model_modes.size() != in.model_digests.size()) {
    return invalid_argument("RA-TLS claims: {} model modes for {} model digests", in.model_modes.size(), in.model_digests.size());
  }
  id.claims.model_modes = in.model_modes;
  id.claims.platform = id.platform;
  TENET_ASSIGN_OR_RETURN(id.claims_cbor, encode_claims(id.claims));
  const auto report_data = report_data_for_claims(id.claims_cbor);
  auto quote = platform.get_quote(report_data);
  if (!quote.ok()) return quote.status().with_context(fmt::format("getting a quote from platform {}", id.platform));
  id.quote = std::move(quote).value();
  TENET_ASSIGN_OR_RETURN(id.evidence, encode_evidence(id.quote, id.claims_cbor));
  TENET_ASSIGN_OR_RETURN(id.cert, make_ratls_certificate(id.key, id.evidence, options));
  TENET_ASSIGN_OR_RETURN(id.cert_pem, crypto::x509_to_pem(id.cert.get()));
  return id;
}

Result<PemPair> ratls_pem(const RatlsIdentity& identity) {
  PemPair p;
  p.cert_pem = identity.cert_pem;
  TENET_ASSIGN_OR_RETURN(p.key_pem, identity.key.to_pem());
  return p;
}

Status use_ratls_identity(SSL_CTX* ctx, const RatlsIdentity& identity) {
  if (SSL_CTX_use_certificate(ctx, identity.cert.get()) != 1 || SSL_CTX_use_PrivateKey(ctx, identity.key.get()) != 1 ||
      SSL_CTX_check_private_key(ctx) != 1) {
    return internal_error("installing the RA-TLS certificate: {}", crypto::openssl_errors());
  }
  return ok_status();
}

Result<VerifiedPeer> verify_ratls_certificate(X509* cert, const Policy& policy) {
  // certificate
  if (cert == nullptr) return fail_at(VerifyStage::kCertificate, "no certificate");
  EVP_PKEY* key = X509_get0_pubkey(cert);
  if (key == nullptr || X509_verify(cert, key) != 1) {
    ERR_clear_error();
    return fail_at(VerifyStage::kCertificate, "the certificate is not self-signed by its own key");
  }
  if (X509_cmp_current_time(X509_get0_notBefore(cert)) >= 0 || X509_cmp_current_time(X509_get0_notAfter(cert)) <= 0) {
    return fail_at(VerifyStage::kCertificate, "the certificate is outside its validity period");
  }
  auto spki = cert_spki_der(cert);
  if (!spki.ok()) return fail_at(VerifyStage::kCertificate, spki.status());

  // evidence-extension
  auto ext = find_extension(cert, kTaggedEvidenceOid);
  if (!ext.ok()) return fail_at(VerifyStage::kEvidenceExtension, ext.status());
  if (!ext->has_value()) return fail_at(VerifyStage::kEvidenceExtension, "no {} (TCG DICE tagged evidence) extension", kTaggedEvidenceOid);
  auto evidence = decode_evidence(**ext);
  if (!evidence.ok()) return fail_at(VerifyStage::kEvidenceExtension, evidence.status());

  // claims, pubkey-hash
  auto claims = decode_claims(evidence->claims_cbor);
  if (!claims.ok()) return fail_at(VerifyStage::kClaims, claims.status());
  auto expected_hash = pubkey_hash(claims->pubkey_hash_alg, *spki);
  if (!expected_hash.ok()) return fail_at(VerifyStage::kPubkeyHash, expected_hash.status());
  if (!crypto::constant_time_equal(*expected_hash, claims->pubkey_hash)) {
    return fail_at(VerifyStage::kPubkeyHash, "the claimed public-key hash is not the hash of the certificate's key");
  }

  // quote-format, report-data
  auto quote = parse_quote(evidence->quote);
  if (!quote.ok()) return fail_at(VerifyStage::kQuoteFormat, quote.status());
  const auto expected_rd = report_data_for_claims(evidence->claims_cbor);
  if (!crypto::constant_time_equal(expected_rd, quote->report_data())) {
    return fail_at(VerifyStage::kReportData, "REPORTDATA is not SHA-256(claims) || zeros");
  }

  // quote-signature .. debug
  TENET_ASSIGN_OR_RETURN(VerifiedQuote vq, verify_parsed_quote(std::move(quote).value(), policy));

  // model-digest
  if (policy.model_digest) {
    bool found = false;
    for (const Bytes& d : claims->model_digests) found = found || crypto::constant_time_equal(d, *policy.model_digest);
    if (!found) {
      return fail_at(VerifyStage::kModelDigest, "the enclave does not claim model digest {} (claims {} digest(s))",
                     crypto::to_hex(*policy.model_digest), claims->model_digests.size());
    }
  }

  VerifiedPeer peer;
  peer.identity = vq.identity;
  peer.claims = std::move(claims).value();
  peer.platform = vq.platform;
  peer.insecure = vq.insecure;
  peer.spki_der = std::move(spki).value();
  TENET_ASSIGN_OR_RETURN(peer.cert_pem, crypto::x509_to_pem(cert));
  peer.quote = std::move(evidence->quote);
  return peer;
}

void install_ratls_verifier(SSL_CTX* ctx, std::shared_ptr<const Policy> policy) {
  delete static_cast<std::shared_ptr<const Policy>*>(SSL_CTX_get_ex_data(ctx, ctx_policy_index()));
  SSL_CTX_set_ex_data(ctx, ctx_policy_index(), new std::shared_ptr<const Policy>(std::move(policy)));
  SSL_CTX_set_cert_verify_callback(ctx, ratls_cert_verify_callback, nullptr);
  SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nullptr);
}

Result<VerifiedPeer> ratls_peer(SSL* ssl) {
  auto* r = ssl ? static_cast<Result<VerifiedPeer>*>(SSL_get_ex_data(ssl, ssl_result_index())) : nullptr;
  if (r == nullptr) return failed_precondition("no RA-TLS verification ran on this connection");
  return *r;
}

std::string describe_peer(const VerifiedPeer& p) {
  const EnclaveIdentity& id = p.identity;
  std::string s;
  s += fmt::format("platform:      {}\n", p.insecure ? "sim (INSECURE: evidence from the sim platform proves nothing about the host)" : p.platform);
  s += fmt::format("{}     {}\n", id.tdx ? "mrtd:     " : "mrenclave:", crypto::to_hex(id.mrenclave));
  if (!id.tdx) {
    s += fmt::format("mrsigner:      {}\n", crypto::to_hex(id.mrsigner));
    s += fmt::format("isv_prod_id:   {}\nisv_svn:       {}\n", id.isv_prod_id, id.isv_svn);
  }
  s += fmt::format("debug:         {}\n", id.debug ? "yes (INSECURE)" : "no");
  s += fmt::format("mode:          {}\n", p.claims.mode.empty() ? "(not claimed)" : p.claims.mode);
  if (p.claims.model_digests.empty()) s += "model digests: (none claimed)\n";
  for (size_t i = 0; i < p.claims.model_digests.size(); ++i) {
    // Model modes are shown only when they pair up with the digests (as the enclave claims them).
    const bool paired = p.claims.model_modes.size() == p.claims.model_digests.size();
    s += fmt::format("model digest:  {}{}\n", crypto::to_hex(p.claims.model_digests[i]),
                     paired ? " (mode " + p.claims.model_modes[i] + ")" : std::string());
  }
  return s;
}

}  // namespace tenet::attest
