#include "host/supervisor.h"

#include "host/spawn.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <thread>

namespace tenet::host {
namespace {

constexpr size_t kMaxControlLine = 64 * 1024;

Result<HostPort> port_from(const nlohmann::json& ev, const char* key) {
  if (!ev.contains(key) || !ev[key].is_number_unsigned() || ev[key].get<uint64_t>() == 0 || ev[key].get<uint64_t>() > 65535) {
    return invalid_argument("ready line has no valid '{}'", key);
  }
  return HostPort{"127.0.0.1", static_cast<uint16_t>(ev[key].get<uint64_t>())};
}

}  // namespace

struct Supervisor::Impl {
  SupervisorOptions options;
  std::shared_ptr<BackendPool> http_pool, grpc_pool;
  EnclaveEventFn on_event;
  EnclaveExitFn on_exit;
  std::atomic<bool> stopping{false};

  mutable std::mutex mu;
  std::condition_variable cv;
  std::vector<int> pids;          // 0 when not running
  std::vector<bool> ready;
  std::vector<bool> ever_ready;
  std::vector<int> startup_exit;  // wait status of an enclave that exited before its first ready; -1: none
  std::vector<bool> running;      // a watcher thread owns the slot
  std::vector<std::thread> watchers;

  Result<std::pair<int, int>> spawn(size_t slot);  // pid, stdout fd
  void watch(size_t slot);
  bool wait_ready(size_t slot, int timeout_ms);
};

Result<std::pair<int, int>> Supervisor::Impl::spawn(size_t slot) {
  std::vector<std::string> args = options.argv;
  args.push_back("--instance");
  args.push_back(std::to_string(slot));
  if (options.slot_args) {
    for (auto& a : options.slot_args(slot)) args.push_back(std::move(a));
  }
  // Its own process group, so that stopping it also stops anything it started.
  auto child = spawn_with_stdout_pipe(std::move(args), /*own_process_group=*/true);
  if (!child.ok()) return child.status().with_context(fmt::format("enclave slot {}", slot));
  return std::make_pair(static_cast<int>(child->pid), child->stdout_fd);
}

// Reads one enclave's control lines until it exits, then restarts it (unless stopping).
void Supervisor::Impl::watch(size_t slot) {
  while (!stopping.load()) {
    auto spawned = spawn(slot);
    if (!spawned.ok()) {
      std::fprintf(stderr, "tenet serve: %s\n", spawned.status().to_string().c_str());
      std::this_thread::sleep_for(std::chrono::milliseconds(options.restart_backoff_ms * 4));
      continue;
    }
    const auto [pid, fd] = *spawned;
    {
      std::lock_guard<std::mutex> lock(mu);
      pids[slot] = pid;
      if (stopping.load()) ::kill(-pid, SIGTERM);  // stop() ran between spawn and here
    }
    std::FILE* f = ::fdopen(fd, "r");
    std::string line;
    int c;
    while (f != nullptr && (c = std::fgetc(f)) != EOF) {
      if (c != '\n') {
        if (line.size() < kMaxControlLine) line.push_back(static_cast<char>(c));
        continue;
      }
      nlohmann::json ev = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
      line.clear();
      if (!ev.is_object() || !ev.contains("event") || !ev["event"].is_string()) continue;
      if (ev["event"] == "ready") {
        auto http = port_from(ev, "http_port");
        auto grpc = port_from(ev, "grpc_port");
        if (!http.ok() || !grpc.ok()) {
          std::fprintf(stderr, "tenet serve: enclave %zu: bad ready line: %s\n", slot,
                       (http.ok() ? grpc.status() : http.status()).message().c_str());
          ::kill(-pid, SIGKILL);
          continue;
        }
        http_pool->set_up(slot, *http);
        grpc_pool->set_up(slot, *grpc);
        std::lock_guard<std::mutex> lock(mu);
        ready[slot] = true;
        ever_ready[slot] = true;
        cv.notify_all();
      }
      if (on_event) on_event(slot, ev);
    }
    if (f != nullptr) std::fclose(f);
    http_pool->set_down(slot);
    grpc_pool->set_down(slot);
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    {
      std::lock_guard<std::mutex> lock(mu);
      pids[slot] = 0;
      ready[slot] = false;
      // An enclave that never got ready (bad key, tampered package, bad manifest) would fail
      // the same way again: report it to start() instead of restarting it.
      if (!ever_ready[slot]) startup_exit[slot] = status;
      cv.notify_all();
    }
    if (stopping.load()) break;
    const bool restarting = ever_ready[slot];
    if (on_exit) on_exit(slot, status, restarting);
    if (!restarting) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(options.restart_backoff_ms));
  }
  std::lock_guard<std::mutex> lock(mu);
  running[slot] = false;
  cv.notify_all();
}

bool Supervisor::Impl::wait_ready(size_t slot, int timeout_ms) {
  std::unique_lock<std::mutex> lock(mu);
  return cv.wait_for(lock, std::chrono::milliseconds(timeout_ms),
                     [&] { return ready[slot] || startup_exit[slot] >= 0 || stopping.load(); }) &&
         ready[slot];
}

Supervisor::Supervisor(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Result<std::unique_ptr<Supervisor>> Supervisor::start(SupervisorOptions options, std::shared_ptr<BackendPool> http_pool,
                                                      std::shared_ptr<BackendPool> grpc_pool, EnclaveEventFn on_event,
                                                      EnclaveExitFn on_exit) {
  if (options.argv.empty()) return invalid_argument("no enclave command");
  if (options.slots == 0) options.slots = options.count;
  if (options.slots == 0 || options.slots > 256) return invalid_argument("enclave count {} out of range 1..256", options.slots);
  if (options.count > options.slots) return invalid_argument("{} enclaves to start but {} slots", options.count, options.slots);
  auto impl = std::make_unique<Impl>();
  impl->options = std::move(options);
  impl->http_pool = std::move(http_pool);
  impl->grpc_pool = std::move(grpc_pool);
  impl->on_event = std::move(on_event);
  impl->on_exit = std::move(on_exit);
  const size_t slots = impl->options.slots;
  impl->pids.assign(slots, 0);
  impl->ready.assign(slots, false);
  impl->ever_ready.assign(slots, false);
  impl->startup_exit.assign(slots, -1);
  impl->running.assign(slots, false);
  impl->watchers.resize(slots);
  std::unique_ptr<Supervisor> sup(new Supervisor(std::move(impl)));
  for (size_t i = 0; i < sup->impl_->options.count; ++i) {
    Status s = sup->launch(i);
    if (s.ok()) s = sup->wait_ready(i, sup->impl_->options.ready_timeout_ms);
    if (!s.ok()) {
      sup->stop();
      return s;
    }
  }
  return sup;
}

Status Supervisor::launch(size_t slot) {
  Impl* im = impl_.get();
  if (slot >= im->pids.size()) return invalid_argument("no enclave slot {} (there are {})", slot, im->pids.size());
  std::thread finished;
  std::lock_guard<std::mutex> lock(im->mu);
  if (im->stopping.load()) return failed_precondition("the supervisor is stopping");
  if (im->running[slot]) return ok_status();
  // The slot's previous watcher (if any) has returned: it cleared `running` as its last step.
  finished = std::move(im->watchers[slot]);
  if (finished.joinable()) finished.join();
  im->running[slot] = true;
  im->ready[slot] = false;
  im->ever_ready[slot] = false;
  im->startup_exit[slot] = -1;
  im->watchers[slot] = std::thread(&Impl::watch, im, slot);
  return ok_status();
}

Status Supervisor::wait_ready(size_t slot, int timeout_ms) {
  Impl* im = impl_.get();
  if (slot >= im->pids.size()) return invalid_argument("no enclave slot {} (there are {})", slot, im->pids.size());
  if (im->wait_ready(slot, timeout_ms)) return ok_status();
  int exit_status;
  {
    std::lock_guard<std::mutex> lock(im->mu);
    exit_status = im->startup_exit[slot];
  }
  if (exit_status >= 0) {
    return failed_precondition("enclave {} exited before it was ready ({} {}; see its log above)", slot,
                               WIFEXITED(exit_status) ? "exit status" : "signal",
                               WIFEXITED(exit_status) ? WEXITSTATUS(exit_status) : WTERMSIG(exit_status));
  }
  return failed_precondition("enclave {} did not become ready within {} ms (see its log above)", slot, timeout_ms);
}

Supervisor::~Supervisor() { stop(); }

std::vector<int> Supervisor::pids() const {
  std::lock_guard<std::mutex> lock(impl_->mu);
  return impl_->pids;
}

void Supervisor::stop() {
  if (!impl_) return;
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    if (impl_->stopping.exchange(true)) return;
    for (int pid : impl_->pids) {
      if (pid > 0) ::kill(-pid, SIGTERM);
    }
    impl_->cv.notify_all();
  }
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(impl_->options.stop_timeout_ms);
  for (;;) {
    bool any = false;
    {
      std::lock_guard<std::mutex> lock(impl_->mu);
      for (int pid : impl_->pids) any |= pid > 0;
      if (any && std::chrono::steady_clock::now() > deadline) {
        for (int pid : impl_->pids) {
          if (pid > 0) ::kill(-pid, SIGKILL);
        }
      }
    }
    if (!any) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  for (auto& t : impl_->watchers) {
    if (t.joinable()) t.join();
  }
}

}  // namespace tenet::host
