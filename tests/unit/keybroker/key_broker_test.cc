// Key broker: the protocol state machine directly (with a fake clock), and a real loopback HTTP
// broker with the real client. Evidence here comes from a test verifier: evidence =
// flags(1) || report_data(64) || HMAC-SHA256(test key, flags || report_data); flags bit 0 set
// means "debug enclave", which the test policy refuses.
#include <gtest/gtest.h>

#include <httplib.h>

#include <atomic>
#include <thread>
#include <nlohmann/json.hpp>

#include "keybroker/kbs_client.h"
#include "keybroker/key_broker.h"
#include "seal/base64url.h"
#include "seal/key_wrap.h"

namespace tenet::keybroker {
namespace {

using crypto::Bytes;
using nlohmann::json;

const Bytes kHmacKey(32, 0x42);

Bytes make_evidence(std::span<const uint8_t, kReportDataBytes> report_data, uint8_t flags = 0, const Bytes& key = kHmacKey) {
  Bytes e(1 + kReportDataBytes);
  e[0] = flags;
  std::copy(report_data.begin(), report_data.end(), e.begin() + 1);
  auto mac = crypto::hmac_sha256(key, e);
  e.insert(e.end(), mac->begin(), mac->end());
  return e;
}

Result<VerifiedEvidence> test_verifier(crypto::ByteSpan evidence) {
  if (evidence.size() != 1 + kReportDataBytes + 32) return invalid_argument("evidence: wrong size {}", evidence.size());
  TENET_ASSIGN_OR_RETURN(Bytes mac, crypto::hmac_sha256(kHmacKey, evidence.first(1 + kReportDataBytes)));
  if (!crypto::constant_time_equal(mac, evidence.last(32))) return failed_precondition("evidence signature: does not verify");
  if (evidence[0] & 1) return failed_precondition("policy: debug enclave not allowed");
  VerifiedEvidence v;
  std::copy(evidence.begin() + 1, evidence.begin() + 1 + kReportDataBytes, v.report_data.begin());
  v.identity = "test-tee (INSECURE test verifier)";
  return v;
}

struct FakeClock {
  std::chrono::steady_clock::time_point t = std::chrono::steady_clock::time_point{} + std::chrono::hours(1);
};

struct TeeKey {
  crypto::PrivateKey priv;
  crypto::PublicKey pub;
  std::string jwk;
  static TeeKey make() {
    TeeKey k;
    k.priv = std::move(crypto::PrivateKey::generate(crypto::Curve::kP384).value());
    k.pub = std::move(k.priv.public_key().value());
    k.jwk = seal::canonical_jwk(k.pub).value();
    return k;
  }
};

class KeyBrokerCoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    KeyBrokerOptions o;
    o.max_sessions = 4;
    o.clock = [this] { return clock_.t; };
    broker_ = std::make_shared<KeyBroker>(test_verifier, o);
    ASSERT_TRUE(broker_->add_resource("default/model/demo", seal::SecretBytes::copy_of(secret_)).ok());
  }
  // /auth; returns {cookie header, nonce}.
  std::pair<std::string, std::string> auth() {
    BrokerResponse r = broker_->handle_auth(R"({"version":"0.1.0","tee":"sim","extra-params":""})");
    EXPECT_EQ(r.status, 200) << r.body;
    const std::string cookie = r.set_cookie.substr(0, r.set_cookie.find(';'));
    return {cookie, json::parse(r.body)["nonce"].get<std::string>()};
  }
  static std::string attest_body(const std::string& jwk, const Bytes& evidence) {
    json j;
    j["tee-pubkey"] = json::parse(jwk);
    j["tee-evidence"] = seal::base64url_encode(evidence);
    return j.dump();
  }
  Bytes evidence_for(const std::string& nonce, const crypto::PublicKey& pub, uint8_t flags = 0) {
    auto rd = expected_report_data(nonce, pub);
    EXPECT_TRUE(rd.ok());
    return make_evidence(*rd, flags);
  }
  static void expect_error(const BrokerResponse& r, int status, const std::string& needle) {
    EXPECT_EQ(r.status, status) << r.body;
    json j = json::parse(r.body, nullptr, false);
    ASSERT_TRUE(j.is_object()) << r.body;
    EXPECT_NE(j.value("detail", "").find(needle), std::string::npos) << r.body << " (expected '" << needle << "')";
  }

  FakeClock clock_;
  Bytes secret_ = Bytes(32, 0x77);
  std::shared_ptr<KeyBroker> broker_;
};

TEST_F(KeyBrokerCoreTest, HappyPathReleasesWrappedKey) {
  auto [cookie, nonce] = auth();
  TeeKey k = TeeKey::make();
  BrokerResponse a = broker_->handle_attest(cookie, attest_body(k.jwk, evidence_for(nonce, k.pub)));
  ASSERT_EQ(a.status, 200) << a.body;
  BrokerResponse r = broker_->handle_resource(cookie, "default/model/demo");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.body.find(crypto::to_hex(secret_)), std::string::npos);
  auto w = seal::wrapped_secret_from_json(r.body);
  ASSERT_TRUE(w.ok()) << w.status().to_string();
  auto s = seal::unwrap_secret(k.priv, *w, resource_wrap_context("default/model/demo"));
  ASSERT_TRUE(s.ok()) << s.status().to_string();
  EXPECT_TRUE(crypto::constant_time_equal(s->view(), secret_));
}

TEST_F(KeyBrokerCoreTest, ReplayedNonceIsRefused) {
  auto [cookie, nonce] = auth();
  TeeKey k = TeeKey::make();
  const std::string body = attest_body(k.jwk, evidence_for(nonce, k.pub));
  ASSERT_EQ(broker_->handle_attest(cookie, body).status, 200);
  // The same attest again on the same session: the nonce is spent.
  expect_error(broker_->handle_attest(cookie, body), 401, "already used");
  // The old evidence replayed into a new session (new nonce): REPORTDATA does not match.
  auto [cookie2, nonce2] = auth();
  expect_error(broker_->handle_attest(cookie2, body), 403, "REPORTDATA");
  // And that failed attempt spent session 2's nonce too.
  expect_error(broker_->handle_attest(cookie2, attest_body(k.jwk, evidence_for(nonce2, k.pub))), 401, "already used");
}

TEST_F(KeyBrokerCoreTest, ExpiredNonceIsRefused) {
  auto [cookie, nonce] = auth();
  TeeKey k = TeeKey::make();
  clock_.t += std::chrono::seconds(61);
  expect_error(broker_->handle_attest(cookie, attest_body(k.jwk, evidence_for(nonce, k.pub))), 401, "expired");
}

TEST_F(KeyBrokerCoreTest, EvidenceOverAnotherPublicKeyIsRefused) {
  auto [cookie, nonce] = auth();
  TeeKey bound = TeeKey::make();
  TeeKey sent = TeeKey::make();
  expect_error(broker_->handle_attest(cookie, attest_body(sent.jwk, evidence_for(nonce, bound.pub))), 403, "REPORTDATA");
  expect_error(broker_->handle_resource(cookie, "default/model/demo"), 401, "not attested");
}

TEST_F(KeyBrokerCoreTest, VerifierRejectionIsRefused) {
  auto [cookie, nonce] = auth();
  TeeKey k = TeeKey::make();
  expect_error(broker_->handle_attest(cookie, attest_body(k.jwk, evidence_for(nonce, k.pub, /*flags=debug*/ 1))), 403,
               "debug enclave not allowed");
  auto [cookie2, nonce2] = auth();
  Bytes forged = evidence_for(nonce2, k.pub);
  forged.back() ^= 1;
  expect_error(broker_->handle_attest(cookie2, attest_body(k.jwk, forged)), 403, "signature");
  expect_error(broker_->handle_resource(cookie2, "default/model/demo"), 401, "not attested");
}

TEST_F(KeyBrokerCoreTest, ResourceBeforeAttestAndWithoutSessionIsRefused) {
  auto [cookie, nonce] = auth();
  expect_error(broker_->handle_resource(cookie, "default/model/demo"), 401, "not attested");
  expect_error(broker_->handle_resource("", "default/model/demo"), 401, "cookie");
  expect_error(broker_->handle_resource("kbs-session-id=" + std::string(64, 'a'), "default/model/demo"), 401, "unknown");
  expect_error(broker_->handle_resource("kbs-session-id=../../etc", "default/model/demo"), 401, "cookie");
  expect_error(broker_->handle_attest("", "{}"), 401, "cookie");
}

TEST_F(KeyBrokerCoreTest, UnknownResourceIs404AndBadPathIs400) {
  auto [cookie, nonce] = auth();
  TeeKey k = TeeKey::make();
  ASSERT_EQ(broker_->handle_attest(cookie, attest_body(k.jwk, evidence_for(nonce, k.pub))).status, 200);
  expect_error(broker_->handle_resource(cookie, "default/model/other"), 404, "does not exist");
  expect_error(broker_->handle_resource(cookie, "default/../demo"), 400, "segment");
  expect_error(broker_->handle_resource(cookie, "default/model"), 400, "segments");
  expect_error(broker_->handle_resource(cookie, "a/b/c/d"), 400, "segments");
}

TEST_F(KeyBrokerCoreTest, AttestedSessionExpires) {
  auto [cookie, nonce] = auth();
  TeeKey k = TeeKey::make();
  ASSERT_EQ(broker_->handle_attest(cookie, attest_body(k.jwk, evidence_for(nonce, k.pub))).status, 200);
  clock_.t += std::chrono::seconds(301);
  expect_error(broker_->handle_resource(cookie, "default/model/demo"), 401, "expired");
}

TEST_F(KeyBrokerCoreTest, MalformedRequestsAre400) {
  expect_error(broker_->handle_auth("{not json"), 400, "not a JSON object");
  expect_error(broker_->handle_auth("[]"), 400, "not a JSON object");
  expect_error(broker_->handle_auth(R"({"tee":"sim"})"), 400, "version");
  expect_error(broker_->handle_auth(R"({"version":"0.1.0","tee":7})"), 400, "tee");
  expect_error(broker_->handle_auth(R"({"version":"9.9.9","tee":"sim"})"), 400, "not supported");
  auto [cookie, nonce] = auth();
  TeeKey k = TeeKey::make();
  expect_error(broker_->handle_attest(cookie, "{"), 400, "not a JSON object");
  expect_error(broker_->handle_attest(cookie, R"({"tee-pubkey":"x","tee-evidence":"AA"})"), 400, "JWK");
  expect_error(broker_->handle_attest(cookie, R"({"tee-pubkey":{"kty":"EC"},"tee-evidence":"AA"})"), 400, "tee-pubkey");
  json j = json::parse(attest_body(k.jwk, Bytes{1, 2, 3}));
  j["tee-evidence"] = "@@@";
  expect_error(broker_->handle_attest(cookie, j.dump()), 400, "base64url");
  auto p256 = crypto::PrivateKey::generate(crypto::Curve::kP256);
  expect_error(broker_->handle_attest(cookie, attest_body(*seal::canonical_jwk(*p256->public_key()), Bytes{1})), 400, "P-384");
  // Malformed requests did not spend the nonce.
  EXPECT_EQ(broker_->handle_attest(cookie, attest_body(k.jwk, evidence_for(nonce, k.pub))).status, 200);
  expect_error(broker_->handle_auth(std::string(70 * 1024, ' ')), 413, "too large");
}

TEST_F(KeyBrokerCoreTest, SessionTableIsBounded) {
  for (int i = 0; i < 4; ++i) auth();
  EXPECT_EQ(broker_->session_count(), 4u);
  BrokerResponse r = broker_->handle_auth(R"({"version":"0.1.0","tee":"sim"})");
  expect_error(r, 503, "too many");
  EXPECT_EQ(broker_->session_count(), 4u);
  clock_.t += std::chrono::seconds(61);  // unattested sessions expire with their nonce
  auth();
  EXPECT_EQ(broker_->session_count(), 1u);
}

TEST_F(KeyBrokerCoreTest, ResourcesAreValidated) {
  EXPECT_FALSE(broker_->add_resource("default/model/demo", seal::SecretBytes::copy_of(secret_)).ok());  // duplicate
  EXPECT_FALSE(broker_->add_resource("bad path", seal::SecretBytes::copy_of(secret_)).ok());
  EXPECT_FALSE(broker_->add_resource("a/b/c", seal::SecretBytes()).ok());
}

TEST(KeyBrokerNoVerifierTest, RefusesEveryAttest) {
  KeyBroker broker(EvidenceVerifier(), KeyBrokerOptions{});
  BrokerResponse a = broker.handle_auth(R"({"version":"0.1.0","tee":"sim"})");
  ASSERT_EQ(a.status, 200);
  const std::string cookie = a.set_cookie.substr(0, a.set_cookie.find(';'));
  TeeKey k = TeeKey::make();
  json j;
  j["tee-pubkey"] = json::parse(k.jwk);
  j["tee-evidence"] = "AAAA";
  EXPECT_EQ(broker.handle_attest(cookie, j.dump()).status, 403);
}

// ---- loopback HTTP with the real client ----

class KeyBrokerHttpTest : public ::testing::Test {
 protected:
  void SetUp() override {
    KeyBrokerOptions o;
    o.max_sessions = 8;
    o.max_body_bytes = 16 * 1024;
    broker_ = std::make_shared<KeyBroker>(test_verifier, o);
    ASSERT_TRUE(broker_->add_resource("default/model/demo", seal::SecretBytes::copy_of(secret_)).ok());
    auto s = KeyBrokerServer::start(broker_, "127.0.0.1", 0);
    ASSERT_TRUE(s.ok()) << s.status().to_string();
    server_ = std::move(s).value();
    url_ = "http://127.0.0.1:" + std::to_string(server_->port());
  }
  void TearDown() override {
    if (server_) server_->stop();
  }
  EvidenceProvider provider(uint8_t flags = 0) {
    return [flags](std::span<const uint8_t, kReportDataBytes> rd) -> Result<Bytes> { return make_evidence(rd, flags); };
  }

  Bytes secret_ = Bytes(32, 0x9c);
  std::shared_ptr<KeyBroker> broker_;
  std::unique_ptr<KeyBrokerServer> server_;
  std::string url_;
};

TEST_F(KeyBrokerHttpTest, ClientFetchesKeyOverLoopback) {
  auto key = fetch_resource(url_, "default/model/demo", "sim", provider());
  ASSERT_TRUE(key.ok()) << key.status().to_string();
  EXPECT_TRUE(crypto::constant_time_equal(key->view(), secret_));
  // Twice: independent sessions.
  auto again = fetch_resource(url_, "default/model/demo", "sim", provider());
  ASSERT_TRUE(again.ok()) << again.status().to_string();
}

TEST_F(KeyBrokerHttpTest, ClientReportsRefusalsByStep) {
  auto debug = fetch_resource(url_, "default/model/demo", "sim", provider(1));
  ASSERT_FALSE(debug.ok());
  EXPECT_EQ(debug.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(debug.status().message().find("attest: HTTP 403"), std::string::npos) << debug.status().message();
  EXPECT_NE(debug.status().message().find("debug enclave"), std::string::npos) << debug.status().message();

  auto unknown = fetch_resource(url_, "default/model/nope", "sim", provider());
  ASSERT_FALSE(unknown.ok());
  EXPECT_EQ(unknown.status().code(), StatusCode::kNotFound) << unknown.status().to_string();

  auto no_evidence = fetch_resource(url_, "default/model/demo", "sim",
                                    [](std::span<const uint8_t, kReportDataBytes>) -> Result<Bytes> {
                                      return unimplemented("platform has no quote");
                                    });
  ASSERT_FALSE(no_evidence.ok());
  EXPECT_NE(no_evidence.status().message().find("platform has no quote"), std::string::npos);

  // Evidence from another platform key (HMAC key) fails the verifier.
  auto foreign = fetch_resource(url_, "default/model/demo", "sim",
                                [](std::span<const uint8_t, kReportDataBytes> rd) -> Result<Bytes> {
                                  return make_evidence(rd, 0, Bytes(32, 0x01));
                                });
  ASSERT_FALSE(foreign.ok());
  EXPECT_NE(foreign.status().message().find("HTTP 403"), std::string::npos) << foreign.status().message();

  auto unreachable = fetch_resource("http://127.0.0.1:1", "default/model/demo", "sim", provider());
  ASSERT_FALSE(unreachable.ok());
  EXPECT_NE(unreachable.status().message().find("cannot reach"), std::string::npos) << unreachable.status().message();
}

TEST_F(KeyBrokerHttpTest, HttpErrorsHaveStatusAndJsonBody) {
  httplib::Client cli(url_);
  auto big = cli.Post("/kbs/v0/auth", std::string(20 * 1024, '{'), "application/json");
  ASSERT_TRUE(big);
  EXPECT_EQ(big->status, 413);
  auto bad = cli.Post("/kbs/v0/auth", "{oops", "application/json");
  ASSERT_TRUE(bad);
  EXPECT_EQ(bad->status, 400);
  EXPECT_TRUE(json::parse(bad->body, nullptr, false).is_object()) << bad->body;
  auto unauth = cli.Get("/kbs/v0/resource/default/model/demo");
  ASSERT_TRUE(unauth);
  EXPECT_EQ(unauth->status, 401);
  auto other = cli.Get("/kbs/v0/nothing");
  ASSERT_TRUE(other);
  EXPECT_EQ(other->status, 404);
  auto ok = cli.Post("/kbs/v0/auth", R"({"version":"0.1.0","tee":"sim"})", "application/json");
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->status, 200);
  EXPECT_NE(ok->get_header_value("Set-Cookie").find("kbs-session-id="), std::string::npos);
}

TEST_F(KeyBrokerHttpTest, ConcurrentClientsAndAuthFloodStayBounded) {
  std::vector<std::thread> threads;
  std::atomic<int> ok{0};
  for (int i = 0; i < 6; ++i) {
    threads.emplace_back([&] {
      auto key = fetch_resource(url_, "default/model/demo", "sim", provider());
      if (key.ok() && crypto::constant_time_equal(key->view(), secret_)) ++ok;
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(ok.load(), 6);
  // A flood of /auth fills the table (cap 8) and is then refused with 503; memory stays bounded.
  httplib::Client cli(url_);
  int refused = 0;
  for (int i = 0; i < 40; ++i) {
    auto r = cli.Post("/kbs/v0/auth", R"({"version":"0.1.0","tee":"sim"})", "application/json");
    ASSERT_TRUE(r);
    if (r->status == 503) ++refused;
  }
  EXPECT_LE(broker_->session_count(), 8u);
  EXPECT_GE(refused, 32);
}

TEST_F(KeyBrokerHttpTest, StopIsPromptAndIdempotent) {
  server_->stop();
  server_->stop();
  auto r = fetch_resource(url_, "default/model/demo", "sim", provider(), FetchOptions{std::chrono::seconds(2)});
  EXPECT_FALSE(r.ok());
}

}  // namespace
}  // namespace tenet::keybroker
