#include "keybroker/key_broker.h"

#include <httplib.h>

#include <nlohmann/json.hpp>

#include "seal/base64url.h"
#include "seal/key_wrap.h"

namespace tenet::keybroker {
namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

BrokerResponse error_response(int status, const char* type, const std::string& detail) {
  json j;
  j["type"] = type;
  j["detail"] = detail;
  return BrokerResponse{status, j.dump(), ""};
}

// The session id from a Cookie header ("a=b; kbs-session-id=<64 hex>; c=d"); "" when absent or
// not well formed.
std::string session_id_from_cookie(std::string_view header) {
  size_t pos = 0;
  while (pos < header.size()) {
    size_t end = header.find(';', pos);
    if (end == std::string_view::npos) end = header.size();
    std::string_view item = header.substr(pos, end - pos);
    while (!item.empty() && item.front() == ' ') item.remove_prefix(1);
    const size_t eq = item.find('=');
    if (eq != std::string_view::npos && item.substr(0, eq) == kSessionCookie) {
      std::string_view v = item.substr(eq + 1);
      if (v.size() != 64) return "";
      for (char c : v) {
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return "";
      }
      return std::string(v);
    }
    pos = end + 1;
  }
  return "";
}

bool printable_token(std::string_view s, size_t max) {
  if (s.empty() || s.size() > max) return false;
  for (char c : s) {
    if (c <= 0x20 || c > 0x7e) return false;
  }
  return true;
}

}  // namespace

struct KeyBroker::Session {
  std::string tee;
  std::string nonce;
  Clock::time_point expiry;  // of the nonce before attestation, of the session after
  bool nonce_spent = false;
  bool attested = false;
  crypto::PublicKey tee_pubkey;
  std::string identity;
};

KeyBroker::KeyBroker(EvidenceVerifier verifier, KeyBrokerOptions options)
    : verifier_(std::move(verifier)), options_(std::move(options)) {}

KeyBroker::~KeyBroker() = default;  // resources_ are SecretBytes: wiped

Clock::time_point KeyBroker::now() const { return options_.clock ? options_.clock() : Clock::now(); }

void KeyBroker::log(const std::string& line) const {
  if (options_.log) options_.log(line);
}

Status KeyBroker::add_resource(const std::string& path, seal::SecretBytes secret) {
  TENET_RETURN_IF_ERROR(validate_resource_path(path));
  if (secret.empty() || secret.size() > seal::kMaxWrappedSecretBytes) {
    return invalid_argument("resource '{}': secret of {} bytes (1..{} allowed)", path, secret.size(), seal::kMaxWrappedSecretBytes);
  }
  std::lock_guard<std::mutex> lock(mu_);
  if (resources_.count(path)) return invalid_argument("resource '{}' is given twice", path);
  resources_.emplace(path, std::move(secret));
  return ok_status();
}

size_t KeyBroker::session_count() const {
  std::lock_guard<std::mutex> lock(mu_);
  return sessions_.size();
}

void KeyBroker::purge_expired_locked(Clock::time_point t) {
  for (auto it = sessions_.begin(); it != sessions_.end();) {
    if (it->second->expiry <= t) it = sessions_.erase(it);
    else ++it;
  }
}

BrokerResponse KeyBroker::handle_auth(std::string_view body) {
  if (body.size() > options_.max_body_bytes) return error_response(413, "payload-too-large", "request body too large");
  json req = json::parse(body.begin(), body.end(), nullptr, false);
  if (req.is_discarded() || !req.is_object()) return error_response(400, "malformed-request", "auth: body is not a JSON object");
  auto version = req.find("version");
  auto tee = req.find("tee");
  if (version == req.end() || !version->is_string() || !printable_token(version->get_ref<const std::string&>(), 32)) {
    return error_response(400, "malformed-request", "auth: 'version' must be a short string");
  }
  if (tee == req.end() || !tee->is_string() || !printable_token(tee->get_ref<const std::string&>(), 64)) {
    return error_response(400, "malformed-request", "auth: 'tee' must be a short string naming the platform");
  }
  if (version->get_ref<const std::string&>() != kProtocolVersion) {
    return error_response(400, "protocol-version", fmt::format("auth: protocol version '{}' is not supported (expected {})",
                                                               version->get_ref<const std::string&>(), kProtocolVersion));
  }
  auto session = std::make_unique<Session>();
  session->tee = tee->get<std::string>();
  crypto::Bytes id(32), nonce(kNonceBytes);
  if (!crypto::random_bytes(id).ok() || !crypto::random_bytes(nonce).ok()) {
    return error_response(500, "internal", "auth: no randomness");
  }
  const std::string session_id = crypto::to_hex(id);
  session->nonce = seal::base64url_encode(nonce);
  const Clock::time_point t = now();
  session->expiry = t + options_.nonce_ttl;
  const std::string nonce_text = session->nonce;
  {
    std::lock_guard<std::mutex> lock(mu_);
    purge_expired_locked(t);
    if (sessions_.size() >= options_.max_sessions) {
      log(fmt::format("auth refused: session table full ({} sessions)", sessions_.size()));
      return error_response(503, "too-many-sessions", "auth: the key broker has too many open sessions; retry later");
    }
    sessions_.emplace(session_id, std::move(session));
  }
  log(fmt::format("auth: session {}... tee={}", session_id.substr(0, 8), tee->get_ref<const std::string&>()));
  json resp;
  resp["nonce"] = nonce_text;
  resp["extra-params"] = "";
  BrokerResponse r{200, resp.dump(), ""};
  r.set_cookie = fmt::format("{}={}; Path=/kbs/v0; HttpOnly; SameSite=Strict; Max-Age={}", kSessionCookie, session_id,
                             options_.session_ttl.count());
  return r;
}

BrokerResponse KeyBroker::handle_attest(std::string_view cookie_header, std::string_view body) {
  if (body.size() > options_.max_body_bytes) return error_response(413, "payload-too-large", "request body too large");
  const std::string id = session_id_from_cookie(cookie_header);
  if (id.empty()) return error_response(401, "unauthorized", "attest: no kbs-session-id cookie; call /kbs/v0/auth first");
  json req = json::parse(body.begin(), body.end(), nullptr, false);
  if (req.is_discarded() || !req.is_object()) return error_response(400, "malformed-request", "attest: body is not a JSON object");
  auto jwk = req.find("tee-pubkey");
  auto evidence_b64 = req.find("tee-evidence");
  if (jwk == req.end() || !jwk->is_object()) return error_response(400, "malformed-request", "attest: 'tee-pubkey' must be a JWK object");
  if (evidence_b64 == req.end() || !evidence_b64->is_string()) {
    return error_response(400, "malformed-request", "attest: 'tee-evidence' must be a base64url string");
  }
  auto pubkey = seal::public_key_from_jwk(jwk->dump());
  if (!pubkey.ok()) return error_response(400, "malformed-request", "attest: tee-pubkey: " + pubkey.status().message());
  auto curve = pubkey->curve();
  if (!curve.ok() || *curve != crypto::Curve::kP384) return error_response(400, "malformed-request", "attest: tee-pubkey must be EC P-384");
  auto evidence = seal::base64url_decode(evidence_b64->get_ref<const std::string&>());
  if (!evidence.ok() || evidence->empty()) return error_response(400, "malformed-request", "attest: tee-evidence is not base64url");

  // Spend the nonce before verifying: one attempt per nonce, successful or not.
  std::string nonce;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = sessions_.find(id);
    const Clock::time_point t = now();
    if (it == sessions_.end()) return error_response(401, "unauthorized", "attest: unknown or expired session");
    Session& s = *it->second;
    if (s.nonce_spent) return error_response(401, "unauthorized", "attest: this session's nonce was already used (replay); call /kbs/v0/auth again");
    if (s.expiry <= t) {
      sessions_.erase(it);
      return error_response(401, "unauthorized", "attest: the nonce expired; call /kbs/v0/auth again");
    }
    s.nonce_spent = true;
    nonce = s.nonce;
  }
  auto expected = expected_report_data(nonce, *pubkey);
  if (!expected.ok()) return error_response(500, "internal", "attest: " + expected.status().message());
  if (!verifier_) return error_response(403, "attestation-failed", "attest: the key broker has no evidence verifier configured");
  auto verified = verifier_(*evidence);
  if (!verified.ok()) {
    log(fmt::format("attest refused: session {}...: {}", id.substr(0, 8), verified.status().message()));
    return error_response(403, "attestation-failed", "attest: evidence refused by policy: " + verified.status().message());
  }
  if (!crypto::constant_time_equal(verified->report_data, *expected)) {
    log(fmt::format("attest refused: session {}...: REPORTDATA mismatch", id.substr(0, 8)));
    return error_response(403, "attestation-failed",
                          "attest: the evidence's REPORTDATA does not bind this session's nonce and tee-pubkey");
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = sessions_.find(id);
    if (it == sessions_.end()) return error_response(401, "unauthorized", "attest: session expired during verification");
    Session& s = *it->second;
    s.attested = true;
    s.tee_pubkey = std::move(pubkey).value();
    s.identity = verified->identity;
    s.expiry = now() + options_.session_ttl;
  }
  log(fmt::format("attested: session {}... identity: {}", id.substr(0, 8), verified->identity));
  return BrokerResponse{200, R"({"attested":true})", ""};
}

BrokerResponse KeyBroker::handle_resource(std::string_view cookie_header, std::string_view resource_path) {
  const std::string id = session_id_from_cookie(cookie_header);
  if (id.empty()) return error_response(401, "unauthorized", "resource: no kbs-session-id cookie; call /kbs/v0/auth first");
  std::lock_guard<std::mutex> lock(mu_);
  auto it = sessions_.find(id);
  if (it == sessions_.end()) return error_response(401, "unauthorized", "resource: unknown or expired session");
  Session& s = *it->second;
  if (s.expiry <= now()) {
    sessions_.erase(it);
    return error_response(401, "unauthorized", "resource: the session expired; attest again");
  }
  if (!s.attested) return error_response(401, "unauthorized", "resource: the session is not attested; call /kbs/v0/attest first");
  Status valid = validate_resource_path(resource_path);
  if (!valid.ok()) return error_response(400, "malformed-request", "resource: " + valid.message());
  auto r = resources_.find(std::string(resource_path));
  if (r == resources_.end()) return error_response(404, "not-found", fmt::format("resource '{}' does not exist", resource_path));
  auto wrapped = seal::wrap_secret(s.tee_pubkey, r->second.view(), resource_wrap_context(resource_path));
  if (!wrapped.ok()) return error_response(500, "internal", "resource: wrapping failed: " + wrapped.status().message());
  log(fmt::format("released {} to session {}... ({})", resource_path, id.substr(0, 8), s.identity));
  return BrokerResponse{200, seal::wrapped_secret_to_json(*wrapped), ""};
}

// ---- HTTP ----

struct KeyBrokerServer::Impl {
  std::shared_ptr<KeyBroker> broker;
  httplib::Server server;
  std::thread thread;
};

namespace {
void reply(httplib::Response& res, const BrokerResponse& r) {
  res.status = r.status;
  if (!r.set_cookie.empty()) res.set_header("Set-Cookie", r.set_cookie);
  res.set_header("Cache-Control", "no-store");
  res.set_content(r.body, "application/json");
}
}  // namespace

Result<std::unique_ptr<KeyBrokerServer>> KeyBrokerServer::start(std::shared_ptr<KeyBroker> broker, const std::string& host,
                                                                int port) {
  if (!broker) return invalid_argument("KeyBrokerServer::start: no broker");
  if (port < 0 || port > 65535) return invalid_argument("port {} is out of range", port);
  std::unique_ptr<KeyBrokerServer> s(new KeyBrokerServer());
  s->impl_ = std::make_unique<Impl>();
  Impl& impl = *s->impl_;
  impl.broker = broker;
  KeyBroker* b = broker.get();
  httplib::Server& srv = impl.server;
  srv.set_payload_max_length(broker->options().max_body_bytes);
  srv.set_read_timeout(5, 0);
  srv.set_write_timeout(5, 0);
  srv.set_keep_alive_max_count(16);
  srv.set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr) {
    reply(res, BrokerResponse{500, R"({"type":"internal","detail":"internal error"})", ""});
  });
  srv.set_error_handler([](const httplib::Request&, httplib::Response& res) {
    if (!res.body.empty()) return;
    const char* type = res.status == 413 ? "payload-too-large" : res.status == 404 ? "not-found" : "error";
    json j;
    j["type"] = type;
    j["detail"] = fmt::format("HTTP {}", res.status);
    res.set_content(j.dump(), "application/json");
  });
  srv.Post(std::string(kAuthPath), [b](const httplib::Request& req, httplib::Response& res) { reply(res, b->handle_auth(req.body)); });
  srv.Post(std::string(kAttestPath), [b](const httplib::Request& req, httplib::Response& res) {
    reply(res, b->handle_attest(req.get_header_value("Cookie"), req.body));
  });
  srv.Get(std::string(kResourcePrefix) + "(.+)", [b](const httplib::Request& req, httplib::Response& res) {
    reply(res, b->handle_resource(req.get_header_value("Cookie"), std::string(req.matches[1])));
  });
  int bound = 0;
  if (port == 0) {
    bound = srv.bind_to_any_port(host);
    if (bound <= 0) return invalid_argument("cannot bind {}:any port", host);
  } else {
    if (!srv.bind_to_port(host, port)) return invalid_argument("cannot bind {}:{} (in use, or not a local address)", host, port);
    bound = port;
  }
  s->port_ = bound;
  impl.thread = std::thread([&srv] { srv.listen_after_bind(); });
  // stop() is a no-op until the listen loop runs; wait for it so that stop() always ends it.
  for (int i = 0; i < 5000 && !srv.is_running(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  if (!srv.is_running()) return internal_error("the key broker's HTTP loop did not start");
  return s;
}

void KeyBrokerServer::stop() {
  if (!impl_) return;
  impl_->server.stop();
  if (impl_->thread.joinable()) impl_->thread.join();
}

KeyBrokerServer::~KeyBrokerServer() { stop(); }

}  // namespace tenet::keybroker
