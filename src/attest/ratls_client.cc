#include "attest/ratls_client.h"

#include <sys/socket.h>
#include <sys/time.h>

#include <openssl/bio.h>

#include "crypto/crypto.h"

namespace tenet::attest {
namespace {

bool looks_like_ip(const std::string& host) {
  return host.find_first_not_of("0123456789.") == std::string::npos || host.find(':') != std::string::npos;
}

}  // namespace

Result<RatlsConnection> connect_ratls(const std::string& server, std::shared_ptr<const Policy> policy, int timeout_ms) {
  const size_t colon = server.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == server.size()) {
    return invalid_argument("server '{}': expected HOST:PORT", server);
  }
  std::string host = server.substr(0, colon);
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);

  RatlsConnection c;
  c.ctx.reset(SSL_CTX_new(TLS_client_method()));
  if (!c.ctx) return internal_error("SSL_CTX_new: {}", crypto::openssl_errors());
  SSL_CTX_set_min_proto_version(c.ctx.get(), TLS1_2_VERSION);
  install_ratls_verifier(c.ctx.get(), std::move(policy));

  BIO* bio = BIO_new_connect(server.c_str());
  if (bio == nullptr) return internal_error("BIO_new_connect: {}", crypto::openssl_errors());
  if (BIO_do_connect(bio) <= 0) {
    BIO_free_all(bio);
    return not_found("cannot connect to {}: {}", server, crypto::openssl_errors());
  }
  int fd = -1;
  BIO_get_fd(bio, &fd);
  if (fd >= 0) {
    timeval tv{timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  }
  c.ssl.reset(SSL_new(c.ctx.get()));
  SSL_set_bio(c.ssl.get(), bio, bio);  // ssl owns bio
  if (!looks_like_ip(host)) SSL_set_tlsext_host_name(c.ssl.get(), host.c_str());
  const int rc = SSL_connect(c.ssl.get());
  Result<VerifiedPeer> peer = ratls_peer(c.ssl.get());
  if (rc != 1 || !peer.ok()) {
    const std::string tls_error = crypto::openssl_errors();
    if (!peer.ok() && failed_stage(peer.status())) return peer.status();  // verification failed
    return Status(StatusCode::kFailedPrecondition,
                  fmt::format("TLS handshake with {} failed before attestation: {}", server,
                              tls_error.empty() ? "connection closed" : tls_error));
  }
  c.peer = std::move(peer).value();
  return c;
}

}  // namespace tenet::attest
