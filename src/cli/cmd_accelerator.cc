// tenet accelerator --listen unix:PATH [--backend cpu|cuda] [--threads N] [--device N]
//
// The untrusted accelerator process of hybrid mode (accel/server.h): serves exact W·x mod p for
// linear layers to enclaves over a Unix socket. It only ever sees blinded data and public weights;
// enclaves verify what it returns. Prints one JSON line when listening
// ({"event":"listening","address":...,"backend":...}), logs protocol events to stderr, and exits
// cleanly on SIGINT / SIGTERM (finishing runs in progress, removing the socket).
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <memory>
#include <string>
#include <thread>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "accel/accelerator.h"
#include "accel/server.h"
#include "cli/command.h"

namespace {

struct AcceleratorArgs {
  std::string listen;
  std::string backend = "cpu";
  int threads = 0;
  int device = 0;
  size_t max_connections = 64;
};


int run_accelerator(const AcceleratorArgs& a) {
  using tenet::cli::fail;
  tenet::cli::block_stop_signals();  // before any thread (the backend's included) starts
  tenet::Result<std::unique_ptr<tenet::accel::Accelerator>> backend =
      a.backend == "cuda" ? tenet::accel::make_cuda_accelerator(a.device) : tenet::accel::make_cpu_accelerator(a.threads);
  if (!backend.ok()) return fail(backend.status().with_context("starting the " + a.backend + " backend"));
  std::shared_ptr<tenet::accel::Accelerator> shared(std::move(backend).value());

  tenet::accel::AcceleratorServerOptions options;
  options.max_connections = a.max_connections;
  options.log = [](const std::string& line) { std::fprintf(stderr, "tenet accelerator: %s\n", line.c_str()); };
  auto server = tenet::accel::AcceleratorServer::start(shared, a.listen, options);
  if (!server.ok()) return fail(server.status());
  nlohmann::json ready;
  ready["event"] = "listening";
  ready["address"] = a.listen;
  ready["backend"] = shared->name();
  return tenet::cli::announce_and_serve(ready.dump(), [&] { (*server)->stop(); });
}

const tenet::cli::CommandRegistration kAccelerator([](CLI::App& app) {
  auto args = std::make_shared<AcceleratorArgs>();
  CLI::App* cmd = app.add_subcommand(
      "accelerator",
      "Run the untrusted accelerator of hybrid mode: exact W·x mod 2^31-1 for the linear layers enclaves\n"
      "outsource (blinded inputs, public int8 weights; every result is verified by the enclave).\n"
      "Serves length-prefixed binary frames on a Unix stream socket.");
  cmd->add_option("--listen", args->listen, "unix:PATH of the socket to create")->required();
  cmd->add_option("--backend", args->backend, "cpu (oneDNN int8 GEMMs) or cuda (one GPU)")
      ->capture_default_str()
      ->check(CLI::IsMember({"cpu", "cuda"}));
  cmd->add_option("--threads", args->threads, "CPU threads per run for --backend cpu (0: all cores)")
      ->capture_default_str()
      ->check(CLI::Range(0, 4096));
  cmd->add_option("--device", args->device, "CUDA device index for --backend cuda")
      ->capture_default_str()
      ->check(CLI::Range(0, 1024));
  cmd->add_option("--max-connections", args->max_connections, "bound on concurrent client connections")
      ->capture_default_str()
      ->check(CLI::Range(1, 4096));
  return tenet::cli::Command{cmd, [args] { return run_accelerator(*args); }};
});

}  // namespace
