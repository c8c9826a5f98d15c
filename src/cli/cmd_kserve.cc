// `tenet kserve`: serves ONNX models over KServe v2 (REST + gRPC) in this process, with no
// enclave and no attestation; for development and benchmarks. `tenet serve` is the real thing.
#include <csignal>
#include <cstdio>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cli/command.h"
#include "serving/server.h"

namespace {

struct KserveArgs {
  std::vector<std::string> models;
  std::string http = "127.0.0.1:8000";
  std::string grpc = "127.0.0.1:8001";
  std::string tls_cert, tls_key;
  int max_batch = 8;
  uint64_t batch_delay_us = 0;
  size_t max_queue = 64;
  int threads = 0;
  int http_threads = 32;
  int grpc_threads = 16;
  size_t max_body_bytes = size_t{64} << 20;
  int read_timeout_ms = 5000;
  int request_deadline_ms = 30000;
  size_t pad_bytes = 4096;
};

tenet::Result<std::string> read_text(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return tenet::not_found("cannot read '{}'", path);
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

int run_kserve(const KserveArgs& a) {
  using tenet::cli::fail;
  tenet::cli::block_stop_signals();  // before any thread starts

  auto repo = std::make_shared<tenet::serving::ModelRepository>();
  tenet::serving::EngineModelOptions mo;
  mo.max_batch_size = a.max_batch;
  mo.max_queue_delay_us = a.batch_delay_us;
  mo.max_queue_requests = a.max_queue;
  mo.threads = a.threads;
  for (const std::string& spec : a.models) {
    const size_t eq = spec.find('=');
    if (eq == std::string::npos || eq == 0 || eq + 1 == spec.size()) {
      return fail(tenet::invalid_argument("--model expects NAME=PATH.onnx, got '{}'", spec));
    }
    auto model = tenet::serving::load_engine_model_file(spec.substr(0, eq), spec.substr(eq + 1), mo);
    if (!model.ok()) return fail(model.status());
    tenet::Status s = repo->add(*model);
    if (!s.ok()) return fail(s);
  }
  tenet::serving::ServerOptions so;
  so.http_address = a.http;
  so.grpc_address = a.grpc;
  if (a.tls_cert.empty() != a.tls_key.empty()) return fail(tenet::invalid_argument("--tls-cert and --tls-key go together"));
  if (!a.tls_cert.empty()) {
    auto cert = read_text(a.tls_cert);
    if (!cert.ok()) return fail(cert.status());
    auto key = read_text(a.tls_key);
    if (!key.ok()) return fail(key.status());
    so.tls_cert_pem = std::move(cert).value();
    so.tls_key_pem = std::move(key).value();
  }
  so.max_body_bytes = a.max_body_bytes;
  so.http_threads = a.http_threads;
  so.grpc_threads = a.grpc_threads;
  so.read_timeout_ms = a.read_timeout_ms;
  so.request_deadline_ms = a.request_deadline_ms;
  so.response_pad_bytes = a.pad_bytes;
  auto server = tenet::serving::Server::start(repo, so);
  if (!server.ok()) return fail(server.status());

  nlohmann::json ready = {{"http_port", (*server)->http_port()},
                          {"grpc_port", (*server)->grpc_port()},
                          {"tls", (*server)->tls()},
                          {"enclave", false},
                          {"models", nlohmann::json::array()}};
  for (const auto& m : repo->models()) ready["models"].push_back(m->name());
  std::printf("%s\n", ready.dump().c_str());
  std::fflush(stdout);

  const int sig = tenet::cli::wait_for_stop_signal();
  std::fprintf(stderr, "tenet kserve: signal %d, stopping\n", sig);
  (*server)->stop();
  return 0;
}

const tenet::cli::CommandRegistration kKserve([](CLI::App& app) {
  auto a = std::make_shared<KserveArgs>();
  CLI::App* cmd = app.add_subcommand(
      "kserve",
      "Serve ONNX models over KServe v2 REST and gRPC in this process (no enclave, no attestation; for development and "
      "benchmarks). Prints {\"http_port\":..,\"grpc_port\":..} on stdout when ready; stops on SIGINT/SIGTERM.");
  cmd->add_option("--model", a->models, "NAME=PATH.onnx (repeatable)")->required();
  cmd->add_option("--http", a->http, "REST listen address HOST:PORT (port 0 picks one; empty disables)");
  cmd->add_option("--grpc", a->grpc, "gRPC listen address HOST:PORT (port 0 picks one; empty disables)");
  cmd->add_option("--tls-cert", a->tls_cert, "PEM certificate; without --tls-cert/--tls-key the server is plaintext (INSECURE)");
  cmd->add_option("--tls-key", a->tls_key, "PEM private key");
  cmd->add_option("--max-batch", a->max_batch, "Dynamic batching: max rows per engine run (0 disables)")->check(CLI::Range(0, 1024));
  cmd->add_option("--batch-delay-us", a->batch_delay_us, "Dynamic batching: max wait for a batch to fill, microseconds");
  cmd->add_option("--max-queue", a->max_queue, "Requests queued per model before 503 / UNAVAILABLE")->check(CLI::Range(1, 1000000));
  cmd->add_option("--threads", a->threads, "Engine threads per run (default: all cores)")->check(CLI::Range(0, 1024));
  cmd->add_option("--http-threads", a->http_threads, "REST connection threads")->check(CLI::Range(2, 4096));
  cmd->add_option("--grpc-threads", a->grpc_threads, "gRPC threads")->check(CLI::Range(4, 4096));
  cmd->add_option("--max-body-bytes", a->max_body_bytes, "Largest request body / message");
  cmd->add_option("--read-timeout-ms", a->read_timeout_ms, "REST: drop a connection idle this long mid-request")->check(CLI::Range(1, 3600000));
  cmd->add_option("--request-deadline-ms", a->request_deadline_ms, "REST: the whole body must arrive within this")->check(CLI::Range(1, 3600000));
  cmd->add_option("--pad-bytes", a->pad_bytes, "Pad JSON responses to a multiple of this many bytes (0: off)");
  return tenet::cli::Command{cmd, [a] { return run_kserve(*a); }};
});

}  // namespace
