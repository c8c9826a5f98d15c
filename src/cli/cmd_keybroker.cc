// tenet keybroker --listen HOST:PORT --key REPO/TYPE/TAG=KEYFILE [...] --policy POLICY.json
//
// The model owner's key broker (keybroker/key_broker.h): releases model keys to enclaves whose
// evidence satisfies the owner's attestation policy. Prints one JSON line when listening
// ({"event":"listening","host":...,"port":...}), logs protocol events to stderr, and exits
// cleanly on SIGINT / SIGTERM, wiping the keys it holds.
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "attest/policy.h"
#include "core/address.h"
#include "attest/ratls.h"
#include "cli/command.h"
#include "keybroker/key_broker.h"
#include "seal/package.h"

namespace {

using tenet::Result;
using tenet::keybroker::EvidenceVerifier;

// The owner's policy decides which enclaves get keys: the quote in the KBS evidence must pass
// attest::verify_quote (signature, platform chain to a trusted root, measurement, debug); the
// broker then checks its REPORTDATA binds the session nonce and the enclave's ephemeral key.
Result<EvidenceVerifier> make_policy_verifier(const std::string& policy_path) {
  TENET_ASSIGN_OR_RETURN(tenet::attest::Policy loaded, tenet::attest::load_policy(policy_path));
  auto policy = std::make_shared<const tenet::attest::Policy>(std::move(loaded));
  return EvidenceVerifier([policy](tenet::crypto::ByteSpan evidence) -> Result<tenet::keybroker::VerifiedEvidence> {
    TENET_ASSIGN_OR_RETURN(tenet::attest::VerifiedQuote q, tenet::attest::verify_quote(evidence, *policy));
    tenet::keybroker::VerifiedEvidence v;
    std::copy(q.report_data.begin(), q.report_data.end(), v.report_data.begin());
    v.identity = q.platform + " mrenclave " + tenet::crypto::to_hex(q.identity.mrenclave);
    return v;
  });
}

struct KeyBrokerArgs {
  std::string listen = "127.0.0.1:8470";
  std::vector<std::string> keys;
  std::string policy;
  size_t max_sessions = 1024;
  int nonce_ttl_s = 60;
  int session_ttl_s = 300;
};


Result<std::pair<std::string, int>> parse_listen(const std::string& s) {
  auto hp = tenet::parse_host_port(s);
  if (!hp.ok() || hp->host.empty()) return tenet::invalid_argument("--listen expects HOST:PORT, got '{}'", s);
  return std::make_pair(hp->host, static_cast<int>(hp->port));
}

int run_keybroker(const KeyBrokerArgs& a) {
  tenet::cli::block_stop_signals();  // before any thread starts
  using tenet::cli::fail;
  auto listen = parse_listen(a.listen);
  if (!listen.ok()) return fail(listen.status());
  if (a.keys.empty()) return fail(tenet::invalid_argument("give at least one --key REPO/TYPE/TAG=KEYFILE"));
  auto verifier = make_policy_verifier(a.policy);
  if (!verifier.ok()) return fail(verifier.status());

  tenet::keybroker::KeyBrokerOptions options;
  options.max_sessions = a.max_sessions;
  options.nonce_ttl = std::chrono::seconds(a.nonce_ttl_s);
  options.session_ttl = std::chrono::seconds(a.session_ttl_s);
  options.log = [](const std::string& line) { std::fprintf(stderr, "tenet keybroker: %s\n", line.c_str()); };
  auto broker = std::make_shared<tenet::keybroker::KeyBroker>(std::move(verifier).value(), options);
  nlohmann::json resources = nlohmann::json::array();
  for (const std::string& spec : a.keys) {
    const size_t eq = spec.find('=');
    if (eq == std::string::npos || eq == 0 || eq + 1 == spec.size()) {
      return fail(tenet::invalid_argument("--key expects REPO/TYPE/TAG=KEYFILE, got '{}'", spec));
    }
    const std::string path = spec.substr(0, eq);
    auto key = tenet::seal::read_model_key_file(spec.substr(eq + 1));
    if (!key.ok()) return fail(key.status());
    tenet::Status s = broker->add_resource(path, std::move(key).value());
    if (!s.ok()) return fail(s);
    resources.push_back(path);
  }

  auto server = tenet::keybroker::KeyBrokerServer::start(broker, listen->first, listen->second);
  if (!server.ok()) return fail(server.status());
  nlohmann::json ready;
  ready["event"] = "listening";
  ready["host"] = listen->first;
  ready["port"] = (*server)->port();
  ready["resources"] = resources;
  return tenet::cli::announce_and_serve(ready.dump(), [&] { (*server)->stop(); });  // broker (and its keys, wiped) destroyed on return
}

const tenet::cli::CommandRegistration kKeyBroker([](CLI::App& app) {
  auto args = std::make_shared<KeyBrokerArgs>();
  CLI::App* cmd = app.add_subcommand(
      "keybroker",
      "Run the model owner's key broker (KBS-shaped: /kbs/v0/auth, /attest, /resource). Releases a model\n"
      "key, wrapped to the enclave's ephemeral key, only to enclaves whose evidence satisfies --policy.");
  cmd->add_option("--listen", args->listen, "HOST:PORT to listen on (port 0: any free port)")->capture_default_str();
  cmd->add_option("--key", args->keys, "REPO/TYPE/TAG=KEYFILE, e.g. default/model/resnet50=resnet50.key")->required();
  cmd->add_option("--policy", args->policy, "attestation policy (JSON) evidence must satisfy")
      ->required()
      ->check(CLI::ExistingFile);
  cmd->add_option("--max-sessions", args->max_sessions, "bound on concurrent sessions")->capture_default_str()->check(CLI::Range(1, 1000000));
  cmd->add_option("--nonce-ttl-s", args->nonce_ttl_s, "seconds a nonce stays valid")->capture_default_str()->check(CLI::Range(1, 3600));
  cmd->add_option("--session-ttl-s", args->session_ttl_s, "seconds an attested session may fetch keys")
      ->capture_default_str()
      ->check(CLI::Range(1, 86400));
  return tenet::cli::Command{cmd, [args] { return run_keybroker(*args); }};
});

}  // namespace
