#include "host/scheduler.h"

#include <algorithm>
#include <chrono>

namespace tenet::host {
namespace {

constexpr uint64_t kPage = 4096;

uint64_t floor_pages(uint64_t bytes) { return bytes / kPage * kPage; }

// A field of a control line as a positive byte count, or 0 when absent or malformed.
uint64_t bytes_field(const nlohmann::json& obj, const char* key) {
  if (!obj.is_object() || !obj.contains(key) || !obj[key].is_number_unsigned()) return 0;
  return obj[key].get<uint64_t>();
}

std::optional<HostPort> port_field(const nlohmann::json& ev, const char* key) {
  const uint64_t p = bytes_field(ev, key);
  if (p == 0 || p > 65535) return std::nullopt;
  return HostPort{"127.0.0.1", static_cast<uint16_t>(p)};
}

}  // namespace

const char* schedule_policy_name(SchedulePolicy policy) {
  return policy == SchedulePolicy::kEpcAware ? "epc-aware" : "naive";
}

Result<SchedulePolicy> parse_schedule_policy(std::string_view text) {
  if (text == "epc-aware") return SchedulePolicy::kEpcAware;
  if (text == "naive") return SchedulePolicy::kNaive;
  return invalid_argument("unknown schedule policy '{}' (epc-aware | naive)", text);
}

// ---------------------------------------------------------------------------------------------
// SchedulePlanner

SchedulePlanner::SchedulePlanner(ScheduleOptions options) : options_(options), slots_(options.max_enclaves) {}

Result<SchedulePlanner> SchedulePlanner::create(ScheduleOptions options) {
  if (options.budget_bytes < 16 * kPage) return invalid_argument("EPC budget of {} bytes is below 16 pages", options.budget_bytes);
  if (options.bound_bytes == 0) options.bound_bytes = options.budget_bytes;
  if (options.bound_bytes < kPage) return invalid_argument("EPC bound of {} bytes is below one page", options.bound_bytes);
  if (options.max_enclaves == 0 || options.max_enclaves > 256) {
    return invalid_argument("max enclaves {} out of range 1..256", options.max_enclaves);
  }
  if (options.streams_per_enclave < 1 || options.streams_per_enclave > 64) {
    return invalid_argument("streams per enclave {} out of range 1..64", options.streams_per_enclave);
  }
  return SchedulePlanner(options);
}

size_t SchedulePlanner::count(State s) const {
  return static_cast<size_t>(std::count_if(slots_.begin(), slots_.end(), [s](const Slot& x) { return x.state == s; }));
}

uint64_t SchedulePlanner::commit_bytes() const {
  return max_commit_reported_ > 0 ? max_commit_reported_ : options_.commit_estimate_bytes;
}

size_t SchedulePlanner::target_enclaves() const {
  if (options_.policy == SchedulePolicy::kNaive) return options_.max_enclaves;
  const uint64_t c = commit_bytes();
  if (c == 0) return options_.enclaves_plan_to_limit ? options_.max_enclaves : 1;
  return static_cast<size_t>(std::clamp<uint64_t>(options_.bound_bytes / c, 1, options_.max_enclaves));
}

uint64_t SchedulePlanner::resident_limit_bytes(size_t) const {
  if (options_.policy == SchedulePolicy::kNaive) {
    return std::max(floor_pages(options_.budget_bytes / options_.max_enclaves), 16 * kPage);
  }
  // bound / pool >= commit whenever the commit fits the bound (pool <= bound / commit); before the
  // commit is known the first enclave runs alone with the whole bound.
  const size_t pool = options_.enclaves_plan_to_limit ? options_.max_enclaves : target_enclaves();
  const uint64_t share = floor_pages(options_.bound_bytes / pool);
  return std::max(std::min(share, floor_pages(options_.budget_bytes)), 16 * kPage);
}

void SchedulePlanner::enclave_starting(size_t slot) {
  if (slot < slots_.size()) slots_[slot].state = State::kStarting;
}

void SchedulePlanner::enclave_ready(size_t slot, uint64_t commit) {
  if (slot >= slots_.size()) return;
  slots_[slot].state = State::kReady;
  slots_[slot].admitted = false;
  if (commit > 0) slots_[slot].commit_bytes = commit;
  max_commit_reported_ = std::max(max_commit_reported_, commit);
  any_ever_ready_ = true;
}

bool SchedulePlanner::enclave_commit(size_t slot, uint64_t commit) {
  if (slot >= slots_.size() || commit <= slots_[slot].commit_bytes) return false;
  slots_[slot].commit_bytes = commit;
  max_commit_reported_ = std::max(max_commit_reported_, commit);
  return true;
}

void SchedulePlanner::enclave_down(size_t slot, bool restarting) {
  if (slot >= slots_.size()) return;
  slots_[slot].state = restarting ? State::kStarting : State::kFailed;
  slots_[slot].admitted = false;
}

uint64_t SchedulePlanner::enqueue() {
  queue_.push_back(next_ticket_);
  return next_ticket_++;
}

bool SchedulePlanner::cancel(uint64_t ticket) {
  auto it = std::find(queue_.begin(), queue_.end(), ticket);
  if (it == queue_.end()) return false;
  queue_.erase(it);
  return true;
}

void SchedulePlanner::finish(size_t slot) {
  if (slot < slots_.size() && slots_[slot].active > 0) slots_[slot].active--;
}

int SchedulePlanner::active_streams(size_t slot) const { return slot < slots_.size() ? slots_[slot].active : 0; }

// epc-aware: admitted enclaves keep their place while they still fit (a commit can grow), then
// other ready enclaves join in slot order while the sum stays within the bound.
void SchedulePlanner::admit() {
  std::vector<bool> keep(slots_.size(), false);
  uint64_t sum = 0;
  auto effective = [&](const Slot& s) { return s.commit_bytes > 0 ? s.commit_bytes : commit_bytes(); };
  for (int pass = 0; pass < 2; ++pass) {
    for (size_t i = 0; i < slots_.size(); ++i) {
      const Slot& s = slots_[i];
      if (s.state != State::kReady || keep[i] || s.admitted != (pass == 0)) continue;
      if (options_.policy == SchedulePolicy::kNaive || sum + effective(s) <= options_.bound_bytes) {
        keep[i] = true;
        sum += effective(s);
      }
    }
  }
  if (std::none_of(keep.begin(), keep.end(), [](bool k) { return k; })) {
    // No enclave fits the bound on its own: run one, alone (it pages, nothing competes with it).
    size_t pick = slots_.size();
    for (size_t i = 0; i < slots_.size(); ++i) {
      if (slots_[i].state == State::kReady && (pick == slots_.size() || (slots_[i].admitted && !slots_[pick].admitted))) pick = i;
    }
    if (pick < slots_.size()) keep[pick] = true;
  }
  for (size_t i = 0; i < slots_.size(); ++i) slots_[i].admitted = keep[i];
}

uint64_t SchedulePlanner::admitted_commit_bytes() const {
  uint64_t sum = 0;
  for (const Slot& s : slots_) {
    if (s.admitted) sum += s.commit_bytes > 0 ? s.commit_bytes : commit_bytes();
  }
  return sum;
}

size_t SchedulePlanner::admitted_enclaves() const {
  return static_cast<size_t>(std::count_if(slots_.begin(), slots_.end(), [](const Slot& s) { return s.admitted; }));
}

bool SchedulePlanner::over_bound() const {
  return options_.policy == SchedulePolicy::kEpcAware && admitted_commit_bytes() > options_.bound_bytes;
}

size_t SchedulePlanner::ready_enclaves() const { return count(State::kReady); }

std::vector<size_t> SchedulePlanner::starting_slots() const {
  std::vector<size_t> out;
  for (size_t i = 0; i < slots_.size(); ++i) {
    if (slots_[i].state == State::kStarting) out.push_back(i);
  }
  return out;
}

SchedulePlanner::Decisions SchedulePlanner::schedule() {
  Decisions d;
  admit();
  auto start_one = [&]() -> bool {
    // Until one enclave has been ready, start one at a time: the first creates the deployment's
    // RA-TLS identity that all others unseal (started together, each would create its own).
    if (!any_ever_ready_ && count(State::kStarting) > 0) return false;
    for (size_t i = 0; i < slots_.size(); ++i) {
      if (slots_[i].state == State::kStopped) {
        slots_[i].state = State::kStarting;
        d.start.push_back(i);
        return true;
      }
    }
    return false;
  };
  auto grant = [&](size_t slot) {
    d.grants.push_back({queue_.front(), slot});
    queue_.pop_front();
    slots_[slot].active++;
  };
  auto idle_admitted = [&]() -> std::optional<size_t> {
    for (size_t i = 0; i < slots_.size(); ++i) {
      if (slots_[i].admitted && slots_[i].active == 0) return i;
    }
    return std::nullopt;
  };

  if (options_.policy == SchedulePolicy::kEpcAware) {
    // The pool: as many enclaves as fit (one until the commit is known).
    while (count(State::kStarting) + count(State::kReady) < target_enclaves() && start_one()) {
    }
    // One stream per enclave (or k), oldest stream first, to the least busy admitted enclave.
    while (!queue_.empty()) {
      std::optional<size_t> best;
      for (size_t i = 0; i < slots_.size(); ++i) {
        if (slots_[i].admitted && slots_[i].active < options_.streams_per_enclave &&
            (!best || slots_[i].active < slots_[*best].active)) {
          best = i;
        }
      }
      if (!best) break;
      grant(*best);
    }
    return d;
  }

  // naive: an idle enclave if there is one; otherwise a new enclave per waiting stream; once every
  // slot has one (and none is still starting), share: fewest streams first.
  while (!queue_.empty()) {
    auto slot = idle_admitted();
    if (!slot) break;
    grant(*slot);
  }
  if (count(State::kStarting) + count(State::kReady) == 0) start_one();
  while (queue_.size() > count(State::kStarting) && start_one()) {
  }
  if (!queue_.empty() && count(State::kStopped) == 0 && count(State::kStarting) == 0) {
    while (!queue_.empty()) {
      std::optional<size_t> best;
      for (size_t i = 0; i < slots_.size(); ++i) {
        if (slots_[i].admitted && (!best || slots_[i].active < slots_[*best].active)) best = i;
      }
      if (!best) break;
      grant(*best);
    }
  }
  return d;
}

// ---------------------------------------------------------------------------------------------
// EnclaveScheduler

Result<std::shared_ptr<EnclaveScheduler>> EnclaveScheduler::create(ScheduleOptions options, int queue_timeout_ms,
                                                                   std::shared_ptr<SchedulerObserver> observer) {
  TENET_ASSIGN_OR_RETURN(SchedulePlanner planner, SchedulePlanner::create(options));
  if (queue_timeout_ms <= 0) return invalid_argument("queue timeout must be positive");
  return std::shared_ptr<EnclaveScheduler>(new EnclaveScheduler(std::move(planner), queue_timeout_ms, std::move(observer)));
}

void EnclaveScheduler::set_start(StartFn start) {
  std::lock_guard<std::mutex> lock(mu_);
  start_ = std::move(start);
}

std::vector<size_t> EnclaveScheduler::schedule_locked() {
  SchedulePlanner::Decisions d = planner_.schedule();
  for (const auto& g : d.grants) granted_[g.ticket] = g.slot;
  if (!d.grants.empty()) cv_.notify_all();
  if (observer_) {
    observer_->on_queue_depth(planner_.queue_depth());
    observer_->on_admitted(planner_.admitted_commit_bytes(), planner_.admitted_enclaves());
  }
  return d.start;
}

void EnclaveScheduler::start_all(const std::vector<size_t>& slots) {
  StartFn start;
  {
    std::lock_guard<std::mutex> lock(mu_);
    start = start_;
  }
  for (size_t s : slots) {
    if (start) start(s);
  }
}

void EnclaveScheduler::kick() {
  std::vector<size_t> starts;
  {
    std::lock_guard<std::mutex> lock(mu_);
    starts = schedule_locked();
  }
  start_all(starts);
}

void EnclaveScheduler::on_event(size_t slot, const nlohmann::json& ev) {
  if (!ev.is_object() || !ev.contains("event") || !ev["event"].is_string()) return;
  std::vector<size_t> starts;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (ev["event"] == "ready") {
      auto http = port_field(ev, "http_port");
      auto grpc = port_field(ev, "grpc_port");
      if (!http || !grpc) return;  // the supervisor kills an enclave with a bad ready line
      ports_[slot] = {*http, *grpc};
      const uint64_t commit = bytes_field(ev, "commit_bytes");
      planner_.enclave_ready(slot, commit);
      if (observer_ && commit > 0) observer_->on_enclave_commit(slot, commit);
    } else if (ev["event"] == "stats" && ev.contains("epc")) {
      const uint64_t allocated = bytes_field(ev["epc"], "allocated_bytes");
      if (!planner_.enclave_commit(slot, allocated)) return;
      if (observer_) observer_->on_enclave_commit(slot, allocated);
    } else {
      return;
    }
    starts = schedule_locked();
  }
  start_all(starts);
}

void EnclaveScheduler::on_exit(size_t slot, bool restarting) {
  std::vector<size_t> starts;
  {
    std::lock_guard<std::mutex> lock(mu_);
    ports_.erase(slot);
    planner_.enclave_down(slot, restarting);
    starts = schedule_locked();
  }
  start_all(starts);
}

std::optional<std::pair<size_t, HostPort>> EnclaveScheduler::acquire(size_t protocol, const std::function<bool()>& gave_up) {
  const auto t0 = std::chrono::steady_clock::now();
  const auto deadline = t0 + std::chrono::milliseconds(queue_timeout_ms_);
  uint64_t ticket;
  std::vector<size_t> starts;
  {
    std::lock_guard<std::mutex> lock(mu_);
    ticket = planner_.enqueue();
    starts = schedule_locked();
  }
  start_all(starts);
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    auto it = granted_.find(ticket);
    if (it != granted_.end()) {
      const size_t slot = it->second;
      granted_.erase(it);
      auto p = ports_.find(slot);
      const double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      if (p == ports_.end()) {  // it went down between the grant and now
        planner_.finish(slot);
        if (observer_) observer_->on_wait(waited, false);
        starts = schedule_locked();
        lock.unlock();
        start_all(starts);
        return std::nullopt;
      }
      if (observer_) observer_->on_wait(waited, true);
      return std::make_pair(slot, protocol == 0 ? p->second.first : p->second.second);
    }
    if (gave_up() || std::chrono::steady_clock::now() >= deadline) {
      planner_.cancel(ticket);
      if (observer_) {
        observer_->on_wait(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), false);
      }
      starts = schedule_locked();
      lock.unlock();
      start_all(starts);
      return std::nullopt;
    }
    cv_.wait_for(lock, std::chrono::milliseconds(100));
  }
}

void EnclaveScheduler::release(size_t slot) {
  std::vector<size_t> starts;
  {
    std::lock_guard<std::mutex> lock(mu_);
    planner_.finish(slot);
    starts = schedule_locked();
  }
  start_all(starts);
}

uint64_t EnclaveScheduler::resident_limit_bytes(size_t slot) const {
  std::lock_guard<std::mutex> lock(mu_);
  return planner_.resident_limit_bytes(slot);
}

std::vector<size_t> EnclaveScheduler::starting_slots() const {
  std::lock_guard<std::mutex> lock(mu_);
  return planner_.starting_slots();
}

nlohmann::json EnclaveScheduler::describe() const {
  std::lock_guard<std::mutex> lock(mu_);
  const ScheduleOptions& o = planner_.options();
  return {{"policy", schedule_policy_name(o.policy)},
          {"budget_bytes", o.budget_bytes},
          {"bound_bytes", o.bound_bytes},
          {"max_enclaves", o.max_enclaves},
          {"streams_per_enclave", o.streams_per_enclave},
          {"pool", planner_.target_enclaves()},
          {"ready_enclaves", planner_.ready_enclaves()},
          {"commit_bytes", planner_.commit_bytes()},
          {"admitted_commit_bytes", planner_.admitted_commit_bytes()},
          {"over_bound", planner_.over_bound()}};
}

}  // namespace tenet::host
