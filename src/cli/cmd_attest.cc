// tenet attest HOST:PORT --policy P.json [--save-cert server.pem] [--json] [--timeout-ms N]
//
// Connects with TLS, verifies the server's RA-TLS certificate against the policy (attest/ratls.h),
// prints what was verified, and saves the certificate so that ordinary TLS clients can pin it:
//   curl --cacert server.pem https://localhost:PORT/v2/health/ready
//   tritonclient.http.InferenceServerClient("localhost:PORT", ssl=True,
//                                           ssl_context_factory=... cafile="server.pem")
// Exit 0 when verified; 1 with the failing stage on stderr otherwise (2 for bad arguments).

#include <cstdio>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>
#include <openssl/ssl.h>

#include "attest/policy.h"
#include "attest/ratls.h"
#include "attest/ratls_client.h"
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

Result<attest::VerifiedPeer> attest_server(const AttestArgs& a, std::shared_ptr<const attest::Policy> policy) {
  TENET_ASSIGN_OR_RETURN(attest::RatlsConnection c, attest::connect_ratls(a.server, std::move(policy), a.timeout_ms));
  SSL_shutdown(c.ssl.get());
  return std::move(c.peer);
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
    j["model_modes"] = peer->claims.model_modes;  // per digest: "tee" or "hybrid:<verify bits>"
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
