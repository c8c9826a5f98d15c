#include "host/spawn.h"

#include <fcntl.h>
#include <spawn.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

extern char** environ;

namespace tenet::host {

Result<SpawnedChild> spawn_with_stdout_pipe(std::vector<std::string> args, bool own_process_group) {
  if (args.empty()) return invalid_argument("spawn: no command");
  int out[2];
  if (::pipe2(out, O_CLOEXEC) != 0) return internal_error("pipe: {}", std::strerror(errno));
  std::vector<char*> cargv;
  for (auto& a : args) cargv.push_back(a.data());
  cargv.push_back(nullptr);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, out[1], STDOUT_FILENO);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  if (own_process_group) {
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP);
    posix_spawnattr_setpgroup(&attr, 0);
  }
  pid_t pid = 0;
  const int rc = ::posix_spawn(&pid, cargv[0], &fa, &attr, cargv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
  ::close(out[1]);
  if (rc != 0) {
    ::close(out[0]);
    return internal_error("cannot start '{}': {}", args[0], std::strerror(rc));
  }
  return SpawnedChild{pid, out[0]};
}

}  // namespace tenet::host
