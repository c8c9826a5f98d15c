// Client side of key release (kbs_protocol.h), run inside the enclave: proves by attestation that
// it is an enclave the model owner's policy accepts, and receives a secret (the model key)
// wrapped to a fresh P-384 key that never leaves it.
//
//   auto key = tenet::keybroker::fetch_resource("http://127.0.0.1:8470", "default/model/resnet50",
//                                               "sim", [&](auto report_data) { return platform.get_quote(report_data); });
//
// The broker's replies are treated as hostile (sizes bounded, JSON checked strictly); a secret is
// returned only if it authenticates under the ephemeral key (so a man in the middle can refuse
// service but not substitute a key).
#pragma once

#include <chrono>
#include <string>

#include "core/status.h"
#include "keybroker/kbs_protocol.h"
#include "seal/secret.h"

namespace tenet::keybroker {

struct FetchOptions {
  std::chrono::seconds timeout{10};    // connect and read timeout per request
  size_t max_response_bytes = 64 * 1024;
};

// Runs auth -> attest -> resource against `base_url` ("http://HOST:PORT"; "https://" verifies the
// broker's certificate against the system roots) and returns the unwrapped secret of
// `resource_path` ("<repo>/<type>/<tag>"). Errors name the step (auth / attest / resource):
// an unreachable broker is kFailedPrecondition ("cannot reach the key broker"); a refusal carries
// the broker's HTTP status and detail (401 / 403 as kFailedPrecondition, 404 as kNotFound); a
// malformed reply is kDataLoss; an evidence_provider error is passed through with context.
Result<seal::SecretBytes> fetch_resource(const std::string& base_url, const std::string& resource_path,
                                         const std::string& tee_name, const EvidenceProvider& evidence_provider,
                                         const FetchOptions& options = {});

}  // namespace tenet::keybroker
