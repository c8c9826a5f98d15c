// Attestation policy: what a verifier (client, key broker, peer enclave) accepts.
//
// JSON file format (unknown keys are errors; every error names the key):
//   {
//     "mrenclave": ["<64 hex>", ...],        // any of these; or, instead / in addition:
//     "mrsigner": "<64 hex>",                // with "isv_prod_id" (required with mrsigner)
//     "isv_prod_id": 1,                      //   and "min_isv_svn" (default 0)
//     "min_isv_svn": 2,
//     "allow_debug": false,                  // default false: debug enclaves are rejected
//     "trusted_roots": ["roots/sim-root.pem", "-----BEGIN CERTIFICATE-----..."],
//                                            // PEM file paths (relative to the policy file) or
//                                            // inline PEM; at least one
//     "model_digest": "<hex>",               // optional: required sealed-package digest claim
//     "allow_insecure_sim": false            // must be true to accept sim (INSECURE) evidence
//   }
// At least one of "mrenclave" / "mrsigner" is required. When both are given, both must match.
// For TDX quotes, "mrenclave" entries are 96 hex digits and are compared with MRTD; "mrsigner"
// does not apply to TDX.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "crypto/crypto.h"

namespace tenet::attest {

struct Policy {
  std::vector<crypto::Bytes> mrenclave;  // 32 bytes (SGX) or 48 bytes (TDX MRTD) each
  std::optional<crypto::Bytes> mrsigner;  // 32 bytes
  std::optional<uint16_t> isv_prod_id;
  uint16_t min_isv_svn = 0;
  bool allow_debug = false;
  std::vector<std::string> trusted_roots_pem;  // one certificate per entry
  std::optional<crypto::Bytes> model_digest;
  bool allow_insecure_sim = false;
  std::string source;  // where it came from, for messages
};

// Parses policy JSON; relative root paths resolve against `base_dir`.
Result<Policy> parse_policy(std::string_view json_text, const std::string& base_dir, const std::string& source = "policy");
Result<Policy> load_policy(const std::string& path);

// Checks internal consistency (used by parse_policy; callers building a Policy in code call it too).
Status validate_policy(const Policy& policy);

// A policy JSON text accepting exactly `mrenclave` (hex) with `root_path` as the trusted root.
std::string policy_template(const std::string& mrenclave_hex, const std::string& mrsigner_hex, uint16_t isv_prod_id,
                            uint16_t isv_svn, const std::string& root_path, bool insecure_sim);

}  // namespace tenet::attest
