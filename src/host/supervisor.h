// Launches and supervises enclave processes (untrusted host side; TEMPER's long-running enclaves).
//
// Each enclave is its own process (`tenet enclave ...`): the trust boundary is the process
// boundary. The supervisor starts them one after another (the first one creates the deployment's
// RA-TLS identity, the others unseal and reuse it), reads their control lines from stdout (one
// JSON object per line: {"event":"ready",...}, {"event":"stats",...}), marks their ports up in
// the relay's backend pools, and restarts any that exits, with backoff. Control lines come from a
// process the host does not control and are parsed as hostile input.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/status.h"
#include "host/relay.h"

namespace tenet::host {

struct SupervisorOptions {
  std::vector<std::string> argv;  // the enclave command; "--instance N" is appended per enclave
  size_t count = 1;                // slots started (in order, each awaited) by start()
  size_t slots = 0;                // slots in all (>= count; 0: count); launch() starts the others
  // Extra arguments for a slot's enclave, asked at each spawn (after --instance N); may be empty.
  std::function<std::vector<std::string>(size_t slot)> slot_args;
  int ready_timeout_ms = 300000;   // model loading can take a while
  int restart_backoff_ms = 500;
  int stop_timeout_ms = 5000;      // SIGTERM, then SIGKILL
};

// Called for every control line (ready, stats, ...) with the enclave's slot.
using EnclaveEventFn = std::function<void(size_t slot, const nlohmann::json& event)>;
// Called when an enclave exits (status as from waitpid). `restarting`: it had been ready and is
// restarted; false: it exited (or was killed) before its first ready line and its slot stays down
// until launched again (start() reports that as its error).
using EnclaveExitFn = std::function<void(size_t slot, int wait_status, bool restarting)>;

class Supervisor {
 public:
  // Starts `count` enclaves, each waiting for its ready line before the next starts.
  // `http_pool` / `grpc_pool` get each enclave's ports ("http_port", "grpc_port" in its ready line).
  static Result<std::unique_ptr<Supervisor>> start(SupervisorOptions options, std::shared_ptr<BackendPool> http_pool,
                                                   std::shared_ptr<BackendPool> grpc_pool, EnclaveEventFn on_event,
                                                   EnclaveExitFn on_exit);
  ~Supervisor();
  Supervisor(const Supervisor&) = delete;
  Supervisor& operator=(const Supervisor&) = delete;

  std::vector<int> pids() const;
  // Starts the enclave of a slot that is not running (no-op if it is); does not wait.
  Status launch(size_t slot);
  // Waits for a launched slot's ready line: error if it exited first or did not get ready in time.
  Status wait_ready(size_t slot, int timeout_ms);
  void stop();

 private:
  struct Impl;
  explicit Supervisor(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace tenet::host
