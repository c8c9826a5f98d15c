#include "keybroker/kbs_client.h"

#include <httplib.h>

#include <nlohmann/json.hpp>

#include "seal/base64url.h"
#include "seal/key_wrap.h"

namespace tenet::keybroker {
namespace {

using nlohmann::json;

Status http_failure(const char* step, const httplib::Result& res, size_t max_bytes) {
  if (!res) return failed_precondition("key broker {}: cannot reach the key broker ({})", step, httplib::to_string(res.error()));
  std::string detail;
  if (res->body.size() <= max_bytes) {
    json j = json::parse(res->body, nullptr, false);
    if (j.is_object() && j.contains("detail") && j["detail"].is_string()) detail = j["detail"].get<std::string>();
  }
  if (detail.size() > 512) detail.resize(512);
  const std::string msg = fmt::format("key broker {}: HTTP {}{}{}", step, res->status, detail.empty() ? "" : ": ", detail);
  if (res->status == 404) return Status(StatusCode::kNotFound, msg);
  return Status(StatusCode::kFailedPrecondition, msg);
}

Result<json> parse_reply(const char* step, const std::string& body, size_t max_bytes) {
  if (body.size() > max_bytes) return data_loss("key broker {}: reply of {} bytes exceeds {}", step, body.size(), max_bytes);
  json j = json::parse(body, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return data_loss("key broker {}: reply is not a JSON object", step);
  return j;
}

std::string session_cookie(const httplib::Result& res) {
  const size_t n = res->get_header_value_count("Set-Cookie");
  for (size_t i = 0; i < n; ++i) {
    const std::string v = res->get_header_value("Set-Cookie", i);
    const std::string prefix = std::string(kSessionCookie) + "=";
    if (v.rfind(prefix, 0) != 0) continue;
    const size_t end = v.find(';');
    return v.substr(0, end);  // "kbs-session-id=<hex>"
  }
  return "";
}

}  // namespace

Result<seal::SecretBytes> fetch_resource(const std::string& base_url, const std::string& resource_path,
                                         const std::string& tee_name, const EvidenceProvider& evidence_provider,
                                         const FetchOptions& options) {
  TENET_RETURN_IF_ERROR(validate_resource_path(resource_path));
  if (!evidence_provider) return invalid_argument("fetch_resource: no evidence provider");
  httplib::Client cli(base_url);
  if (!cli.is_valid()) return invalid_argument("key broker URL '{}' is not valid (expected http://HOST:PORT)", base_url);
  cli.set_connection_timeout(options.timeout);
  cli.set_read_timeout(options.timeout);
  cli.set_write_timeout(options.timeout);
  cli.set_follow_location(false);

  // 1. auth -> nonce
  json auth;
  auth["version"] = std::string(kProtocolVersion);
  auth["tee"] = tee_name;
  auth["extra-params"] = "";
  auto res = cli.Post(std::string(kAuthPath), auth.dump(), "application/json");
  if (!res || res->status != 200) return http_failure("auth", res, options.max_response_bytes);
  TENET_ASSIGN_OR_RETURN(json auth_reply, parse_reply("auth", res->body, options.max_response_bytes));
  const std::string cookie = session_cookie(res);
  if (cookie.empty()) return data_loss("key broker auth: reply sets no {} cookie", kSessionCookie);
  auto nonce_it = auth_reply.find("nonce");
  if (nonce_it == auth_reply.end() || !nonce_it->is_string() || nonce_it->get_ref<const std::string&>().empty() ||
      nonce_it->get_ref<const std::string&>().size() > 1024) {
    return data_loss("key broker auth: reply has no usable 'nonce'");
  }
  const std::string nonce = nonce_it->get<std::string>();

  // 2. ephemeral key, evidence over SHA-256(nonce || canonical JWK), attest
  TENET_ASSIGN_OR_RETURN(crypto::PrivateKey tee_key, crypto::PrivateKey::generate(crypto::Curve::kP384));
  TENET_ASSIGN_OR_RETURN(crypto::PublicKey tee_pub, tee_key.public_key());
  TENET_ASSIGN_OR_RETURN(std::string jwk, seal::canonical_jwk(tee_pub));
  TENET_ASSIGN_OR_RETURN(ReportData report_data, expected_report_data(nonce, tee_pub));
  auto evidence = evidence_provider(std::span<const uint8_t, kReportDataBytes>(report_data));
  if (!evidence.ok()) return evidence.status().with_context("key broker attest: producing evidence");
  json attest;
  attest["tee-pubkey"] = json::parse(jwk);
  attest["tee-evidence"] = seal::base64url_encode(*evidence);
  httplib::Headers headers = {{"Cookie", cookie}};
  res = cli.Post(std::string(kAttestPath), headers, attest.dump(), "application/json");
  if (!res || res->status != 200) return http_failure("attest", res, options.max_response_bytes);

  // 3. resource -> wrapped secret
  res = cli.Get(std::string(kResourcePrefix) + resource_path, headers);
  if (!res || res->status != 200) return http_failure("resource", res, options.max_response_bytes);
  if (res->body.size() > options.max_response_bytes) {
    return data_loss("key broker resource: reply of {} bytes exceeds {}", res->body.size(), options.max_response_bytes);
  }
  auto wrapped = seal::wrapped_secret_from_json(res->body);
  if (!wrapped.ok()) return data_loss("key broker resource: {}", wrapped.status().message());
  auto secret = seal::unwrap_secret(tee_key, *wrapped, resource_wrap_context(resource_path));
  if (!secret.ok()) return secret.status().with_context("key broker resource '" + resource_path + "'");
  return secret;
}

}  // namespace tenet::keybroker
