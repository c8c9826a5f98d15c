// `tenet enclave`: one enclave process (trusted side). Started by `tenet serve`, not by hand;
// see src/enclave/runtime.h for what it does.
#include <memory>

#include "cli/command.h"
#include "enclave/runtime.h"

namespace {

struct EnclaveArgs {
  tenet::enclave::EnclaveOptions o;
  std::vector<std::string> packages;
};

int run(EnclaveArgs& a) {
  for (const auto& p : a.packages) {
    const size_t eq = p.find('=');
    if (eq == std::string::npos || eq == 0 || eq + 1 == p.size()) {
      return tenet::cli::fail(tenet::invalid_argument("--package expects NAME=PATH, got '{}'", p));
    }
    a.o.packages[p.substr(0, eq)] = p.substr(eq + 1);
  }
  return tenet::enclave::run_enclave(a.o);
}

const tenet::cli::CommandRegistration kEnclave([](CLI::App& app) {
  auto a = std::make_shared<EnclaveArgs>();
  CLI::App* cmd = app.add_subcommand(
      "enclave",
      "One enclave process (trusted side; started by `tenet serve`). Loads the manifest, obtains the RA-TLS identity, "
      "fetches model keys from the key broker, decrypts sealed packages in memory and serves KServe v2 with TLS "
      "terminating inside; each model in the manifest's mode (tee, or hybrid on --accelerator). Writes its control lines (JSON) to stdout. On --platform sim: INSECURE.");
  cmd->add_option("--manifest", a->o.manifest_path, "Enclave manifest (JSON, measured)")->required();
  cmd->add_option("--package", a->packages, "NAME=MODEL.tenet")->required();
  cmd->add_option("--keybroker", a->o.keybroker_url, "Key broker URL")->required();
  cmd->add_option("--platform", a->o.platform, "sim (INSECURE) | gramine | tsm")->check(CLI::IsMember({"sim", "gramine", "tsm"}));
  cmd->add_option("--sim-dir", a->o.sim_dir, "Sim platform provisioning directory");
  cmd->add_option("--identity-store", a->o.identity_store, "Sealed RA-TLS identity file (created if absent)");
  cmd->add_option("--http", a->o.http_address, "REST listen address (default 127.0.0.1:0)");
  cmd->add_option("--grpc", a->o.grpc_address, "gRPC listen address (default 127.0.0.1:0)");
  cmd->add_option("--threads", a->o.threads, "Compute threads (default: all cores)")->check(CLI::Range(0, 1024));
  cmd->add_option("--instance", a->o.instance, "Instance number (set by tenet serve)");
  cmd->add_option("--epc", a->o.epc_budget, "Emulated EPC budget of the sim host, e.g. 93MiB (default: no emulation)");
  cmd->add_option("--epc-host", a->o.epc_host, "Shared-memory name of the host's EPC budget (set by tenet serve)");
  cmd->add_option("--epc-limit", a->o.epc_limit, "This enclave's share of the EPC budget (set by tenet serve)");
  cmd->add_option("--memory", a->o.memory,
                  "resident (default: every weight in enclave memory, dynamic batching) or planned (needs --epc: batch 1, "
                  "weights streamed from sealed untrusted memory so the steady state fits this enclave's EPC share)")
      ->check(CLI::IsMember({"resident", "planned"}));
  cmd->add_option("--accelerator", a->o.accelerator,
                  "unix:PATH of the untrusted accelerator (tenet accelerator) for the manifest's hybrid models; required "
                  "when the manifest has one (set by tenet serve)");
  return tenet::cli::Command{cmd, [a] { return run(*a); }};
});

}  // namespace
