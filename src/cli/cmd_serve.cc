// `tenet serve`: the untrusted host runtime. Launches N long-running enclave processes
// (`tenet enclave`), relays client TCP connections to them (TLS terminates inside the enclaves),
// restarts enclaves that exit, and serves Prometheus metrics (counts and latencies only).
#include <signal.h>
#include <unistd.h>

#include <climits>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cli/command.h"
#include "epc/host_epc.h"
#include "host/metrics.h"
#include "host/net.h"
#include "host/relay.h"
#include "host/supervisor.h"

namespace {

struct ServeArgs {
  std::string manifest;
  std::vector<std::string> packages;
  std::string keybroker;
  std::string platform = "sim";
  std::string sim_dir;
  std::string identity_store;
  std::string http = "127.0.0.1:8000";
  std::string grpc = "127.0.0.1:8001";
  std::string metrics = "127.0.0.1:8002";
  std::vector<std::string> launcher;
  size_t enclaves = 1;
  std::string epc;
  int threads = 0;
  int ready_timeout_s = 300;
};

std::string self_exe() {
  char buf[PATH_MAX];
  const ssize_t n = ::readlink("/proc/self/exe", buf, sizeof(buf) - 1);
  return n > 0 ? std::string(buf, static_cast<size_t>(n)) : std::string("tenet");
}

int run_serve(const ServeArgs& a) {
  using namespace tenet::host;
  // Signals are taken synchronously by this thread; every thread started below inherits the mask.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  signal(SIGPIPE, SIG_IGN);

  auto http_addr = parse_host_port(a.http);
  if (!http_addr.ok()) return tenet::cli::fail(http_addr.status().with_context("--http"));
  auto grpc_addr = parse_host_port(a.grpc);
  if (!grpc_addr.ok()) return tenet::cli::fail(grpc_addr.status().with_context("--grpc"));
  auto metrics = HostMetrics::create(a.metrics);
  if (!metrics.ok()) return tenet::cli::fail(metrics.status());

  SupervisorOptions so;
  so.argv = a.launcher;
  so.argv.push_back(self_exe());
  for (const char* s : {"enclave", "--manifest"}) so.argv.push_back(s);
  so.argv.push_back(a.manifest);
  for (const auto& p : a.packages) {
    so.argv.push_back("--package");
    so.argv.push_back(p);
  }
  auto add = [&](const char* flag, const std::string& v) {
    if (v.empty()) return;
    so.argv.push_back(flag);
    so.argv.push_back(v);
  };
  add("--keybroker", a.keybroker);
  add("--platform", a.platform);
  add("--sim-dir", a.sim_dir);
  add("--identity-store", a.identity_store);
  add("--threads", a.threads > 0 ? std::to_string(a.threads) : "");
  // One EPC budget for all enclaves of this server (sim): a shared segment this process owns.
  std::shared_ptr<tenet::epc::HostEpc> host_epc;
  const std::string epc_host = fmt::format("tenet-serve-{}", ::getpid());
  if (!a.epc.empty()) {
    if (a.platform != "sim") return tenet::cli::fail(tenet::invalid_argument("--epc emulates the sim platform's EPC only"));
    auto budget = tenet::epc::parse_epc_size(a.epc);
    if (!budget.ok()) return tenet::cli::fail(budget.status().with_context("--epc"));
    auto h = tenet::epc::HostEpc::open(epc_host, *budget);
    if (!h.ok()) return tenet::cli::fail(h.status());
    host_epc = *h;
    add("--epc", a.epc);
    add("--epc-host", epc_host);
    // The emulation does not evict one enclave's pages for another (SGX's driver does), so each
    // enclave pages within an equal share; together they never exceed the budget.
    add("--epc-limit", std::to_string(*budget / a.enclaves / 4096 * 4096) + "B");
  }
  // Enclaves listen on loopback ports of their own choosing and announce them.
  add("--http", "127.0.0.1:0");
  add("--grpc", "127.0.0.1:0");
  so.count = a.enclaves;
  so.ready_timeout_ms = a.ready_timeout_s * 1000;

  auto http_pool = std::make_shared<BackendPool>(a.enclaves);
  auto grpc_pool = std::make_shared<BackendPool>(a.enclaves);
  HostMetrics* m = metrics->get();
  std::string platform_label;
  auto sup = Supervisor::start(
      so, http_pool, grpc_pool,
      [m, &platform_label](size_t slot, const nlohmann::json& ev) {
        if (ev["event"] == "ready") {
          m->enclave_up(slot, true);
          std::fprintf(stderr, "tenet serve: enclave %zu ready (%s)\n", slot, ev.value("platform", std::string("?")).c_str());
        } else if (ev["event"] == "stats") {
          m->apply_enclave_stats(slot, ev);
          m->apply_enclave_epc(slot, ev);
        }
      },
      [m](size_t slot, int status) {
        m->enclave_up(slot, false);
        m->enclave_restarted(slot);
        std::fprintf(stderr, "tenet serve: enclave %zu exited (status %d); restarting\n", slot, status);
      });
  if (!sup.ok()) return tenet::cli::fail(sup.status());

  auto http_relay = Relay::start({*http_addr, "http"}, http_pool, m->relay_observer("http"));
  if (!http_relay.ok()) return tenet::cli::fail(http_relay.status());
  auto grpc_relay = Relay::start({*grpc_addr, "grpc"}, grpc_pool, m->relay_observer("grpc"));
  if (!grpc_relay.ok()) return tenet::cli::fail(grpc_relay.status());

  nlohmann::json ready = {{"event", "serving"},
                          {"http_port", (*http_relay)->port()},
                          {"grpc_port", (*grpc_relay)->port()},
                          {"metrics_port", m->port()},
                          {"enclaves", a.enclaves},
                          {"platform", a.platform == "sim" ? "sim (INSECURE)" : a.platform}};
  std::printf("%s\n", ready.dump().c_str());
  std::fflush(stdout);

  int sig = 0;
  sigwait(&stop_signals, &sig);
  std::fprintf(stderr, "tenet serve: stopping (signal %d)\n", sig);
  (*http_relay)->stop();
  (*grpc_relay)->stop();
  (*sup)->stop();
  if (host_epc) (void)tenet::epc::HostEpc::remove(epc_host);
  return 0;
}

const tenet::cli::CommandRegistration kServe([](CLI::App& app) {
  auto a = std::make_shared<ServeArgs>();
  CLI::App* cmd = app.add_subcommand(
      "serve",
      "Host runtime (untrusted): start N enclaves serving sealed models over KServe v2 (REST + gRPC), relay client "
      "connections to them, restart enclaves that exit, expose Prometheus metrics. TLS (RA-TLS) terminates inside "
      "the enclaves; this process only sees ciphertext. On --platform sim nothing is hardware-protected (INSECURE).");
  cmd->add_option("--manifest", a->manifest, "Enclave manifest (JSON; measured into MRENCLAVE)")->required()->check(CLI::ExistingFile);
  cmd->add_option("--package", a->packages, "NAME=MODEL.tenet for each model in the manifest")->required();
  cmd->add_option("--keybroker", a->keybroker, "Key broker URL (http://HOST:PORT) releasing the model keys")->required();
  cmd->add_option("--platform", a->platform, "sim (INSECURE, default) | gramine | tsm")->check(CLI::IsMember({"sim", "gramine", "tsm"}));
  cmd->add_option("--sim-dir", a->sim_dir, "Sim platform provisioning directory (tenet sim init)");
  cmd->add_option("--identity-store", a->identity_store,
                  "File holding the enclaves' sealed RA-TLS identity (created by the first enclave, reused by the others)")
      ->required();
  cmd->add_option("--enclaves", a->enclaves, "Number of enclave processes (default 1)")->check(CLI::Range(1, 256));
  cmd->add_option("--threads", a->threads, "Compute threads per enclave (default: all cores)")->check(CLI::Range(0, 1024));
  cmd->add_option("--http", a->http, "Public REST address (default 127.0.0.1:8000; port 0 picks one)");
  cmd->add_option("--grpc", a->grpc, "Public gRPC address (default 127.0.0.1:8001)");
  cmd->add_option("--metrics", a->metrics, "Prometheus metrics address (default 127.0.0.1:8002; empty disables)");
  cmd->add_option("--epc", a->epc,
                  "sim: emulate one EPC budget shared by all enclaves, e.g. 93MiB (SGX1) or 64GiB; enclave memory beyond "
                  "it is paged (encrypted) at real cost; each enclave gets an equal share. Default: no emulation");
  cmd->add_option("--launcher", a->launcher, "Command prefix that starts an enclave, e.g. gramine-sgx (default: none)");
  cmd->add_option("--ready-timeout", a->ready_timeout_s, "Seconds to wait for each enclave to load (default 300)")->check(CLI::Range(1, 86400));
  return tenet::cli::Command{cmd, [a] { return run_serve(*a); }};
});

}  // namespace
