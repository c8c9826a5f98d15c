// The sim platform's commands (INSECURE: for development and tests, not a TEE) and `measure`:
//   tenet sim init --dir D            provision a sim platform (root CA, PCK, secret, dev signer)
//   tenet sim root-cert --dir D       print the sim root certificate (PEM) for policies
//   tenet measure --binary PATH --config ENCLAVE.json [--signer-key KEY.pem] [--sim-dir D]
//                                     print the enclave's MRENCLAVE (first line) and a policy
//                                     template, without running an enclave
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "attest/platform.h"
#include "attest/policy.h"
#include "cli/command.h"
#include "crypto/crypto.h"

namespace {

namespace attest = tenet::attest;
using tenet::cli::fail;

struct SimArgs {
  std::string dir;
};

int run_sim_init(const SimArgs& a) {
  tenet::Status s = attest::sim_provision(a.dir);
  if (!s.ok()) return fail(s);
  std::printf("provisioned sim platform (INSECURE: not a TEE; anyone with %s can forge its quotes)\n", a.dir.c_str());
  std::printf("root certificate: %s\n", attest::sim_root_cert_path(a.dir).c_str());
  std::printf("dev enclave signer key: %s\n", attest::sim_signer_key_path(a.dir).c_str());
  return 0;
}

int run_sim_root_cert(const SimArgs& a) {
  auto pem = tenet::crypto::read_file(attest::sim_root_cert_path(a.dir), 1 << 16);
  if (!pem.ok()) return fail(pem.status().with_context("sim root (run `tenet sim init --dir D` first)"));
  std::fputs(pem->c_str(), stdout);
  return 0;
}

const tenet::cli::CommandRegistration kSim([](CLI::App& app) {
  auto init_args = std::make_shared<SimArgs>();
  auto root_args = std::make_shared<SimArgs>();
  CLI::App* cmd = app.add_subcommand("sim", "The sim platform (INSECURE; development only): provision, print its root");
  cmd->require_subcommand(1);
  CLI::App* init = cmd->add_subcommand("init", "Create a sim platform: root CA, PCK chain, sealing secret, dev signer");
  init->add_option("--dir", init_args->dir, "Directory to create (private files are 0600)")->required();
  CLI::App* root = cmd->add_subcommand("root-cert", "Print the sim root certificate (PEM)");
  root->add_option("--dir", root_args->dir, "A directory made by `tenet sim init`")->required();
  return tenet::cli::Command{cmd, [init, init_args, root_args] {
                               return init->parsed() ? run_sim_init(*init_args) : run_sim_root_cert(*root_args);
                             }};
});

struct MeasureArgs {
  std::string binary;
  std::string config;
  std::string signer_key;
  std::string sim_dir;
};

int run_measure(const MeasureArgs& a) {
  auto config = tenet::crypto::read_file(a.config, 16 << 20);
  if (!config.ok()) return fail(config.status());
  auto mrenclave = attest::measure_enclave(a.binary, tenet::crypto::as_bytes(*config));
  if (!mrenclave.ok()) return fail(mrenclave.status());
  std::string mrsigner_hex;
  std::string signer_path = a.signer_key;
  if (signer_path.empty() && !a.sim_dir.empty()) signer_path = attest::sim_signer_key_path(a.sim_dir);
  if (!signer_path.empty()) {
    auto pem = tenet::crypto::read_file(signer_path, 1 << 16);
    if (!pem.ok()) return fail(pem.status());
    auto pub = tenet::crypto::PublicKey::from_pem(*pem);
    if (!pub.ok()) {
      auto priv = tenet::crypto::PrivateKey::from_pem(*pem);
      tenet::crypto::secure_wipe(*pem);
      if (!priv.ok()) return fail(tenet::invalid_argument("--signer-key '{}': not a PEM public or private key", signer_path));
      pub = priv->public_key();
      if (!pub.ok()) return fail(pub.status());
    }
    auto mrsigner = attest::mrsigner_of_key(*pub);
    if (!mrsigner.ok()) return fail(mrsigner.status());
    mrsigner_hex = tenet::crypto::to_hex(*mrsigner);
  }
  // Manifest attributes, for the template (the sim platform reads the same keys).
  uint16_t prod_id = 0, svn = 0;
  auto j = nlohmann::json::parse(*config, nullptr, false);
  if (j.is_object()) {
    auto u16 = [&j](const char* key, uint16_t& out) {
      if (j.contains(key) && j[key].is_number_unsigned() && j[key].get<uint64_t>() <= 65535) out = static_cast<uint16_t>(j[key].get<uint64_t>());
    };
    u16("isv_prod_id", prod_id);
    u16("isv_svn", svn);
  }
  // Absolute: policies resolve relative paths against the policy file's directory.
  const std::string root = a.sim_dir.empty() ? "ROOT-CA.pem"
                                             : std::filesystem::absolute(attest::sim_root_cert_path(a.sim_dir)).string();
  std::printf("%s\n", tenet::crypto::to_hex(*mrenclave).c_str());
  std::printf("%s\n", attest::policy_template(tenet::crypto::to_hex(*mrenclave), "", prod_id, svn, root, !a.sim_dir.empty()).c_str());
  if (!mrsigner_hex.empty()) {
    std::fprintf(stderr, "mrsigner: %s (for an MRSIGNER policy: \"mrsigner\", \"isv_prod_id\": %u, \"min_isv_svn\": %u)\n",
                 mrsigner_hex.c_str(), prod_id, svn);
  }
  return 0;
}

const tenet::cli::CommandRegistration kMeasure([](CLI::App& app) {
  auto args = std::make_shared<MeasureArgs>();
  CLI::App* cmd = app.add_subcommand("measure", "Compute an enclave's MRENCLAVE (sim platform) and print a policy template");
  cmd->add_option("--binary", args->binary, "The enclave binary (the tenet executable)")->required()->check(CLI::ExistingFile);
  cmd->add_option("--config", args->config, "The enclave's JSON manifest, byte for byte as the enclave gets it")
      ->required()
      ->check(CLI::ExistingFile);
  cmd->add_option("--signer-key", args->signer_key, "Enclave signer key (PEM, public or private) to print MRSIGNER");
  cmd->add_option("--sim-dir", args->sim_dir, "A sim platform directory: its root and dev signer go into the template");
  return tenet::cli::Command{cmd, [args] { return run_measure(*args); }};
});

}  // namespace
