// libFuzzer target for attestation evidence, which arrives from the network (attest/ratls.h):
// the DCAP quote parser, the RA-TLS CBOR evidence and claims decoders, the policy parser, and the
// whole certificate verifier on DER certificates.
//
// The first byte picks the parser (seeds in fuzz/corpus/evidence_fuzz/ carry it):
//   0 quote        parse_quote; what parses must re-serialize to bytes that parse to the same fields
//   1 evidence     decode_evidence, then decode_claims and parse_quote on its parts
//   2 claims       decode_claims; what decodes must re-encode and decode to the same claims
//   3 policy       parse_policy (JSON; root paths resolve under a directory that does not exist)
//   4 certificate  x509_from_der, then verify_ratls_certificate against a fixed policy
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "attest/evidence.h"
#include "attest/policy.h"
#include "attest/quote.h"
#include "attest/ratls.h"
#include "attest/x509_util.h"

namespace {

const tenet::attest::Policy& fixed_policy() {
  static const tenet::attest::Policy policy = [] {
    tenet::attest::Policy p;
    p.source = "fuzz";
    p.mrenclave.push_back(tenet::crypto::Bytes(32, 0));
    // A real (throwaway) root, so that the chain stage runs its full path.
    auto key = tenet::crypto::PrivateKey::generate(tenet::crypto::Curve::kP256);
    tenet::attest::CertSpec spec;
    spec.common_name = "fuzz root";
    spec.is_ca = true;
    auto root = tenet::attest::make_certificate(spec, *key, nullptr, *key);
    p.trusted_roots_pem.push_back(*tenet::crypto::x509_to_pem(root->get()));
    p.allow_insecure_sim = true;
    return p;
  }();
  return policy;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace tenet::attest;
  if (size < 1) return 0;
  const uint8_t mode = data[0] % 5;
  const tenet::crypto::ByteSpan in(data + 1, size - 1);
  switch (mode) {
    case 0: {
      auto q = parse_quote(in);
      if (!q.ok()) return 0;
      auto bytes = serialize_quote(*q);
      if (!bytes.ok()) __builtin_trap();
      auto again = parse_quote(*bytes);
      // Reserved fields are not kept (they re-serialize as zero); every named field must survive.
      if (!again.ok() || again->raw_signed != quote_signed_bytes(*q) ||
          again->raw_qe_report != serialize_report_body(q->qe_report) ||
          again->cert_data != q->cert_data || again->qe_auth_data != q->qe_auth_data || again->signature != q->signature) {
        __builtin_trap();
      }
      (void)verify_quote(in, fixed_policy());
      break;
    }
    case 1: {
      auto e = decode_evidence(in);
      if (!e.ok()) return 0;
      (void)decode_claims(e->claims_cbor);
      (void)parse_quote(e->quote);
      break;
    }
    case 2: {
      auto c = decode_claims(in);
      if (!c.ok()) return 0;
      auto bytes = encode_claims(*c);
      if (!bytes.ok()) return 0;  // e.g. an empty pubkey-hash decodes but is not encodable
      auto again = decode_claims(*bytes);
      if (!again.ok() || again->pubkey_hash != c->pubkey_hash || again->pubkey_hash_alg != c->pubkey_hash_alg || again->model_digests != c->model_digests ||
          again->mode != c->mode || again->platform != c->platform || again->nonce != c->nonce) {
        __builtin_trap();
      }
      break;
    }
    case 3:
      (void)parse_policy(tenet::crypto::as_chars(in), "/nonexistent-tenet-fuzz-dir", "fuzz");
      break;
    case 4: {
      auto cert = tenet::crypto::x509_from_der(in);
      if (!cert.ok()) return 0;
      (void)verify_ratls_certificate(cert->get(), fixed_policy());
      break;
    }
  }
  return 0;
}
