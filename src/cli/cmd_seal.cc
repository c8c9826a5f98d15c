// tenet seal MODEL.onnx -o MODEL.tenet [--key-out MODEL.key | --key KEYFILE] [--name NAME] [--version V]
//
// The model owner's side: encrypts an ONNX model into a sealed package (seal/package.h) and prints
// the package digest (line 1: hex) and a JSON line with the digest, chunk count and sizes.
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "cli/command.h"
#include "seal/package.h"

namespace {

struct SealArgs {
  std::string model;
  std::string out;
  std::string key_in;
  std::string key_out;
  std::string name;
  std::string version;
};

int run_seal(const SealArgs& a) {
  using tenet::cli::fail;
  if (a.key_in.empty() == a.key_out.empty()) {
    return fail(tenet::invalid_argument(
        "give exactly one of --key KEYFILE (seal under an existing model key) or --key-out FILE (generate a new key)"));
  }
  if (!a.key_out.empty() && std::filesystem::exists(a.key_out)) {
    return fail(tenet::invalid_argument("--key-out '{}' exists; refusing to overwrite a model key", a.key_out));
  }
  tenet::Result<tenet::seal::SecretBytes> key =
      a.key_in.empty() ? tenet::seal::generate_model_key() : tenet::seal::read_model_key_file(a.key_in);
  if (!key.ok()) return fail(key.status());
  tenet::seal::SealOptions options;
  options.model_name = a.name.empty() ? std::filesystem::path(a.model).stem().string() : a.name;
  options.version = a.version;
  auto info = tenet::seal::seal_model_file(a.model, a.out, key->view(), options);
  if (!info.ok()) return fail(info.status());
  if (!a.key_out.empty()) {
    tenet::Status s = tenet::seal::write_model_key_file(a.key_out, *key);
    if (!s.ok()) {
      std::filesystem::remove(a.out);  // a package whose key is lost is useless
      return fail(s.with_context("writing the model key"));
    }
  }
  nlohmann::json j;
  j["package"] = a.out;
  j["package_digest"] = info->digest_hex();
  j["package_id"] = tenet::crypto::to_hex(info->package_id);
  j["model_name"] = info->model_name;
  j["version"] = info->version;
  j["chunk_count"] = info->chunks.size();
  j["file_size_bytes"] = info->file_size;
  j["graph_plaintext_bytes"] = info->chunks[0].plaintext_size;
  j["weight_plaintext_bytes"] = info->weight_plaintext_bytes();
  nlohmann::json sizes = nlohmann::json::array();
  for (const auto& c : info->chunks) sizes.push_back(c.size);
  j["chunk_sizes_bytes"] = sizes;
  if (!a.key_out.empty()) j["key_file"] = a.key_out;
  std::printf("%s\n%s\n", info->digest_hex().c_str(), j.dump().c_str());
  return 0;
}

const tenet::cli::CommandRegistration kSeal([](CLI::App& app) {
  auto args = std::make_shared<SealArgs>();
  CLI::App* cmd = app.add_subcommand(
      "seal",
      "Encrypt an ONNX model into a sealed package for untrusted disk (model owner's side).\n"
      "Encrypted (AES-256-GCM under the model key): every weight, grouped per layer, and the graph\n"
      "itself (operators, attributes, names). Visible in plaintext: the model name and version, the\n"
      "number of chunks and each chunk's size (so per-layer weight sizes). Every chunk is bound to\n"
      "its position and the package; the printed package digest (SHA-256 of header and manifest,\n"
      "which lists every chunk's hash) is what attestation policies pin. The model key is released\n"
      "only by `tenet keybroker` to attested enclaves: keep the key file secret (written 0600).");
  cmd->add_option("model", args->model, "ONNX model to seal")->required()->check(CLI::ExistingFile);
  cmd->add_option("-o,--output", args->out, "sealed package to write (MODEL.tenet)")->required();
  cmd->add_option("--key", args->key_in, "existing model key file (64 hex characters)")->check(CLI::ExistingFile);
  cmd->add_option("--key-out", args->key_out, "generate a fresh model key and write it here (mode 0600)");
  cmd->add_option("--name", args->name, "model name stored in plaintext in the manifest (default: file stem)");
  cmd->add_option("--version", args->version, "model version stored in plaintext in the manifest");
  return tenet::cli::Command{cmd, [args] { return run_seal(*args); }};
});

}  // namespace
