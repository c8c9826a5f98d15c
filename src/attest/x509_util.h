// Internal X.509 helpers for tenet_attest (certificate building and extension lookup).
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "crypto/crypto.h"

namespace tenet::attest {

struct CertSpec {
  std::string common_name;
  std::string organization;
  bool is_ca = false;
  bool server_and_client_auth = false;  // extendedKeyUsage serverAuth, clientAuth
  int validity_days = 365;
  std::vector<std::string> dns_names;
  std::vector<std::string> ip_addresses;
  // A non-critical extension (dotted OID, raw extension value bytes).
  std::string extra_oid;
  crypto::Bytes extra_value;
};

// Builds and signs a certificate for `subject_key`; `issuer` nullptr means self-signed (then
// `issuer_key` must be `subject_key`). SHA-256 for P-256 keys, SHA-384 for P-384.
Result<crypto::X509Ptr> make_certificate(const CertSpec& spec, const crypto::PrivateKey& subject_key, X509* issuer,
                                         const crypto::PrivateKey& issuer_key);

// The value bytes of the extension `oid` (dotted), or nullopt when absent; error if it appears twice.
Result<std::optional<crypto::Bytes>> find_extension(X509* cert, const char* oid);

}  // namespace tenet::attest
