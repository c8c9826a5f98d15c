// The host's TCP relay (untrusted side). Clients connect to the host's public ports; the relay
// picks a live enclave (fewest open connections) and copies bytes both ways. TLS runs end to end
// between client and enclave (RA-TLS), so the relay sees only ciphertext, and it needs no
// knowledge of HTTP or gRPC: one relay per public port.
//
// Failure behaviour is what clients of a serving system expect: when no enclave is up, a new
// connection is closed at once (a retriable error, never a hang); when an enclave dies, its open
// connections are closed and new ones go to the others while the launcher restarts it. Under a
// scheduler (BackendBroker), a new connection instead waits in the scheduler's FIFO queue until an
// enclave is granted to it, the client hangs up, or the queue timeout passes (then it is closed).
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "core/status.h"
#include "host/net.h"

namespace tenet::host {

// Live backends of one protocol (e.g. every enclave's REST port), chosen by fewest connections.
class BackendPool {
 public:
  explicit BackendPool(size_t slots) : slots_(slots) {}
  void set_up(size_t slot, HostPort addr);
  void set_down(size_t slot);
  // The live backend with the fewest active connections (its counter incremented), or none;
  // slots listed in `skip` (already tried for this connection) are passed over.
  std::optional<std::pair<size_t, HostPort>> acquire(const std::vector<size_t>& skip = {});
  void release(size_t slot);
  size_t live_count() const;

 private:
  struct Slot {
    std::optional<HostPort> addr;
    uint64_t generation = 0;
    int active = 0;
  };
  mutable std::mutex mu_;
  std::vector<Slot> slots_;
};

// Observer for counts and durations only (the host never sees request contents).
class RelayObserver {
 public:
  virtual ~RelayObserver() = default;
  virtual void on_accept() {}
  virtual void on_reject(const char* reason) {}
  virtual void on_close(double seconds) {}
};

// Chooses the enclave for each new connection when a scheduler is in charge (tenet serve
// --schedule; host/scheduler.h) instead of the pool's least-connections choice.
class BackendBroker {
 public:
  virtual ~BackendBroker() = default;
  // Blocks until an enclave is granted to this connection: (slot, its address for `protocol`).
  // Nothing when the wait ended without one (gave_up() turned true, timeout, no enclave).
  // gave_up is polled while waiting (about every 100 ms).
  virtual std::optional<std::pair<size_t, HostPort>> acquire(size_t protocol, const std::function<bool()>& gave_up) = 0;
  // The granted connection ended.
  virtual void release(size_t slot) = 0;
};

struct RelayOptions {
  HostPort listen;
  std::string name = "relay";        // for logs: "http", "grpc"
  int max_connections = 4096;        // beyond this, new connections are refused
  int connect_timeout_ms = 2000;     // to an enclave
  int idle_timeout_ms = 600000;      // no bytes either way for this long closes the pair
  size_t protocol = 0;               // with a broker: which of the enclave's ports (0 http, 1 grpc)
};

class Relay {
 public:
  // With a broker, connections wait (in the broker's queue) for the enclave it grants, and the pool
  // is not used; without one, the pool's least-loaded live enclave or an immediate close.
  static Result<std::unique_ptr<Relay>> start(RelayOptions options, std::shared_ptr<BackendPool> pool,
                                              std::shared_ptr<RelayObserver> observer,
                                              std::shared_ptr<BackendBroker> broker = nullptr);
  ~Relay();
  Relay(const Relay&) = delete;
  Relay& operator=(const Relay&) = delete;

  uint16_t port() const;
  int active_connections() const;
  // Stops accepting, closes every open connection and waits for their threads.
  void stop();

 private:
  struct Impl;
  explicit Relay(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace tenet::host
