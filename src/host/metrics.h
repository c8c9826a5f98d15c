// Host-side Prometheus metrics (untrusted side). Only counts and latencies: connections, enclave
// liveness and restarts, and per-model request counts and latency figures that the enclaves
// report on their control channel. Nothing here is derived from request contents.
#pragma once

#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "core/status.h"
#include "host/relay.h"

namespace tenet::host {

class HostMetrics {
 public:
  // Starts an HTTP exposer on `listen` ("127.0.0.1:9090"; empty: metrics are kept but not served).
  static Result<std::unique_ptr<HostMetrics>> create(const std::string& listen);
  ~HostMetrics();

  // A RelayObserver feeding tenet_relay_* metrics labeled with `protocol`.
  std::shared_ptr<RelayObserver> relay_observer(const std::string& protocol);
  void enclave_up(size_t slot, bool up);
  void enclave_restarted(size_t slot);
  // An enclave's {"event":"stats","models":{NAME:{"success":N,"fail":N,"queue_us":N,"compute_us":N}}}
  // line: cumulative counters, applied as deltas. Malformed lines are ignored.
  void apply_enclave_stats(size_t slot, const nlohmann::json& event);
  // Its "epc" object (sim EPC emulation): resident and peak bytes, page faults, evictions.
  void apply_enclave_epc(size_t slot, const nlohmann::json& event);
  // The exposition text (what GET /metrics returns).
  std::string scrape() const;
  uint16_t port() const;

 private:
  struct Impl;
  explicit HostMetrics(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace tenet::host
