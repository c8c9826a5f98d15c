// The model owner's key broker: releases model keys only to enclaves whose evidence satisfies the
// owner's policy, over the KBS-shaped protocol in kbs_protocol.h.
//
// Two layers. KeyBroker is the protocol state machine, transport-agnostic and thread-safe: it
// holds the resources (model keys, in SecretBytes, wiped when it is destroyed) and a bounded
// session table, and turns (cookie, body) into (status, body, cookie). KeyBrokerServer puts it on
// HTTP (cpp-httplib), with a body-size limit and timeouts. The evidence check is injected
// (EvidenceVerifier), so this code knows nothing of quote formats or platforms.
//
// Memory is bounded: at most max_sessions sessions exist; expired ones are purged on every /auth;
// when the table is still full, /auth answers 503 rather than evicting sessions in progress.
// Unattested sessions live nonce_ttl; attested ones session_ttl from their attestation.
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>

#include "core/status.h"
#include "crypto/crypto.h"
#include "keybroker/kbs_protocol.h"
#include "seal/secret.h"

namespace tenet::keybroker {

struct KeyBrokerOptions {
  size_t max_sessions = 1024;
  std::chrono::seconds nonce_ttl{60};     // /auth -> /attest must happen within this
  std::chrono::seconds session_ttl{300};  // attested session may fetch resources this long
  size_t max_body_bytes = 64 * 1024;      // larger request bodies get 413
  // Time source (tests advance it); steady_clock::now when empty.
  std::function<std::chrono::steady_clock::time_point()> clock;
  // One line per protocol event (no secrets, no evidence bytes); nothing when empty.
  std::function<void(const std::string&)> log;
};

struct BrokerResponse {
  int status = 500;
  std::string body;        // JSON
  std::string set_cookie;  // a Set-Cookie value, or empty
};

class KeyBroker {
 public:
  // `verifier` must be non-empty (checked by add/handle: an empty verifier refuses every attest).
  KeyBroker(EvidenceVerifier verifier, KeyBrokerOptions options);
  ~KeyBroker();
  KeyBroker(const KeyBroker&) = delete;
  KeyBroker& operator=(const KeyBroker&) = delete;

  // Registers a secret under "<repo>/<type>/<tag>"; kInvalidArgument for a bad path or a duplicate.
  Status add_resource(const std::string& path, seal::SecretBytes secret);

  // Handlers; `cookie_header` is the raw Cookie request header ("" when absent).
  BrokerResponse handle_auth(std::string_view body);
  BrokerResponse handle_attest(std::string_view cookie_header, std::string_view body);
  BrokerResponse handle_resource(std::string_view cookie_header, std::string_view resource_path);

  size_t session_count() const;
  const KeyBrokerOptions& options() const { return options_; }

 private:
  struct Session;
  std::chrono::steady_clock::time_point now() const;
  void purge_expired_locked(std::chrono::steady_clock::time_point t);
  void log(const std::string& line) const;

  EvidenceVerifier verifier_;
  KeyBrokerOptions options_;
  mutable std::mutex mu_;
  std::unordered_map<std::string, std::unique_ptr<Session>> sessions_;
  std::map<std::string, seal::SecretBytes> resources_;
};

// KeyBroker on HTTP. Routes: POST /kbs/v0/auth, POST /kbs/v0/attest,
// GET /kbs/v0/resource/<repo>/<type>/<tag>. Plain HTTP: the secret is wrapped to the enclave's
// attested key, so the transport needs no confidentiality (put TLS in front for privacy of
// metadata if wanted).
class KeyBrokerServer {
 public:
  ~KeyBrokerServer();  // stop()
  // Binds host:port (port 0: any free port) and serves on a background thread.
  static Result<std::unique_ptr<KeyBrokerServer>> start(std::shared_ptr<KeyBroker> broker, const std::string& host,
                                                        int port);
  int port() const { return port_; }
  // Stops accepting, finishes in-flight requests, joins. Idempotent.
  void stop();

 private:
  KeyBrokerServer() = default;
  struct Impl;
  std::unique_ptr<Impl> impl_;
  int port_ = 0;
};

}  // namespace tenet::keybroker
