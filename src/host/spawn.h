// Starting a child process whose stdout the host reads (enclaves' and the accelerator's control
// lines).
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

#include "core/status.h"

namespace tenet::host {

struct SpawnedChild {
  pid_t pid = -1;
  int stdout_fd = -1;  // read end of a pipe on the child's stdout (close-on-exec in this process)
};

// Starts `args` (args[0] is the executable's path) with its stdout on a new pipe; stderr and
// stdin are inherited. `own_process_group`: the child leads a new process group, so that stopping
// the group also stops anything it started.
Result<SpawnedChild> spawn_with_stdout_pipe(std::vector<std::string> args, bool own_process_group);

}  // namespace tenet::host
