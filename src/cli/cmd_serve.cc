// `tenet serve`: the untrusted host runtime. Launches N long-running enclave processes
// (`tenet enclave`), relays client TCP connections to them (TLS terminates inside the enclaves),
// restarts enclaves that exit, and serves Prometheus metrics (counts and latencies only).
//
// With --schedule (sim EPC emulation), a scheduler decides instead how many enclaves run, with
// which EPC resident limit, and which connection each serves (src/host/scheduler.h): epc-aware
// (Vessels: admit enclaves while their EPC commits fit a bound, one connection per enclave, a FIFO
// queue for the rest) or naive (the baselines: one enclave per concurrent connection, no bound).
// Without --schedule, `--enclaves N` enclaves start at once and share connections as before.
//
// Modes (design.md, "Three ways to protect a model"): each model's mode (tee or hybrid) is
// manifest content, measured into MRENCLAVE, so the manifest is the one source of truth and
// `--mode NAME=MODE` only checks it (a deployment script states what it expects; a mismatch stops
// the server before any enclave starts). When the manifest has a hybrid model, the enclaves need
// the untrusted accelerator process: with `--accelerator auto` (default) this process starts
// `tenet accelerator --listen unix:PATH --backend cpu` itself (one for all enclaves) and supervises
// it: if it dies, hybrid requests fail cleanly (503 / UNAVAILABLE) while tee models keep serving,
// and it is restarted at the same address after a short backoff (at most --accelerator-restarts
// times a minute; tenet_accelerator_restarts_total, tenet_accelerator_up on /metrics); the
// enclaves' clients reconnect and register their layers again on their next request. With
// `--accelerator unix:PATH` the enclaves connect to one the operator runs; this process restarts
// nothing, but the enclaves reconnect in the same way once it listens again.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <climits>
#include <cstdio>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "cli/command.h"
#include "crypto/crypto.h"
#include "enclave/manifest.h"
#include "epc/host_epc.h"
#include "host/metrics.h"
#include "host/net.h"
#include "host/relay.h"
#include "host/spawn.h"
#include "host/scheduler.h"
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
  std::string schedule;        // "" (none) | epc-aware | naive
  std::string epc_bound;       // default: the --epc budget
  size_t max_enclaves = 4;
  std::string enclave_commit;  // the operator's estimate of one enclave's commit
  int queue_timeout_s = 600;
  int streams_per_enclave = 1;
  std::string enclave_memory;  // "" | resident | planned (tenet enclave --memory)
  bool enclaves_given = false;
  std::vector<std::string> modes;     // NAME=tee|hybrid, checked against the manifest
  std::string accelerator = "auto";   // auto | unix:PATH
  std::string accelerator_backend = "cpu";
  int accelerator_restarts = 5;       // per minute, of the --accelerator auto process (0: none)
};

std::string self_exe() {
  char buf[PATH_MAX];
  const ssize_t n = ::readlink("/proc/self/exe", buf, sizeof(buf) - 1);
  return n > 0 ? std::string(buf, static_cast<size_t>(n)) : std::string("tenet");
}

// The accelerator process this server started (--accelerator auto), supervised: when it exits, a
// monitor thread starts it again at the same address (unix socket in a private directory) after
// a short backoff (200 ms, doubling per consecutive failed start up to 5 s), at most
// `max_restarts_per_minute` times in any 60 s (then it waits for the window; 0: never restart),
// logging each exit and restart to stderr. The enclaves' accelerator clients connect again by
// themselves and register their layers again (src/accel/client.cc). Stopped with the server.
class OwnedAccelerator {
 public:
  using Observer = std::function<void(bool up, bool restarted)>;
  ~OwnedAccelerator() { stop(); }
  static tenet::Result<std::unique_ptr<OwnedAccelerator>> start(const std::string& backend, int threads,
                                                                int max_restarts_per_minute) {
    auto acc = std::unique_ptr<OwnedAccelerator>(new OwnedAccelerator());
    char dir_template[] = "/tmp/tenet-accel-XXXXXX";
    if (::mkdtemp(dir_template) == nullptr) return tenet::internal_error("mkdtemp: {}", std::strerror(errno));
    acc->dir_ = dir_template;
    acc->address_ = "unix:" + acc->dir_ + "/accel.sock";
    acc->args_ = {self_exe(), "accelerator", "--listen", acc->address_, "--backend", backend};
    if (threads > 0) {
      acc->args_.push_back("--threads");
      acc->args_.push_back(std::to_string(threads));
    }
    acc->requested_backend_ = backend;
    acc->max_restarts_per_minute_ = max_restarts_per_minute;
    auto child = acc->spawn();
    if (!child.ok()) return child.status();
    acc->pid_ = child->pid;
    acc->out_fd_ = child->out_fd;
    acc->backend_ = child->backend;
    return acc;
  }
  // Starts the monitor thread; `observer` hears of exits (up = false) and restarts (up = true).
  void supervise(Observer observer) {
    observer_ = std::move(observer);
    if (observer_) observer_(true, false);
    monitor_ = std::thread([this] { monitor_loop(); });
  }
  void stop() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stopping_ = true;
    }
    cv_.notify_all();
    if (monitor_.joinable()) monitor_.join();
    std::lock_guard<std::mutex> lock(mu_);
    if (pid_ > 0) {
      ::kill(pid_, SIGTERM);
      int status = 0;
      // It finishes runs in progress, then exits; a stuck one is killed after 10 s.
      for (int i = 0; i < 100 && ::waitpid(pid_, &status, WNOHANG) == 0; ++i) ::usleep(100 * 1000);
      if (::waitpid(pid_, &status, WNOHANG) == 0) {
        ::kill(pid_, SIGKILL);
        ::waitpid(pid_, &status, 0);
      }
      pid_ = -1;
    }
    if (out_fd_ >= 0) ::close(out_fd_);
    out_fd_ = -1;
    if (!dir_.empty()) {
      std::error_code ec;
      std::filesystem::remove_all(dir_, ec);
      dir_.clear();
    }
  }
  const std::string& address() const { return address_; }
  const std::string& backend() const { return backend_; }
  int pid() const {
    std::lock_guard<std::mutex> lock(mu_);
    return pid_;
  }

 private:
  struct Child {
    pid_t pid = -1;
    int out_fd = -1;
    std::string backend;
  };
  OwnedAccelerator() = default;

  // Starts `tenet accelerator` and waits (up to 60 s) for its {"event":"listening",...} line.
  tenet::Result<Child> spawn() {
    auto child = tenet::host::spawn_with_stdout_pipe(args_, /*own_process_group=*/false);
    if (!child.ok()) return child.status().with_context("the accelerator");
    const pid_t pid = child->pid;
    const int fd = child->stdout_fd;
    std::string line;
    for (int waited_ms = 0; waited_ms < 60000;) {
      pollfd p{fd, POLLIN, 0};
      const int n = ::poll(&p, 1, 250);
      if (n < 0 && errno != EINTR) break;
      if (n <= 0) {
        waited_ms += 250;
        continue;
      }
      char c;
      const ssize_t r = ::read(fd, &c, 1);
      if (r <= 0) break;  // exited
      if (c != '\n') {
        if (line.size() < 4096) line.push_back(c);
        continue;
      }
      const auto j = nlohmann::json::parse(line, nullptr, false);
      if (j.is_object() && j.value("event", "") == "listening") {
        // Its later stdout is drained by the monitor (a full pipe would block it).
        ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
        return Child{pid, fd, j.value("backend", requested_backend_)};
      }
      line.clear();
    }
    ::close(fd);
    ::kill(pid, SIGKILL);
    int status = 0;
    ::waitpid(pid, &status, 0);
    return tenet::failed_precondition("the accelerator process ({}) did not start listening on {}; see its log above",
                                      args_[0], address_);
  }

  static std::string describe_exit(int status) {
    if (WIFSIGNALED(status)) return fmt::format("killed by signal {}", WTERMSIG(status));
    if (WIFEXITED(status)) return fmt::format("exit status {}", WEXITSTATUS(status));
    return fmt::format("status {}", status);
  }

  void drain_stdout() {
    char buf[4096];
    while (out_fd_ >= 0 && ::read(out_fd_, buf, sizeof(buf)) > 0) {
    }
  }

  void monitor_loop() {
    using Clock = std::chrono::steady_clock;
    std::deque<Clock::time_point> restarts;  // within the last minute
    int failed_starts = 0;
    Clock::time_point next_start{};
    bool waiting_logged = false;
    std::unique_lock<std::mutex> lock(mu_);
    while (!stopping_) {
      cv_.wait_for(lock, std::chrono::milliseconds(100), [this] { return stopping_; });
      if (stopping_) break;
      if (pid_ > 0) {
        drain_stdout();
        int status = 0;
        if (::waitpid(pid_, &status, WNOHANG) != pid_) continue;
        const int old = pid_;
        pid_ = -1;
        if (out_fd_ >= 0) ::close(out_fd_);
        out_fd_ = -1;
        if (observer_) observer_(false, false);
        if (max_restarts_per_minute_ <= 0) {
          std::fprintf(stderr, "tenet serve: the accelerator (pid %d) exited (%s); not restarting it "
                               "(--accelerator-restarts 0): hybrid requests fail until the server restarts\n",
                       old, describe_exit(status).c_str());
          return;
        }
        next_start = Clock::now() + std::chrono::milliseconds(200);
        failed_starts = 0;
        std::fprintf(stderr, "tenet serve: the accelerator (pid %d) exited (%s); restarting it in 200 ms\n", old,
                     describe_exit(status).c_str());
        continue;
      }
      // Down: restart when the backoff has passed and the per-minute budget allows.
      const auto now = Clock::now();
      while (!restarts.empty() && now - restarts.front() >= std::chrono::minutes(1)) restarts.pop_front();
      if (now < next_start) continue;
      if (restarts.size() >= static_cast<size_t>(max_restarts_per_minute_)) {
        if (!waiting_logged) {
          std::fprintf(stderr, "tenet serve: the accelerator was restarted %zu times in the last minute "
                               "(--accelerator-restarts %d); waiting before the next restart\n",
                       restarts.size(), max_restarts_per_minute_);
          waiting_logged = true;
        }
        continue;
      }
      waiting_logged = false;
      restarts.push_back(now);
      lock.unlock();
      auto child = spawn();
      lock.lock();
      if (!child.ok()) {
        ++failed_starts;
        const int delay_ms = std::min(5000, 200 << std::min(failed_starts, 5));
        next_start = Clock::now() + std::chrono::milliseconds(delay_ms);
        std::fprintf(stderr, "tenet serve: restarting the accelerator failed (%s); trying again in %d ms\n",
                     child.status().to_string().c_str(), delay_ms);
        continue;
      }
      pid_ = child->pid;
      out_fd_ = child->out_fd;
      failed_starts = 0;
      if (observer_) observer_(true, true);
      std::fprintf(stderr, "tenet serve: restarted the accelerator (%s backend, pid %d) on %s (%zu restarts in the last minute)\n",
                   child->backend.c_str(), pid_, address_.c_str(), restarts.size());
      if (stopping_) break;  // stop() kills it
    }
  }

  std::string dir_, address_, backend_, requested_backend_;
  std::vector<std::string> args_;
  int max_restarts_per_minute_ = 0;
  Observer observer_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  std::thread monitor_;
  int pid_ = -1;
  int out_fd_ = -1;
};

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

  // The models' modes, from the manifest (the host may read it: it is measured, not secret).
  auto manifest_text = tenet::crypto::read_file(a.manifest, 1 << 20);
  if (!manifest_text.ok()) return tenet::cli::fail(manifest_text.status().with_context("--manifest"));
  auto manifest = tenet::enclave::parse_manifest(*manifest_text);
  if (!manifest.ok()) return tenet::cli::fail(manifest.status().with_context("--manifest"));
  nlohmann::json modes = nlohmann::json::object();
  for (const auto& mm : manifest->models) modes[mm.name] = mm.mode_claim();
  for (const std::string& m : a.modes) {
    const size_t eq = m.find('=');
    const std::string name = m.substr(0, eq), mode = eq == std::string::npos ? "" : m.substr(eq + 1);
    if (eq == std::string::npos || (mode != "tee" && mode != "hybrid")) {
      return tenet::cli::fail(tenet::invalid_argument("--mode expects NAME=tee or NAME=hybrid, got '{}'", m));
    }
    const auto it = std::find_if(manifest->models.begin(), manifest->models.end(), [&](const auto& mm) { return mm.name == name; });
    if (it == manifest->models.end()) return tenet::cli::fail(tenet::invalid_argument("--mode {}: no model '{}' in the manifest", m, name));
    if (it->mode != mode) {
      return tenet::cli::fail(tenet::invalid_argument(
          "--mode {}: the manifest serves '{}' in {} mode. The mode is measured into MRENCLAVE with the manifest: "
          "change \"mode\" in the manifest (and re-measure, update the policies), not the command line",
          m, name, it->mode));
    }
  }
  std::unique_ptr<OwnedAccelerator> owned_accelerator;
  std::string accelerator_address;
  if (manifest->any_hybrid()) {
    if (a.accelerator == "auto") {
      auto acc = OwnedAccelerator::start(a.accelerator_backend, a.threads, a.accelerator_restarts);
      if (!acc.ok()) return tenet::cli::fail(acc.status());
      owned_accelerator = std::move(acc).value();
      HostMetrics* mp = metrics->get();
      owned_accelerator->supervise([mp](bool up, bool restarted) {
        mp->accelerator_up(up);
        if (restarted) mp->accelerator_restarted();
      });
      accelerator_address = owned_accelerator->address();
      std::fprintf(stderr, "tenet serve: started the accelerator (%s backend, pid %d) on %s for the hybrid models\n",
                   owned_accelerator->backend().c_str(), owned_accelerator->pid(), accelerator_address.c_str());
    } else if (a.accelerator.rfind("unix:", 0) == 0 && a.accelerator.size() > 5) {
      accelerator_address = a.accelerator;
    } else {
      return tenet::cli::fail(tenet::invalid_argument("--accelerator must be auto or unix:PATH, got '{}'", a.accelerator));
    }
  } else if (a.accelerator != "auto") {
    return tenet::cli::fail(tenet::invalid_argument("--accelerator {}: the manifest has no hybrid model", a.accelerator));
  }

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
  add("--memory", a.enclave_memory);
  add("--accelerator", accelerator_address);
  // One EPC budget for all enclaves of this server (sim): a shared segment this process owns.
  std::shared_ptr<tenet::epc::HostEpc> host_epc;
  const std::string epc_host = fmt::format("tenet-serve-{}", ::getpid());
  std::shared_ptr<EnclaveScheduler> sched;
  if (!a.schedule.empty()) {
    if (a.epc.empty()) return tenet::cli::fail(tenet::invalid_argument("--schedule needs --epc (the EPC budget it schedules)"));
    if (a.enclaves_given) {
      return tenet::cli::fail(tenet::invalid_argument("--schedule decides how many enclaves run: give --max-enclaves, not --enclaves"));
    }
    ScheduleOptions sopt;
    auto policy = parse_schedule_policy(a.schedule);
    if (!policy.ok()) return tenet::cli::fail(policy.status().with_context("--schedule"));
    sopt.policy = *policy;
    auto budget = tenet::epc::parse_epc_size(a.epc);
    if (!budget.ok()) return tenet::cli::fail(budget.status().with_context("--epc"));
    sopt.budget_bytes = *budget;
    if (!a.epc_bound.empty()) {
      auto bound = tenet::epc::parse_epc_size(a.epc_bound);
      if (!bound.ok()) return tenet::cli::fail(bound.status().with_context("--epc-bound"));
      sopt.bound_bytes = *bound;
    }
    if (!a.enclave_commit.empty()) {
      auto est = tenet::epc::parse_epc_size(a.enclave_commit);
      if (!est.ok()) return tenet::cli::fail(est.status().with_context("--enclave-commit"));
      sopt.commit_estimate_bytes = *est;
    }
    sopt.max_enclaves = a.max_enclaves;
    sopt.streams_per_enclave = a.streams_per_enclave;
    sopt.enclaves_plan_to_limit = a.enclave_memory == "planned";
    auto s = EnclaveScheduler::create(sopt, a.queue_timeout_s * 1000,
                                      (*metrics)->scheduler_observer(a.schedule, sopt.bound_bytes ? sopt.bound_bytes : sopt.budget_bytes));
    if (!s.ok()) return tenet::cli::fail(s.status());
    sched = *s;
  }
  if (a.enclave_memory == "planned" && a.epc.empty()) {
    return tenet::cli::fail(tenet::invalid_argument("--enclave-memory planned needs --epc"));
  }
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
    // enclave pages within an equal share; together they never exceed the budget. Under a
    // scheduler each enclave's limit is the scheduler's, asked at each spawn.
    if (!sched) add("--epc-limit", std::to_string(*budget / a.enclaves / 4096 * 4096) + "B");
  }
  // Enclaves listen on loopback ports of their own choosing and announce them.
  add("--http", "127.0.0.1:0");
  add("--grpc", "127.0.0.1:0");
  const size_t slots = sched ? a.max_enclaves : a.enclaves;
  so.count = sched ? 0 : a.enclaves;  // the scheduler starts its enclaves itself
  so.slots = slots;
  if (sched) {
    so.slot_args = [sched](size_t slot) {
      return std::vector<std::string>{"--epc-limit", std::to_string(sched->resident_limit_bytes(slot)) + "B"};
    };
  }
  so.ready_timeout_ms = a.ready_timeout_s * 1000;

  auto http_pool = std::make_shared<BackendPool>(slots);
  auto grpc_pool = std::make_shared<BackendPool>(slots);
  HostMetrics* m = metrics->get();
  auto sup = Supervisor::start(
      so, http_pool, grpc_pool,
      [m, sched, host_epc](size_t slot, const nlohmann::json& ev) {
        if (ev["event"] == "ready") {
          m->enclave_up(slot, true);
          const std::string commit = ev.contains("commit_bytes") && ev["commit_bytes"].is_number_unsigned()
                                         ? tenet::epc::format_epc_size(ev["commit_bytes"].get<uint64_t>())
                                         : std::string("?");
          std::fprintf(stderr, "tenet serve: enclave %zu ready (%s; EPC commit %s)\n", slot,
                       ev.value("platform", std::string("?")).c_str(), commit.c_str());
        } else if (ev["event"] == "stats") {
          m->apply_enclave_stats(slot, ev);
          m->apply_enclave_epc(slot, ev);
          if (host_epc) m->apply_host_epc(nlohmann::json::parse(tenet::epc::to_json(host_epc->counters()), nullptr, false));
        }
        if (sched) sched->on_event(slot, ev);
      },
      [m, sched](size_t slot, int status, bool restarting) {
        m->enclave_up(slot, false);
        if (restarting) m->enclave_restarted(slot);
        std::fprintf(stderr, "tenet serve: enclave %zu exited (status %d)%s\n", slot, status,
                     restarting ? "; restarting" : " before it was ready");
        if (sched) sched->on_exit(slot, restarting);
      });
  if (!sup.ok()) return tenet::cli::fail(sup.status());
  Supervisor* supervisor = sup->get();
  if (sched) {
    sched->set_start([supervisor](size_t slot) {
      const tenet::Status s = supervisor->launch(slot);
      if (!s.ok()) std::fprintf(stderr, "tenet serve: cannot start enclave %zu: %s\n", slot, s.to_string().c_str());
    });
    // The first enclave starts alone (identity, commit); then the policy's initial enclaves.
    sched->kick();
    for (std::vector<size_t> starting = sched->starting_slots(); !starting.empty(); starting = sched->starting_slots()) {
      for (size_t slot : starting) {
        const tenet::Status s = supervisor->wait_ready(slot, so.ready_timeout_ms);
        if (!s.ok()) {
          sched->set_start(nullptr);
          supervisor->stop();
          if (host_epc) (void)tenet::epc::HostEpc::remove(epc_host);
          return tenet::cli::fail(s);
        }
      }
    }
    std::fprintf(stderr, "tenet serve: schedule %s\n", sched->describe().dump().c_str());
  }

  RelayOptions http_options{*http_addr, "http"};
  RelayOptions grpc_options{*grpc_addr, "grpc"};
  grpc_options.protocol = 1;
  auto http_relay = Relay::start(http_options, http_pool, m->relay_observer("http"), sched);
  if (!http_relay.ok()) return tenet::cli::fail(http_relay.status());
  auto grpc_relay = Relay::start(grpc_options, grpc_pool, m->relay_observer("grpc"), sched);
  if (!grpc_relay.ok()) return tenet::cli::fail(grpc_relay.status());

  nlohmann::json ready = {{"event", "serving"},
                          {"http_port", (*http_relay)->port()},
                          {"grpc_port", (*grpc_relay)->port()},
                          {"metrics_port", m->port()},
                          {"enclaves", sched ? sched->describe()["ready_enclaves"].get<size_t>() : a.enclaves},
                          {"platform", a.platform == "sim" ? "sim (INSECURE)" : a.platform},
                          {"modes", modes}};
  if (sched) ready["schedule"] = sched->describe();
  if (!accelerator_address.empty()) {
    ready["accelerator"] = {{"address", accelerator_address}, {"owned", owned_accelerator != nullptr}};
    if (owned_accelerator) {
      ready["accelerator"]["pid"] = owned_accelerator->pid();
      ready["accelerator"]["restarts_per_minute"] = a.accelerator_restarts;
    }
  }
  std::printf("%s\n", ready.dump().c_str());
  std::fflush(stdout);

  int sig = 0;
  sigwait(&stop_signals, &sig);
  std::fprintf(stderr, "tenet serve: stopping (signal %d)\n", sig);
  (*http_relay)->stop();
  (*grpc_relay)->stop();
  if (sched) sched->set_start(nullptr);
  (*sup)->stop();
  if (owned_accelerator) owned_accelerator->stop();
  if (host_epc) (void)tenet::epc::HostEpc::remove(epc_host);
  return 0;
}

const tenet::cli::CommandRegistration kServe([](CLI::App& app) {
  auto a = std::make_shared<ServeArgs>();
  CLI::App* cmd = app.add_subcommand(
      "serve",
      "Host runtime (untrusted): start N enclaves serving sealed models over KServe v2 (REST + gRPC), relay client "
      "connections to them, restart enclaves that exit, expose Prometheus metrics. TLS (RA-TLS) terminates inside "
      "the enclaves; this process only sees ciphertext. Each model runs in the mode its manifest entry names (tee, or "
      "hybrid with an untrusted accelerator this process starts). On --platform sim nothing is hardware-protected (INSECURE).");
  cmd->add_option("--manifest", a->manifest, "Enclave manifest (JSON; measured into MRENCLAVE)")->required()->check(CLI::ExistingFile);
  cmd->add_option("--package", a->packages, "NAME=MODEL.tenet for each model in the manifest")->required();
  cmd->add_option("--keybroker", a->keybroker, "Key broker URL (http://HOST:PORT) releasing the model keys")->required();
  cmd->add_option("--platform", a->platform, "sim (INSECURE, default) | gramine | tsm")->check(CLI::IsMember({"sim", "gramine", "tsm"}));
  cmd->add_option("--sim-dir", a->sim_dir, "Sim platform provisioning directory (tenet sim init)");
  cmd->add_option("--identity-store", a->identity_store,
                  "File holding the enclaves' sealed RA-TLS identity (created by the first enclave, reused by the others)")
      ->required();
  cmd->add_option("--enclaves", a->enclaves, "Number of enclave processes, all started at once (default 1; not with --schedule)")
      ->check(CLI::Range(1, 256))
      ->each([a](const std::string&) { a->enclaves_given = true; });
  cmd->add_option("--threads", a->threads, "Compute threads per enclave (default: all cores)")->check(CLI::Range(0, 1024));
  cmd->add_option("--http", a->http, "Public REST address (default 127.0.0.1:8000; port 0 picks one)");
  cmd->add_option("--grpc", a->grpc, "Public gRPC address (default 127.0.0.1:8001)");
  cmd->add_option("--metrics", a->metrics, "Prometheus metrics address (default 127.0.0.1:8002; empty disables)");
  cmd->add_option("--epc", a->epc,
                  "sim: emulate one EPC budget shared by all enclaves, e.g. 93MiB (SGX1) or 64GiB; enclave memory beyond "
                  "it is paged (encrypted) at real cost; each enclave gets an equal share (under --schedule: the policy's limit). "
                  "Default: no emulation");
  cmd->add_option("--schedule", a->schedule,
                  "Schedule enclaves against the --epc budget (sim): epc-aware (Vessels: start and feed enclaves only while "
                  "their EPC commits sum to at most --epc-bound, each enclave one connection at a time, other connections "
                  "wait in a FIFO queue; each enclave's resident limit is bound/pool, at least its commit; an enclave whose commit "
                  "alone passes the bound runs alone, paging) or naive (the "
                  "baselines: one enclave per concurrent connection up to --max-enclaves, no bound, each limited to "
                  "budget/max-enclaves). Default: no scheduler (--enclaves N share all connections)")
      ->check(CLI::IsMember({"epc-aware", "naive"}));
  cmd->add_option("--epc-bound", a->epc_bound, "With --schedule epc-aware: bound on the admitted enclaves' EPC commits, e.g. 93MiB (default: the --epc budget)");
  cmd->add_option("--max-enclaves", a->max_enclaves, "With --schedule: most enclave processes at once (default 4)")->check(CLI::Range(1, 256));
  cmd->add_option("--enclave-commit", a->enclave_commit,
                  "With --schedule epc-aware: estimated EPC commit of one enclave (e.g. from tenet inspect), to size the pool "
                  "before the first enclave reports its own (default: start one enclave and use its reported commit)");
  cmd->add_option("--streams-per-enclave", a->streams_per_enclave,
                  "With --schedule epc-aware: connections an admitted enclave serves at once (default 1, Vessels' one "
                  "request stream per enclave; 2 overlaps the next TLS handshake with the current inference)")
      ->check(CLI::Range(1, 64));
  cmd->add_option("--enclave-memory", a->enclave_memory,
                  "Enclaves' memory mode (tenet enclave --memory): resident (default) or planned (needs --epc: batch 1, "
                  "weights streamed so each enclave fits its EPC share; under --schedule epc-aware every enclave then "
                  "gets bound/max-enclaves)")
      ->check(CLI::IsMember({"resident", "planned"}));
  cmd->add_option("--queue-timeout", a->queue_timeout_s,
                  "With --schedule: seconds a connection may wait for an enclave before it is closed (default 600)")
      ->check(CLI::Range(1, 86400));
  cmd->add_option("--mode", a->modes,
                  "NAME=tee|hybrid: check that the manifest serves model NAME in that mode, and refuse to start if not. "
                  "Each model's mode is set in the manifest (\"mode\": \"hybrid\"), which is measured into MRENCLAVE, so "
                  "this option cannot change it");
  cmd->add_option("--accelerator", a->accelerator,
                  "For the manifest's hybrid models: auto (default: start `tenet accelerator --listen unix:PATH` for all "
                  "enclaves, restarted if it exits (see --accelerator-restarts), stopped with the server) or unix:PATH of "
                  "an accelerator the operator runs (never restarted by this process). Either way the enclaves reconnect "
                  "and register their layers again when it is back; requests meanwhile fail with 503 / UNAVAILABLE. "
                  "Untrusted: it sees blinded data only");
  cmd->add_option("--accelerator-restarts", a->accelerator_restarts,
                  "With --accelerator auto: most restarts of the accelerator in any minute after it exits (default 5; "
                  "first after 200 ms, backing off to 5 s while starts fail; 0: never restart). Logged to stderr and "
                  "counted in tenet_accelerator_restarts_total on --metrics")
      ->check(CLI::Range(0, 1000));
  cmd->add_option("--accelerator-backend", a->accelerator_backend, "Backend of the accelerator started by --accelerator auto: cpu (default) or cuda")
      ->check(CLI::IsMember({"cpu", "cuda"}));
  cmd->add_option("--launcher", a->launcher, "Command prefix that starts an enclave, e.g. gramine-sgx (default: none)");
  cmd->add_option("--ready-timeout", a->ready_timeout_s, "Seconds to wait for each enclave to load (default 300)")->check(CLI::Range(1, 86400));
  return tenet::cli::Command{cmd, [a] { return run_serve(*a); }};
});

}  // namespace
