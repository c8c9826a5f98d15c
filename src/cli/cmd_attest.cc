// tenet attest HOST:PORT --policy P.json [--save-cert server.pem] [--json] [--timeout-ms N]
//
// Connects with TLS, verifies the server's RA-TLS certificate against the policy (attest/ratls.h),
// prints what was verified, and saves the certificate so that ordinary TLS clients can pin it:
//   curl --cacert server.pem https://localhost:PORT/v2/health/ready
//   tritonclient.http.InferenceServerClient("localhost:PORT", ssl=True,
//                                           ssl_context_factory=... cafile="server.pem")
// Exit 0 when verified; 1 with the failing stage on stderr otherwise (2 for bad arguments).
#include <sys/socket.h>
#include <sys/time.h>

#include <cstdio>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "attest/policy.h"
#include "attest/ratls.h"
#include "cli/command.h"
#include "crypto/crypto.h"

namespace {

using tenet::Result;
using tenet::Status;
namespace attest = tenet::attest;

struct AttestArgs {
  std::string server;
  std::string policy;
  std::string save_cert;
  bool json = false;
  int timeout_ms = 10000;
};

bool looks_like_ip(const std::string& host) {
  return host.find_first_not_of("0123456789.") == std::string::npos || host.find(':') != std::string::npos;
}

// Returns the verified peer, or the failure (with its stage when verification ran).
Result<attest::VerifiedPeer> attest_server(const AttestArgs& a, std::shared_ptr<const attest::Policy> policy) {
  const size_t colon = a.server.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == a.server.size()) {
    return tenet::invalid_argument("server '{}': expected HOST:PORT", a.server);
  }
  std::string host = a.server.substr(0, colon);
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);

  std::unique_ptr<SSL_CTX, decltype(&SSL_CTX_free)> ctx(SSL_CTX_new(TLS_client_method()), SSL_CTX_free);
  if (!ctx) return tenet::internal_error("SSL_CTX_new: {}", tenet::crypto::openssl_errors());
  SSL_CTX_set_min_proto_version(ctx.get(), TLS1_2_VERSION);
  attest::install_ratls_verifier(ctx.get(), policy);

  BIO* bio = BIO_new_connect(a.server.c_str());
  if (bio == nullptr) return tenet::internal_error("BIO_new_connect: {}", tenet::crypto::openssl_errors());
  if (BIO_do_connect(bio) <= 0) {
    BIO_free_all(bio);
    return tenet::not_found("cannot connect to {}: {}", a.server, tenet::crypto::openssl_errors());
  }
  int fd = -1;
  BIO_get_fd(bio, &fd);
  if (fd >= 0) {
    timeval tv{a.timeout_ms / 1000, (a.timeout_ms % 1000) * 1000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  }
  std::unique_ptr<SSL, decltype(&SSL_free)> ssl(SSL_new(ctx.get()), SSL_free);
  SSL_set_bio(ssl.get(), bio, bio);  // ssl owns bio
  if (!looks_like_ip(host)) SSL_set_tlsext_host_name(ssl.get(), host.c_str());
  const int rc = SSL_connect(ssl.get());
  Result<attest::VerifiedPeer> peer = attest::ratls_peer(ssl.get());
  if (rc != 1) {
    const std::string tls_error = tenet::crypto::openssl_errors();
    if (!peer.ok() && attest::failed_stage(peer.status())) return peer.status();  // verification failed
    return tenet::Status(tenet::StatusCode::kFailedPrecondition,
                         fmt::format("TLS handshake with {} failed before attestation: {}", a.server,
                                     tls_error.empty() ? "connection closed" : tls_error));
  }
  SSL_shutdown(ssl.get());
  return peer;
}

int run_attest(const AttestArgs& a) {
  auto policy = attest::load_policy(a.policy);
  if (!policy.ok()) return tenet::cli::fail(policy.status());
  auto shared = std::make_shared<const attest::Policy>(std::move(policy).value());
  auto peer = attest_server(a, shared);
  if (!peer.ok()) {
    if (a.json) {
      nlohmann::json j;
      j["verified"] = false;
      const auto stage = attest::failed_stage(peer.status());
      j["stage"] = stage ? attest::verify_stage_name(*stage) : "connection";
      j["error"] = peer.status().message();
      std::printf("%s\n", j.dump().c_str());
    }
    return tenet::cli::fail(peer.status());
  }
  if (!a.save_cert.empty()) {
    Status s = tenet::crypto::write_file(a.save_cert, peer->cert_pem, 0644);
    if (!s.ok()) return tenet::cli::fail(s);
  }
  const attest::EnclaveIdentity& id = peer->identity;
  if (a.json) {
    nlohmann::json j;
    j["verified"] = true;
    j["server"] = a.server;
    j["platform"] = peer->platform;
    j["insecure"] = peer->insecure;
    j[id.tdx ? "mrtd" : "mrenclave"] = tenet::crypto::to_hex(id.mrenclave);
    if (!id.tdx) {
      j["mrsigner"] = tenet::crypto::to_hex(id.mrsigner);
      j["isv_prod_id"] = id.isv_prod_id;
      j["isv_svn"] = id.isv_svn;
    }
    j["debug"] = id.debug;
    j["mode"] = peer->claims.mode;
    j["model_digests"] = nlohmann::json::array();
    for (const auto& d : peer->claims.model_digests) j["model_digests"].push_back(tenet::crypto::to_hex(d));
    if (!a.save_cert.empty()) j["saved_cert"] = a.save_cert;
    std::printf("%s\n", j.dump().c_str());
  } else {
    std::printf("verified %s against %s\n%s", a.server.c_str(), a.policy.c_str(), attest::describe_peer(*peer).c_str());
    if (peer->insecure) {
      std::printf("WARNING: INSECURE sim platform: this proves which code and model would answer, not that the host cannot read them\n");
    }
    if (!a.save_cert.empty()) {
      std::printf("pinned certificate saved to %s (use: curl --cacert %s https://localhost:PORT/...)\n", a.save_cert.c_str(),
                  a.save_cert.c_str());
    }
  }
  return 0;
}

const tenet::cli::CommandRegistration kAttest([](CLI::App& app) {
  auto args = std::make_shared<AttestArgs>();
  CLI::App* cmd = app.add_subcommand("attest", "Verify a server's RA-TLS certificate against a policy and pin it");
  cmd->add_option("server", args->server, "HOST:PORT of the enclave's TLS endpoint")->required();
  cmd->add_option("--policy", args->policy, "Attestation policy (JSON)")->required()->check(CLI::ExistingFile);
  cmd->add_option("--save-cert", args->save_cert, "Write the verified certificate (PEM) here, for curl --cacert etc.");
  cmd->add_flag("--json", args->json, "Print one JSON object instead of text");
  cmd->add_option("--timeout-ms", args->timeout_ms, "Socket read/write timeout (default 10000)")->check(CLI::Range(1, 600000));
  return tenet::cli::Command{cmd, [args] { return run_attest(*args); }};
});

}  // namespace
