#include "host/relay.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <set>
#include <thread>

namespace tenet::host {

void BackendPool::set_up(size_t slot, HostPort addr) {
  std::lock_guard<std::mutex> lock(mu_);
  if (slot >= slots_.size()) return;
  slots_[slot].addr = std::move(addr);
  slots_[slot].generation++;
}

void BackendPool::set_down(size_t slot) {
  std::lock_guard<std::mutex> lock(mu_);
  if (slot >= slots_.size()) return;
  slots_[slot].addr.reset();
  slots_[slot].generation++;
}

std::optional<std::pair<size_t, HostPort>> BackendPool::acquire(const std::vector<size_t>& skip) {
  std::lock_guard<std::mutex> lock(mu_);
  std::optional<size_t> best;
  for (size_t i = 0; i < slots_.size(); ++i) {
    if (std::find(skip.begin(), skip.end(), i) != skip.end()) continue;
    if (slots_[i].addr && (!best || slots_[i].active < slots_[*best].active)) best = i;
  }
  if (!best) return std::nullopt;
  slots_[*best].active++;
  return std::make_pair(*best, *slots_[*best].addr);
}

void BackendPool::release(size_t slot) {
  std::lock_guard<std::mutex> lock(mu_);
  if (slot < slots_.size() && slots_[slot].active > 0) slots_[slot].active--;
}

size_t BackendPool::live_count() const {
  std::lock_guard<std::mutex> lock(mu_);
  size_t n = 0;
  for (const auto& s : slots_) n += s.addr.has_value();
  return n;
}

struct Relay::Impl {
  RelayOptions options;
  std::shared_ptr<BackendPool> pool;
  std::shared_ptr<RelayObserver> observer;
  std::shared_ptr<BackendBroker> broker;
  int listen_fd = -1;
  int wake_pipe[2] = {-1, -1};
  uint16_t port = 0;
  std::thread acceptor;
  std::atomic<bool> stopping{false};

  std::mutex mu;
  std::condition_variable cv;
  std::set<int> open_fds;  // both ends of every pair, for shutdown on stop
  int active = 0;

  void accept_loop();
  void serve_pair(int client_fd);
  void track(int fd) {
    std::lock_guard<std::mutex> lock(mu);
    open_fds.insert(fd);
  }
  void untrack_and_close(int fd) {
    {
      std::lock_guard<std::mutex> lock(mu);
      open_fds.erase(fd);
    }
    ::close(fd);
  }
};

namespace {

// Copies what is readable from `from` to `to`. Returns false on EOF or error.
bool pump(int from, int to, std::vector<char>& buf) {
  const ssize_t n = ::recv(from, buf.data(), buf.size(), 0);
  if (n <= 0) return false;
  size_t done = 0;
  while (done < static_cast<size_t>(n)) {
    const ssize_t w = ::send(to, buf.data() + done, static_cast<size_t>(n) - done, MSG_NOSIGNAL);
    if (w <= 0) return false;
    done += static_cast<size_t>(w);
  }
  return true;
}

// True once the client has closed or reset its end (data it already sent does not count).
bool client_gone(int fd) {
  pollfd p{fd, POLLRDHUP, 0};
  return ::poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL));
}

}  // namespace

void Relay::Impl::serve_pair(int client_fd) {
  const auto started = std::chrono::steady_clock::now();
  std::optional<std::pair<size_t, HostPort>> backend;
  std::optional<int> backend_fd;
  if (broker) {
    // Wait for the scheduler's grant; a client that hangs up meanwhile leaves the queue.
    backend = broker->acquire(options.protocol, [&] { return stopping.load() || client_gone(client_fd); });
    if (backend) {
      auto fd = connect_tcp(backend->second, options.connect_timeout_ms);
      if (fd.ok()) {
        backend_fd = *fd;
      } else {
        std::fprintf(stderr, "tenet serve: %s relay: enclave %zu unreachable: %s\n", options.name.c_str(),
                     backend->first, fd.status().message().c_str());
        broker->release(backend->first);
      }
    }
  } else {
    backend = pool->acquire();
  }
  std::vector<size_t> tried;
  while (!broker && backend) {
    auto fd = connect_tcp(backend->second, options.connect_timeout_ms);
    if (fd.ok()) {
      backend_fd = *fd;
      break;
    }
    // That enclave is not answering (crashed between checks): try the others once each.
    pool->release(backend->first);
    std::fprintf(stderr, "tenet serve: %s relay: enclave %zu unreachable: %s\n", options.name.c_str(), backend->first,
                 fd.status().message().c_str());
    tried.push_back(backend->first);
    backend = pool->acquire(tried);
  }
  if (!backend_fd) {
    if (observer) observer->on_reject(broker ? "not scheduled" : "no enclave available");
    untrack_and_close(client_fd);
  } else {
    track(*backend_fd);
    std::vector<char> buf(64 * 1024);
    pollfd fds[2] = {{client_fd, POLLIN, 0}, {*backend_fd, POLLIN, 0}};
    bool client_open = true, backend_open = true;
    while ((client_open || backend_open) && !stopping.load()) {
      fds[0].events = client_open ? POLLIN : 0;
      fds[1].events = backend_open ? POLLIN : 0;
      const int rc = ::poll(fds, 2, options.idle_timeout_ms);
      if (rc <= 0) {
        if (rc < 0 && errno == EINTR) continue;
        break;  // idle timeout or poll failure
      }
      if ((fds[0].revents & (POLLIN | POLLHUP | POLLERR)) && client_open) {
        if (!pump(client_fd, *backend_fd, buf)) {
          client_open = false;
          ::shutdown(*backend_fd, SHUT_WR);
          if (fds[0].revents & POLLERR) break;
        }
      }
      if ((fds[1].revents & (POLLIN | POLLHUP | POLLERR)) && backend_open) {
        if (!pump(*backend_fd, client_fd, buf)) {
          // The enclave closed (or died): the client must not wait for more.
          backend_open = false;
          break;
        }
      }
    }
    untrack_and_close(*backend_fd);
    untrack_and_close(client_fd);
    if (broker) {
      broker->release(backend->first);
    } else {
      pool->release(backend->first);
    }
    if (observer) observer->on_close(std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
  }
  std::lock_guard<std::mutex> lock(mu);
  active--;
  cv.notify_all();
}

void Relay::Impl::accept_loop() {
  pollfd fds[2] = {{listen_fd, POLLIN, 0}, {wake_pipe[0], POLLIN, 0}};
  while (!stopping.load()) {
    const int rc = ::poll(fds, 2, -1);
    if (rc < 0 && errno == EINTR) continue;
    if (rc < 0 || (fds[1].revents & POLLIN)) break;
    if (!(fds[0].revents & POLLIN)) continue;
    const int client = ::accept4(listen_fd, nullptr, nullptr, SOCK_CLOEXEC);
    if (client < 0) continue;
    {
      std::lock_guard<std::mutex> lock(mu);
      if (active >= options.max_connections) {
        ::close(client);
        if (observer) observer->on_reject("connection limit");
        continue;
      }
      active++;
      open_fds.insert(client);
    }
    if (observer) observer->on_accept();
    std::thread(&Impl::serve_pair, this, client).detach();
  }
}

Relay::Relay(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Result<std::unique_ptr<Relay>> Relay::start(RelayOptions options, std::shared_ptr<BackendPool> pool,
                                            std::shared_ptr<RelayObserver> observer,
                                            std::shared_ptr<BackendBroker> broker) {
  if (!pool && !broker) return invalid_argument("relay needs a backend pool or a broker");
  auto impl = std::make_unique<Impl>();
  impl->broker = std::move(broker);
  impl->options = std::move(options);
  impl->pool = std::move(pool);
  impl->observer = std::move(observer);
  TENET_ASSIGN_OR_RETURN(impl->listen_fd, listen_tcp(impl->options.listen, 512, &impl->port));
  if (::pipe2(impl->wake_pipe, O_CLOEXEC) != 0) {
    ::close(impl->listen_fd);
    return internal_error("pipe: {}", std::strerror(errno));
  }
  impl->acceptor = std::thread(&Impl::accept_loop, impl.get());
  return std::unique_ptr<Relay>(new Relay(std::move(impl)));
}

Relay::~Relay() { stop(); }

uint16_t Relay::port() const { return impl_->port; }

int Relay::active_connections() const {
  std::lock_guard<std::mutex> lock(impl_->mu);
  return impl_->active;
}

void Relay::stop() {
  if (!impl_ || impl_->stopping.exchange(true)) return;
  const char b = 1;
  (void)!::write(impl_->wake_pipe[1], &b, 1);
  if (impl_->acceptor.joinable()) impl_->acceptor.join();
  std::unique_lock<std::mutex> lock(impl_->mu);
  for (int fd : impl_->open_fds) ::shutdown(fd, SHUT_RDWR);
  impl_->cv.wait(lock, [&] { return impl_->active == 0; });
  lock.unlock();
  ::close(impl_->listen_fd);
  ::close(impl_->wake_pipe[0]);
  ::close(impl_->wake_pipe[1]);
}

}  // namespace tenet::host
