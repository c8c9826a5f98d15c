// A TLS client connection whose server is attested during the handshake: the server's RA-TLS
// certificate must satisfy the policy (install_ratls_verifier), or no byte is sent. Used by
// `tenet attest` (verify and pin) and `tenet infer` (verify, then send the request on the same
// connection).
#pragma once

#include <memory>
#include <string>

#include <openssl/ssl.h>

#include "attest/policy.h"
#include "attest/ratls.h"

namespace tenet::attest {

struct RatlsConnection {
  std::unique_ptr<SSL_CTX, decltype(&SSL_CTX_free)> ctx{nullptr, SSL_CTX_free};
  std::unique_ptr<SSL, decltype(&SSL_free)> ssl{nullptr, SSL_free};  // owns the socket BIO
  VerifiedPeer peer;
};

// Connects to `server` ("HOST:PORT", "[v6]:PORT") and completes the handshake. Errors: kNotFound
// when nothing answers; the verifier's error (naming its stage, see failed_stage) when the
// evidence fails the policy; kFailedPrecondition for other TLS failures. `timeout_ms` bounds
// each socket read and write, then and afterwards.
Result<RatlsConnection> connect_ratls(const std::string& server, std::shared_ptr<const Policy> policy, int timeout_ms);

}  // namespace tenet::attest
