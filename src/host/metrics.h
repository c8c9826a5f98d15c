// Host-side Prometheus metrics (untrusted side). Only counts and latencies: connections, enclave
// liveness and restarts, and per-model request counts and latency figures that the enclaves
// report on their control channel. Nothing here is derived from request contents. Under a
// scheduler (tenet serve --schedule) also its queue (depth, wait time) and the admitted EPC commit,
// and the host-wide EPC counters of the sim emulation.
#pragma once

#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "core/status.h"
#include "host/relay.h"
#include "host/scheduler.h"

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
  // The accelerator process `tenet serve --accelerator auto` runs for hybrid models:
  // tenet_accelerator_up (1 while it runs) and tenet_accelerator_restarts_total.
  void accelerator_up(bool up);
  void accelerator_restarted();
  // An enclave's {"event":"stats","models":{NAME:{"success":N,"fail":N,"queue_us":N,"compute_us":N}}}
  // line: cumulative counters, applied as deltas. Malformed lines are ignored.
  void apply_enclave_stats(size_t slot, const nlohmann::json& event);
  // Its "epc" object (sim EPC emulation): resident and peak bytes, page faults, evictions.
  void apply_enclave_epc(size_t slot, const nlohmann::json& event);
  // A SchedulerObserver feeding tenet_sched_* metrics; sets tenet_sched_bound_bytes once.
  std::shared_ptr<SchedulerObserver> scheduler_observer(const std::string& policy, uint64_t bound_bytes);
  // The machine-wide sim EPC counters (HostEpc: resident, peak, faults, evictions, loads) as
  // tenet_host_epc{counter=...}: a JSON object with those fields; others are ignored.
  void apply_host_epc(const nlohmann::json& counters);
  // The exposition text (what GET /metrics returns).
  std::string scrape() const;
  uint16_t port() const;

  struct Impl;  // metrics.cc (its observers hold a reference)

 private:
  explicit HostMetrics(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace tenet::host
