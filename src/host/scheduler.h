// EPC-aware scheduling of concurrent enclaves (untrusted host side; Vessels' EPC-aware scheduler).
//
// Why: on SGX every enclave on a machine pages within one Enclave Page Cache (about 93 MiB usable on
// SGX1). When the enclaves' working sets together exceed it, every one of them pages (encrypted
// EWB/ELDU) and throughput collapses; Vessels shows that admitting enclaves only while their
// planned EPC commits fit, and queueing the rest of the work, beats the baselines' "one enclave per
// request, no bound" by about 3x.
//
// Terms
//   commit   what an enclave needs resident to run without paging: its EPC heap's allocated bytes
//            once its models are loaded (weights, kernel copies, activation arena, scratch). Each
//            enclave reports it in its ready line ("commit_bytes") and, if it grows later (a new
//            compiled batch size), in its stats lines ("epc":{"allocated_bytes"}).
//   bound    the sum of admitted commits may not pass this (default: the emulated EPC budget).
//   stream   one client connection (a request stream). The relay cannot see requests (TLS ends in
//            the enclave), so a connection is the unit of scheduling.
//
// Policies
//   epc-aware  A pool of enclaves sized from the commit: the first enclave starts alone (it creates
//              the deployment's RA-TLS identity and measures the commit, the estimate for the
//              others: same model and configuration, same commit), then the pool grows to
//              min(max_enclaves, bound / commit) enclaves, each with a resident limit of
//              bound / pool >= its commit, so an admitted enclave never pages. An operator's
//              estimate (--enclave-commit, e.g. from `tenet inspect --epc`) sizes the pool before
//              any enclave reported. Enclaves in planned memory mode fit whatever limit they get,
//              so they are given bound / max_enclaves from the start. A ready enclave is *admitted* (fed streams) while the admitted
//              commits sum to at most the bound. Each admitted enclave runs one stream at a time;
//              streams that cannot run now wait in one FIFO queue and are granted, oldest first,
//              the next idle admitted enclave (optionally up to k streams per enclave). If a single enclave's commit is above the bound,
//              one enclave is still admitted (alone, with the whole bound as its limit; it pages,
//              but no other enclave competes with it) rather than refusing all service.
//   naive      The baselines (Graphene/SCONE-style serving): one enclave per concurrent stream,
//              started on demand up to max_enclaves, no bound on commits; once every slot has an
//              enclave, streams share them (fewest streams first). Each gets an equal share of the
//              budget (budget / max_enclaves), so together they thrash once commits exceed it.
//
// Structure: SchedulePlanner is the policy alone (no threads, clock or I/O; unit-tested), and
// EnclaveScheduler wraps it for the relays (blocking acquire with a FIFO queue, cancellation when
// the client hangs up or the wait times out), the supervisor (enclave events, starting slots) and
// the metrics (queue depth, wait time, admitted commit).
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/status.h"
#include "host/net.h"
#include "host/relay.h"

namespace tenet::host {

enum class SchedulePolicy { kEpcAware, kNaive };
const char* schedule_policy_name(SchedulePolicy policy);  // "epc-aware" | "naive"
Result<SchedulePolicy> parse_schedule_policy(std::string_view text);

struct ScheduleOptions {
  SchedulePolicy policy = SchedulePolicy::kEpcAware;
  uint64_t budget_bytes = 0;           // the emulated EPC shared by all enclaves (> 0)
  uint64_t bound_bytes = 0;            // epc-aware: bound on admitted commits; 0 = budget_bytes
  size_t max_enclaves = 4;             // slots (1..256)
  uint64_t commit_estimate_bytes = 0;  // before any enclave reported; 0 = unknown (probe first)
  // epc-aware: streams an admitted enclave runs at once (1: Vessels' one request stream per
  // enclave). More lets the next connection's TLS handshake overlap the current inference; the
  // enclave still computes one request at a time (its batcher), so its commit does not change.
  int streams_per_enclave = 1;
  // epc-aware: the enclaves plan their memory to fit the resident limit they are given (planned
  // mode: weight streaming), so their commit follows the limit. Then every enclave, the first one
  // included, gets bound / max_enclaves: the pool is sized for max_enclaves from the start.
  bool enclaves_plan_to_limit = false;
};

// The policy. Not thread-safe: EnclaveScheduler serializes calls.
class SchedulePlanner {
 public:
  static Result<SchedulePlanner> create(ScheduleOptions options);

  // ---- enclave lifecycle (slot = supervisor slot, 0..max_enclaves-1) ----
  void enclave_starting(size_t slot);                         // the caller launched it
  void enclave_ready(size_t slot, uint64_t commit_bytes);     // ready line (commit 0: not reported)
  bool enclave_commit(size_t slot, uint64_t commit_bytes);    // a later report; true if it grew
  // It exited; `restarting`: the supervisor restarts it (it becomes ready again), otherwise the
  // slot failed to start and is not launched again by this planner.
  void enclave_down(size_t slot, bool restarting);

  // ---- streams ----
  uint64_t enqueue();              // a new stream waits; returns its ticket (FIFO order)
  bool cancel(uint64_t ticket);    // it gave up waiting; false if not queued (already granted)
  void finish(size_t slot);        // a granted stream ended

  struct Grant {
    uint64_t ticket;
    size_t slot;
  };
  struct Decisions {
    std::vector<Grant> grants;  // in ticket order
    std::vector<size_t> start;  // slots to launch now (already marked starting)
  };
  // Grants queued streams to enclaves and says which enclaves to start. Call after any event.
  Decisions schedule();

  // The enclave's resident limit when it starts now (its --epc-limit), whole pages.
  uint64_t resident_limit_bytes(size_t slot) const;

  // ---- observability ----
  size_t queue_depth() const { return queue_.size(); }
  uint64_t admitted_commit_bytes() const;
  size_t admitted_enclaves() const;
  // epc-aware: pool size from the best commit known (1 before any); naive: max_enclaves.
  size_t target_enclaves() const;
  uint64_t commit_bytes() const;  // best known commit per enclave (max reported, or the estimate)
  bool over_bound() const;        // one enclave admitted whose commit alone passes the bound
  std::vector<size_t> starting_slots() const;
  size_t ready_enclaves() const;
  const ScheduleOptions& options() const { return options_; }
  int active_streams(size_t slot) const;

 private:
  enum class State { kStopped, kStarting, kReady, kFailed };
  struct Slot {
    State state = State::kStopped;
    uint64_t commit_bytes = 0;
    int active = 0;
    bool admitted = false;
  };
  explicit SchedulePlanner(ScheduleOptions options);
  void admit();
  size_t count(State s) const;
  bool any_ever_ready_ = false;
  ScheduleOptions options_;
  std::vector<Slot> slots_;
  std::deque<uint64_t> queue_;
  uint64_t next_ticket_ = 1;
  uint64_t max_commit_reported_ = 0;
};

// Metrics the scheduler feeds (implemented by HostMetrics).
class SchedulerObserver {
 public:
  virtual ~SchedulerObserver() = default;
  virtual void on_queue_depth(size_t depth) {}
  virtual void on_wait(double seconds, bool granted) {}
  virtual void on_admitted(uint64_t commit_bytes, size_t enclaves) {}
  virtual void on_enclave_commit(size_t slot, uint64_t commit_bytes) {}
};

// The planner behind a mutex, as the relays' broker. Enclave starts go through `start` (called
// without the lock held).
class EnclaveScheduler final : public BackendBroker {
 public:
  using StartFn = std::function<void(size_t slot)>;
  static Result<std::shared_ptr<EnclaveScheduler>> create(ScheduleOptions options, int queue_timeout_ms,
                                                          std::shared_ptr<SchedulerObserver> observer);
  // Set before the first kick(); called for each slot the planner starts.
  void set_start(StartFn start);
  // Runs the planner (e.g. once at startup, so that the first enclave starts).
  void kick();

  // From the supervisor: {"event":"ready"} (ports, commit_bytes) and {"event":"stats"}
  // ("epc":{"allocated_bytes"}) lines; hostile input, malformed fields are ignored.
  void on_event(size_t slot, const nlohmann::json& event);
  void on_exit(size_t slot, bool restarting);

  // BackendBroker (the relays). protocol 0: the enclave's http_port, 1: its grpc_port.
  std::optional<std::pair<size_t, HostPort>> acquire(size_t protocol, const std::function<bool()>& gave_up) override;
  void release(size_t slot) override;

  uint64_t resident_limit_bytes(size_t slot) const;
  std::vector<size_t> starting_slots() const;
  nlohmann::json describe() const;  // policy, bound, pool, commit: for the serving line

 private:
  EnclaveScheduler(SchedulePlanner planner, int queue_timeout_ms, std::shared_ptr<SchedulerObserver> observer)
      : planner_(std::move(planner)), queue_timeout_ms_(queue_timeout_ms), observer_(std::move(observer)) {}
  // Runs the planner under the lock: records grants, reports metrics; returns slots to start.
  std::vector<size_t> schedule_locked();
  void start_all(const std::vector<size_t>& slots);

  mutable std::mutex mu_;
  std::condition_variable cv_;
  SchedulePlanner planner_;
  int queue_timeout_ms_;
  std::shared_ptr<SchedulerObserver> observer_;
  StartFn start_;
  std::map<uint64_t, size_t> granted_;                  // ticket -> slot, until its waiter takes it
  std::map<size_t, std::pair<HostPort, HostPort>> ports_;  // slot -> (http, grpc)
};

}  // namespace tenet::host
